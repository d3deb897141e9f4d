//! The agent's gRPC API with real clients: Python grpcio (health, reflection, status, stream),
//! the `tail` and `status` commands; history-then-live without gap or duplicate; a subscriber
//! that reads nothing; the socket's permissions.
use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use sovereign_agent_tests::{
    api_socket_of, closed_port, journal_dir_of, loopback_policy, openssl_cert, python_client,
    require_root, sigterm, start_agent_with, target_bin, wait_for_event, Reaped, TestCgroup,
};

fn agent() -> Command {
    Command::new(target_bin("sovereign-agent"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sa-api-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_python_grpc_client_gets_health_reflection_status_and_the_stream() {
    require_root();
    let dir = tmpdir("python");
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        loopback_policy(
            "no-loopback",
            "7",
            "deny = [\"loopback\"]\nseverity = \"critical\"",
        ),
    )
    .unwrap();
    let cgroup = TestCgroup::new("api-py");
    let output = dir.join("events.jsonl");
    let (agent_child, _logs) =
        start_agent_with(&cgroup, &output, &["--policy", policy.to_str().unwrap()]);
    let agent_child = Reaped(agent_child);
    let ports = [closed_port("127.0.0.1:0"), closed_port("127.0.0.1:0")];
    let mut pids = Vec::new();
    for p in &ports {
        pids.push(cgroup.traffic(&["refused", &p.to_string()]).0);
    }
    wait_for_event(&output, |e| e["kind"] == "close" && e["pid"] == pids[1]);

    let lines = python_client(&api_socket_of(&output), 0, 2, "connect");
    assert_eq!(lines[0]["health"], "SERVING");
    let services = lines[1]["services"].as_array().unwrap();
    for s in ["sovereign.agent.v1.AgentService", "grpc.health.v1.Health"] {
        assert!(services.iter().any(|x| x == s), "{services:?}");
    }
    let status = &lines[2]["status"];
    assert_eq!(status["hooks"].as_array().unwrap().len(), 13);
    assert_eq!(status["policy"], "no-loopback");
    assert_eq!(status["cgroup"], cgroup.path().display().to_string());
    let events = &lines[3..];
    assert_eq!(events.len(), 2, "{lines:?}");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["kind"], "FLOW_KIND_CONNECT");
        assert_eq!(e["pid"], pids[i]);
        assert_eq!(e["dst_port"], ports[i].port());
        assert_eq!(e["decision"], "DECISION_VIOLATION");
        assert_eq!(e["severity"], "SEVERITY_CRITICAL");
        assert_eq!(e["rule"], "generator");
    }
    assert!(events[0]["seq"].as_u64() < events[1]["seq"].as_u64());
    sigterm(&agent_child.0);
}

/// Runs `sovereign-agent tail --json` with `args`; returns the child.
fn tail(socket: &Path, args: &[&str]) -> std::process::Child {
    agent()
        .args(["tail", "--json", "--socket"])
        .arg(socket)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn seqs(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn history_then_live_without_gap_or_duplicate_and_a_stalled_subscriber_loses_nothing() {
    require_root();
    let dir = tmpdir("stream");
    let cgroup = TestCgroup::new("api-stream");
    let output = dir.join("events.jsonl");
    let (agent_child, _logs) = start_agent_with(&cgroup, &output, &[]);
    let mut agent_child = Reaped(agent_child);
    let socket = api_socket_of(&output);
    // Some history first.
    let first = closed_port("127.0.0.1:0");
    let (pid, _) = cgroup.traffic(&["refused", &first.to_string()]);
    wait_for_event(&output, |e| e["kind"] == "close" && e["pid"] == pid);

    // History: agent_start, connect, close. Live: 3 events per connection of the loop.
    const TOTAL: usize = 3 + 3 * 3000;
    let count = TOTAL.to_string();
    // A subscriber that reads everything from seq 0 while traffic runs ...
    let reader = tail(&socket, &["--since-seq", "0", "--count", &count]);
    // ... and one that reads nothing until the end (its pipe and gRPC window fill up).
    let stalled = tail(&socket, &["--since-seq", "0", "--count", &count]);
    std::thread::sleep(Duration::from_millis(300));
    cgroup.traffic(&["connect-loop", "127.0.0.1:0", "3000"]);
    let status = agent()
        .args(["status", "--json", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["subscribers"], 2);
    let rss_kib: u64 = std::fs::read_to_string(format!("/proc/{}/status", agent_child.0.id()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap();
    assert!(
        rss_kib < 200 * 1024,
        "agent RSS {rss_kib} KiB with a stalled subscriber"
    );

    for mut child in [reader, stalled] {
        let mut text = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert!(child.wait().unwrap().success());
        let got = seqs(&text);
        assert_eq!(got.len(), TOTAL, "events received");
        assert!(
            got.iter().enumerate().all(|(i, s)| *s == i as u64),
            "sequence numbers 0..{TOTAL} in order, no gap, no duplicate"
        );
    }
    sigterm(&agent_child.0);
    assert!(agent_child.0.wait().unwrap().success());
    // What the stream said is what the journal has.
    let out = agent()
        .args(["journal", "export"])
        .arg(journal_dir_of(&output))
        .output()
        .unwrap();
    let journal = String::from_utf8_lossy(&out.stdout);
    assert_eq!(journal.lines().count(), TOTAL + 1, "and the stop record");
}

#[test]
fn the_socket_is_for_root_only() {
    require_root();
    let dir = tmpdir("perm");
    let cgroup = TestCgroup::new("api-perm");
    let output = dir.join("events.jsonl");
    let (agent_child, _logs) = start_agent_with(&cgroup, &output, &["--no-journal"]);
    let agent_child = Reaped(agent_child);
    let socket = api_socket_of(&output);
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // The temp dir is world-readable; the socket itself refuses other users.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(target_bin("sovereign-agent"))
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("ermission denied"), "{stderr}");
    // Root gets the status; without a journal, streaming is refused with a reason.
    let out = agent()
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = agent()
        .args(["tail", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a journal"));
    sigterm(&agent_child.0);
}

#[test]
fn violations_become_alerts_and_repeats_fold_into_one() {
    require_root();
    let dir = tmpdir("alerts");
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        loopback_policy(
            "no-loopback",
            "7",
            "deny = [\"loopback\"]\nseverity = \"critical\"",
        ),
    )
    .unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(&config, "[alerts]\nwindow_secs = 2\n").unwrap();
    let cgroup = TestCgroup::new("api-alerts");
    let output = dir.join("events.jsonl");
    let (agent_child, _logs) = start_agent_with(
        &cgroup,
        &output,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let agent_child = Reaped(agent_child);
    let port = closed_port("127.0.0.1:0");
    // A retry loop: five refused connections to the same place from the same program.
    let mut pids = Vec::new();
    for _ in 0..5 {
        pids.push(cgroup.traffic(&["refused", &port.to_string()]).0);
    }
    let first = wait_for_event(&output, |e| e["kind"] == "alert");
    assert_eq!(first["count"], 1);
    assert_eq!(first["rule"], "generator");
    assert_eq!(first["severity"], "critical");
    assert_eq!(first["destination"], format!("127.0.0.1:{}", port.port()));
    assert!(first["workload"].as_str().unwrap().ends_with("sa-traffic"));
    assert_eq!(first["flow"]["pid"], pids[0]);
    // When the window ends, one alert for the four repeats.
    let folded = wait_for_event(&output, |e| e["kind"] == "alert" && e["count"] != 1);
    assert_eq!(folded["count"], 4);
    assert_eq!(folded["flow"]["pid"], pids[4]);
    // Subscribers can ask for alerts only.
    let out = agent()
        .args([
            "tail",
            "--json",
            "--since-seq",
            "0",
            "--kind",
            "alert",
            "--count",
            "2",
            "--socket",
        ])
        .arg(api_socket_of(&output))
        .output()
        .unwrap();
    let alerts: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let counts: Vec<u64> = alerts
        .iter()
        .map(|a| a["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [1, 4]);
    assert!(alerts.iter().all(|a| a["kind"] == "alert"));
    sigterm(&agent_child.0);
}

#[test]
fn tcp_needs_a_valid_client_certificate_from_the_right_ca() {
    require_root();
    let python = root().join("target/python-grpc/bin/python");
    let dir = tmpdir("mtls");
    let client_ext = "extendedKeyUsage=clientAuth\n";
    openssl_cert(&dir, "ca", None, "2", "");
    openssl_cert(
        &dir,
        "server",
        Some("ca"),
        "2",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    openssl_cert(&dir, "client", Some("ca"), "2", client_ext);
    openssl_cert(&dir, "expired", Some("ca"), "0", client_ext);
    openssl_cert(&dir, "other-ca", None, "2", "");
    openssl_cert(&dir, "stranger", Some("other-ca"), "2", client_ext);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\ntcp_listen = \"127.0.0.1:{port}\"\ntls_cert = \"{d}/server.pem\"\ntls_key = \"{d}/server.key\"\nclient_ca = \"{d}/ca.pem\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let cgroup = TestCgroup::new("api-mtls");
    let output = dir.join("events.jsonl");
    let (agent_child, _logs) =
        start_agent_with(&cgroup, &output, &["--config", config.to_str().unwrap()]);
    let agent_child = Reaped(agent_child);
    // The "expired" certificate's validity ended the second it was made; apart from its
    // dates it is as good as "client" (openssl accepts it when told to ignore time).
    std::thread::sleep(Duration::from_millis(1500));
    let verify = |check_time: bool| {
        let mut cmd = Command::new("openssl");
        cmd.args(["verify", "-CAfile"]).arg(dir.join("ca.pem"));
        if !check_time {
            cmd.arg("-no_check_time");
        }
        cmd.arg(dir.join("expired.pem"))
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(
        verify(false) && !verify(true),
        "expired.pem fails on its dates only"
    );
    let probe = |client: Option<&str>| -> String {
        let mut cmd = Command::new(&python);
        cmd.arg(root().join("tests/python/tls_probe.py"))
            .arg(format!("127.0.0.1:{port}"))
            .arg(dir.join("ca.pem"));
        if let Some(c) = client {
            cmd.arg(dir.join(format!("{c}.pem")))
                .arg(dir.join(format!("{c}.key")));
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(probe(Some("client")), "SERVING");
    for (what, client) in [
        ("no certificate", None),
        ("a certificate from another CA", Some("stranger")),
        ("an expired certificate", Some("expired")),
    ] {
        let answer = probe(client);
        assert!(answer.starts_with("refused"), "{what}: {answer}");
    }
    sigterm(&agent_child.0);
}

/// Twenty subscribers ask for a journal of a million records from its start and read nothing
/// (their pipes and gRPC windows fill up at once). Catch-up readers stream the journal a
/// record at a time, so the agent's memory stays bounded by its configuration; a subscriber
/// that does read gets its records, in order, meanwhile.
#[test]
fn twenty_stalled_subscribers_on_a_million_records_leave_memory_bounded_and_others_served() {
    require_root();
    const RECORDS: u64 = 1_000_000;
    let dir = tmpdir("stalled");
    let journal = dir.join("journal");
    let written = Command::new(target_bin("sa-journal-writer"))
        .arg(&journal)
        .args(["1", &(64u64 << 20).to_string(), &RECORDS.to_string()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(written.success());
    let cgroup = TestCgroup::new("api-stalled");
    let output = dir.join("events.jsonl");
    let (agent_child, _logs) =
        start_agent_with(&cgroup, &output, &["--journal", journal.to_str().unwrap()]);
    let agent_child = Reaped(agent_child);
    let socket = api_socket_of(&output);
    let rss_kib = || -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", agent_child.0.id()))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap()
    };
    let before = rss_kib();
    let stalled: Vec<_> = (0..20)
        .map(|_| Reaped(tail(&socket, &["--since-seq", "0"])))
        .collect();
    // Let every stalled stream fill whatever it can hold.
    std::thread::sleep(Duration::from_secs(3));
    let status = agent()
        .args(["status", "--json", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["subscribers"], 20, "{status}");
    // Another subscriber, reading, is served while the twenty stall.
    let start = std::time::Instant::now();
    let mut reader = tail(&socket, &["--since-seq", "500000", "--count", "20000"]);
    let mut text = String::new();
    reader
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(reader.wait().unwrap().success());
    let got = seqs(&text);
    assert_eq!(got.len(), 20_000);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, s)| *s == 500_000 + i as u64));
    let served_in = start.elapsed();
    let mut peak = 0;
    for _ in 0..10 {
        peak = peak.max(rss_kib());
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!(
        "agent RSS {} MiB before, at most {} MiB with 20 stalled subscribers on {RECORDS} records; \
         a reading subscriber got 20,000 records in {served_in:?}",
        before / 1024,
        peak / 1024
    );
    assert!(
        peak < 256 * 1024,
        "agent RSS {} MiB with 20 stalled subscribers",
        peak / 1024
    );
    // Twelve more make 32 streams of this client (the Unix socket's `local`): the limit. One
    // more is refused, with the numbers, and everything already open stays served.
    let more: Vec<_> = (0..12)
        .map(|_| Reaped(tail(&socket, &["--since-seq", "0"])))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = agent()
            .args(["status", "--json", "--socket"])
            .arg(&socket)
            .output()
            .unwrap();
        let status: Value = serde_json::from_slice(&status.stdout).unwrap();
        if status["subscribers"] == 32 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let refused = agent()
        .args([
            "tail",
            "--json",
            "--since-seq",
            "0",
            "--count",
            "1",
            "--socket",
        ])
        .arg(&socket)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("already has 32 event streams open"),
        "{stderr}"
    );
    drop(more);
    drop(stalled);
    drop(agent_child);
    let _ = std::fs::remove_dir_all(&dir);
}
