//! End-to-end: the real `sovereign-agent` binary on a test cgroup, real clients (curl, python)
//! inside it, SIGTERM, then the JSON lines and the cgroup's attach list are checked.
use std::{
    net::TcpListener,
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use sovereign_agent_tests::{
    run_in_cgroup, sigterm, start_agent, start_agent_with, target_bin, wait_for_event,
    wait_for_log, Reaped, TestCgroup,
};

fn agent() -> Command {
    Command::new(target_bin("sovereign-agent"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn agent_binary_reports_curl_and_python_flows_and_detaches_on_sigterm() {
    let cgroup = TestCgroup::new("e2e");
    let dir = std::env::temp_dir().join(format!("sa-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "x".repeat(5000)).unwrap();
    let output = dir.join("events.jsonl");
    let _ = std::fs::remove_file(&output);

    // A real HTTP server (outside the watched cgroup).
    let port = free_port();
    let _server = Reaped(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 http.server"),
    );
    let url = format!("http://127.0.0.1:{port}/index.html");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let (mut agent, _logs) = start_agent(&cgroup, &output);
    assert_ne!(
        cgroup.attached_programs().trim(),
        "",
        "programs attached while running"
    );

    let (curl_pid, curl_out) = run_in_cgroup(
        &cgroup,
        &format!("curl -sS --limit-rate 20k -o /dev/null -w '%{{size_download}} %{{size_request}}' {url}"),
    );
    let sizes = String::from_utf8(curl_out.stdout).unwrap();
    let (downloaded, requested) = sizes.split_once(' ').unwrap();
    let py = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(7): s.sendto(b'q',('127.0.0.1',9))\ns.close()";
    let (py_pid, _) = run_in_cgroup(&cgroup, &format!("python3 -c \"{py}\""));

    std::thread::sleep(Duration::from_millis(500));
    sigterm(&agent);
    let status = agent.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
    assert_eq!(
        cgroup.attached_programs().trim(),
        "",
        "no program stays attached after exit"
    );

    let events: Vec<Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is one JSON object"))
        .collect();
    let curl: Vec<&Value> = events.iter().filter(|e| e["pid"] == curl_pid).collect();
    let kinds: Vec<&str> = curl.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["connect", "established", "close"], "{events:#?}");
    for e in &curl {
        assert_eq!(e["comm"], "curl");
        assert_eq!(e["exe"], "/usr/bin/curl");
        assert_eq!(e["proto"], "tcp");
        assert_eq!(e["dst_ip"], "127.0.0.1");
        assert_eq!(e["dst_port"], port);
        assert!(e["cmdline"].as_str().unwrap().contains(&url));
        assert!(e["ts"].as_str().unwrap().ends_with('Z'));
    }
    let close = curl[2];
    assert_eq!(close["bytes_sent"].as_u64().unwrap().to_string(), requested);
    // The response is the body plus the headers python writes.
    let received = close["bytes_received"].as_u64().unwrap();
    let body: u64 = downloaded.parse().unwrap();
    assert!(
        received > body && received < body + 1000,
        "{received} vs body {body}"
    );

    let py: Vec<&Value> = events.iter().filter(|e| e["pid"] == py_pid).collect();
    let kinds: Vec<&str> = py.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["send", "close"], "{events:#?}");
    assert_eq!(py[0]["comm"], "python3");
    assert_eq!(py[0]["proto"], "udp");
    assert_eq!(py[0]["dst_port"], 9);
    assert_eq!(py[1]["count"], 7);
    std::fs::remove_dir_all(&dir).ok();
}

fn run_and_fail(args: &[&str]) -> (i32, String) {
    let out = agent().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn a_bad_cgroup_path_is_one_clear_sentence_and_exit_64() {
    let (code, stderr) = run_and_fail(&["run", "--cgroup", "/nonexistent/cgroup"]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("cgroup /nonexistent/cgroup"), "{stderr}");
    let (code, stderr) = run_and_fail(&["run", "--cgroup", "/etc"]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("not a cgroup"), "{stderr}");
}

#[test]
fn a_bad_config_names_the_file_and_key_and_exits_64() {
    let path = std::env::temp_dir().join(format!("sa-bad-{}.toml", std::process::id()));
    std::fs::write(&path, "ring_buffer_bytes = 1000\n").unwrap();
    let (code, stderr) = run_and_fail(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains(path.to_str().unwrap()) && stderr.contains("ring_buffer_bytes"),
        "{stderr}"
    );
    let (code, stderr) = run_and_fail(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(code, 64, "{stderr}");
    std::fs::write(&path, "outptu = \"-\"\n").unwrap();
    let (code, stderr) = run_and_fail(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("outptu"), "{stderr}");
    std::fs::remove_file(&path).ok();
}

#[test]
fn without_privileges_the_agent_says_so_and_exits_77() {
    let cgroup = TestCgroup::new("noperm");
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(target_bin("sovereign-agent"))
        .args(["run", "--output", "/dev/null", "--cgroup"])
        .arg(cgroup.path())
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{stderr}");
    assert!(
        stderr.contains("permission denied") && stderr.contains("root"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

const E2E_POLICY: &str = r#"
[policy]
name = "e2e"
version = "VERSION"
default = "allow"

[zones.loopback]
cidrs = ["127.0.0.0/8", "::1/128"]

[[rule]]
name = "curl-local-only"
workload = { comm = ["curl"] }
allow = ["loopback"]

[[rule]]
name = "python-may-not-talk"
workload = { comm = ["python3"] }
allow = []
otherwise = "violation"
severity = "high"
"#;

#[test]
fn every_flow_carries_its_verdict_and_the_policy_reloads_safely() {
    let cgroup = TestCgroup::new("e2e-policy");
    let dir = std::env::temp_dir().join(format!("sa-e2e-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, E2E_POLICY.replace("VERSION", "1")).unwrap();
    let output = dir.join("events.jsonl");
    let _ = std::fs::remove_file(&output);
    let (listener, port) = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        (l, p)
    };
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut s in listener.incoming().flatten() {
            let mut request = [0u8; 1024];
            let _ = s.read(&mut request);
            let _ = s.write_all(b"HTTP/1.0 204 No Content\r\n\r\n");
        }
    });
    let (agent, logs) = start_agent_with(
        &cgroup,
        &output,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--max-event-delay-ms",
            "0",
        ],
    );
    let mut agent = Reaped(agent);

    let (curl_pid, _) = run_in_cgroup(
        &cgroup,
        &format!("curl -s -o /dev/null http://127.0.0.1:{port}/"),
    );
    let curl = wait_for_event(&output, |e| e["pid"] == curl_pid && e["kind"] == "connect");
    let v = &curl["verdict"];
    assert_eq!(v["decision"], "allow", "{curl:#}");
    assert_eq!(v["rule"], "curl-local-only");
    assert_eq!(v["zones"], serde_json::json!(["loopback"]));
    assert_eq!(v["evidence"][0]["detail"], "CIDR 127.0.0.0/8");
    assert_eq!(v["policy"]["name"], "e2e");
    assert_eq!(v["policy"]["version"], "1");
    assert!(v["policy"]["hash"].as_str().unwrap().starts_with("sha256:"));

    let py = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.sendto(b'q',('127.0.0.1',9))";
    let (py_pid, _) = run_in_cgroup(&cgroup, &format!("python3 -c \"{py}\""));
    let send = wait_for_event(&output, |e| e["pid"] == py_pid && e["kind"] == "send");
    assert_eq!(send["verdict"]["decision"], "violation");
    assert_eq!(send["verdict"]["severity"], "high");
    assert_eq!(send["verdict"]["rule"], "python-may-not-talk");

    // A changed file is picked up (polled every 2 s by default).
    std::fs::write(&policy, E2E_POLICY.replace("VERSION", "2")).unwrap();
    let reloaded = wait_for_log(&logs, |l| {
        l.contains("policy reloaded") && l.contains("\"version\":\"2\"")
    });
    assert!(reloaded, "the changed policy was not reloaded");
    let (pid2, _) = run_in_cgroup(
        &cgroup,
        &format!("curl -s -o /dev/null http://127.0.0.1:{port}/"),
    );
    let e = wait_for_event(&output, |e| e["pid"] == pid2 && e["kind"] == "connect");
    assert_eq!(e["verdict"]["policy"]["version"], "2");

    // A broken policy and SIGHUP: reported, and version 2 stays in force.
    std::fs::write(&policy, "[policy]\nname = \"broken\"\nversion = \"3\"\ndefault = \"allow\"\n[[rule]]\nname = \"r\"\nallow = [\"nowhere\"]\n").unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGHUP) };
    let failed = wait_for_log(&logs, |l| {
        l.contains("policy reload failed") && l.contains("unknown zone")
    });
    assert!(failed, "the broken policy was not reported");
    let (pid3, _) = run_in_cgroup(
        &cgroup,
        &format!("curl -s -o /dev/null http://127.0.0.1:{port}/"),
    );
    let e = wait_for_event(&output, |e| e["pid"] == pid3 && e["kind"] == "connect");
    assert_eq!(
        e["verdict"]["policy"]["version"], "2",
        "the last good policy stays in force"
    );

    sigterm(&agent.0);
    let _ = agent.0.wait();
    // The live output and the journal record which policy was in force from where: version 1
    // at start, version 2 after the reload, nothing for the broken one; each before its flows.
    let events = sovereign_agent_tests::events_of(&output);
    let policies: Vec<(usize, &Value)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["kind"] == "policy")
        .collect();
    assert_eq!(policies.len(), 2, "{policies:?}");
    assert_eq!(policies[0].1["version"], "1");
    assert_eq!(policies[1].1["version"], "2");
    let first_v2_flow = events
        .iter()
        .position(|e| e["verdict"]["policy"]["version"] == "2")
        .unwrap();
    assert!(policies[1].0 < first_v2_flow);
    let journal = sovereign_agent_tests::journal_dir_of(&output);
    let out = agent_cmd()
        .args(["journal", "export"])
        .arg(&journal)
        .output()
        .unwrap();
    let journaled: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let versions: Vec<&Value> = journaled
        .iter()
        .filter(|e| e["kind"] == "policy")
        .map(|e| &e["version"])
        .collect();
    assert_eq!(versions, ["1", "2"]);
    std::fs::remove_dir_all(&dir).ok();
}

fn agent_cmd() -> Command {
    Command::new(target_bin("sovereign-agent"))
}

#[test]
fn a_bad_policy_stops_the_start_with_its_errors() {
    let path = std::env::temp_dir().join(format!("sa-badpolicy-{}.toml", std::process::id()));
    std::fs::write(&path, "[policy]\nname = \"x\"\nversion = \"1\"\ndefault = \"allow\"\n[zones.a]\ncidrs = [\"300.0.0.0/8\"]\n").unwrap();
    let (code, stderr) = run_and_fail(&[
        "run",
        "--output",
        "/dev/null",
        "--policy",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains(&format!("{}:6:10: zone a: invalid CIDR", path.display())),
        "{stderr}"
    );
    let out = agent()
        .args(["policy", "check", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(":6:10:"));
    std::fs::remove_file(&path).ok();
}
