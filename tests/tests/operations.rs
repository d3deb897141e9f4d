//! What operators run the agent with: the metrics and health endpoints (checked by the real
//! `promtool` and scraped by a real Prometheus server), systemd's readiness protocol, SIGHUP
//! reloads, `SOVEREIGN_*` environment variables, and the start-up checks that stop a start
//! before any program is attached.
use std::{
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sovereign_agent_tests::{
    closed_port, free_port, http_get, loopback_policy, metric, promtool_check, require_root,
    sigterm, start_agent_with, stderr_lines, target_bin, wait_for_event, wait_for_log,
    wait_for_metric, Reaped, TestCgroup,
};

fn agent() -> Command {
    Command::new(target_bin("sovereign-agent"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sa-ops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}

#[test]
fn metrics_count_what_the_agent_saw_and_promtool_accepts_them() {
    require_root();
    let dir = tmpdir("metrics");
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        loopback_policy(
            "no-loopback",
            "3",
            "deny = [\"loopback\"]\nseverity = \"critical\"",
        ),
    )
    .unwrap();
    let cgroup = TestCgroup::new("metrics");
    let output = dir.join("events.jsonl");
    let addr = format!("127.0.0.1:{}", free_port());
    let (child, _logs) = start_agent_with(
        &cgroup,
        &output,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--metrics-listen",
            &addr,
        ],
    );
    let child = Reaped(child);
    assert_eq!(http_get(&addr, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(http_get(&addr, "/readyz"), (200, "ready\n".to_string()));

    const CONNECTS: usize = 40;
    // The kernel's run-time statistics of the programs, on for this test (and put back).
    struct BpfStats(String);
    impl Drop for BpfStats {
        fn drop(&mut self) {
            let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", &self.0);
        }
    }
    let _stats = BpfStats(
        std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or("0".into()),
    );
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").unwrap();
    cgroup.traffic(&["connect-loop", "127.0.0.1:0", &CONNECTS.to_string()]);
    let text = wait_for_metric(
        &addr,
        "sovereign_agent_events_total{kind=\"connect\"}",
        CONNECTS as f64,
    );
    assert_eq!(
        metric(&text, "sovereign_agent_events_total{kind=\"connect\"}"),
        Some(CONNECTS as f64),
        "{text}"
    );
    let runs = metric(
        &text,
        "sovereign_agent_bpf_program_runs_total{program=\"connect4\"}",
    )
    .unwrap_or(0.0);
    assert!(
        runs >= CONNECTS as f64,
        "connect4 ran for each connect: {text}"
    );
    assert!(
        metric(
            &text,
            "sovereign_agent_bpf_program_run_seconds_total{program=\"connect4\"}"
        )
        .is_some_and(|s| s > 0.0),
        "{text}"
    );
    // Every connect, established and close of the generator violates the policy's rule.
    let flows: f64 = ["connect", "established", "close"]
        .iter()
        .map(|k| {
            metric(
                &text,
                &format!("sovereign_agent_events_total{{kind=\"{k}\"}}"),
            )
            .unwrap()
        })
        .sum();
    assert_eq!(
        metric(
            &text,
            "sovereign_agent_verdicts_total{decision=\"violation\",rule=\"generator\",severity=\"critical\"}"
        ),
        Some(flows),
        "{text}"
    );
    assert_eq!(
        metric(&text, "sovereign_agent_alerts_total"),
        Some(1.0),
        "one folded alert for one (workload, destination, rule): {text}"
    );
    let hash = sha256(&policy);
    assert_eq!(
        metric(
            &text,
            &format!(
                "sovereign_agent_policy_info{{name=\"no-loopback\",version=\"3\",hash=\"{hash}\"}}"
            )
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "sovereign_agent_ready"), Some(1.0));
    assert_eq!(
        metric(&text, "sovereign_agent_kernel_lost_events_total"),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "sovereign_agent_ring_buffer_size_bytes"),
        Some((4u64 << 20) as f64)
    );
    let used = metric(&text, "sovereign_agent_ring_buffer_used_bytes").unwrap();
    assert!((0.0..=(4u64 << 20) as f64).contains(&used), "{text}");
    assert_eq!(metric(&text, "sovereign_agent_journal_segments"), Some(1.0));
    assert!(metric(&text, "sovereign_agent_journal_bytes").unwrap() > 160.0);
    assert!(metric(&text, "process_resident_memory_bytes").unwrap() > 1e6);
    promtool_check(&text);

    // A reload that fails keeps the policy and is counted; one that works replaces it.
    std::fs::write(&policy, "[policy]\nname = ").unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) };
    wait_for_metric(
        &addr,
        "sovereign_agent_policy_reloads_total{result=\"error\"}",
        1.0,
    );
    std::fs::write(
        &policy,
        loopback_policy("no-loopback", "4", "allow = [\"loopback\"]"),
    )
    .unwrap();
    // SAFETY: kill(2) on the agent this test started and still owns.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) };
    let text = wait_for_metric(
        &addr,
        "sovereign_agent_policy_reloads_total{result=\"ok\"}",
        1.0,
    );
    let hash = sha256(&policy);
    assert_eq!(
        metric(
            &text,
            &format!(
                "sovereign_agent_policy_info{{name=\"no-loopback\",version=\"4\",hash=\"{hash}\"}}"
            )
        ),
        Some(1.0),
        "{text}"
    );
    sigterm(&child.0);
}

#[test]
fn a_real_prometheus_server_scrapes_the_agent() {
    require_root();
    let dir = tmpdir("prometheus");
    let cgroup = TestCgroup::new("prom");
    let output = dir.join("events.jsonl");
    let agent_addr = format!("127.0.0.1:{}", free_port());
    let (child, _logs) = start_agent_with(&cgroup, &output, &["--metrics-listen", &agent_addr]);
    let _child = Reaped(child);
    const CONNECTS: usize = 25;
    cgroup.traffic(&["connect-loop", "127.0.0.1:0", &CONNECTS.to_string()]);

    let prom_addr = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: sovereign-agent\n    static_configs:\n      \
             - targets: ['{agent_addr}']\n"
        ),
    )
    .unwrap();
    let prometheus = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={prom_addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package, installed by `cargo xtask setup`)");
    let _prometheus = Reaped(prometheus);

    // Ask Prometheus (its HTTP API) until it has scraped the counter at its final value.
    let query = "/api/v1/query?query=sovereign_agent_events_total%7Bkind%3D%22connect%22%7D";
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(60) {
        if std::net::TcpStream::connect(&prom_addr).is_ok() {
            let (status, body) = http_get(&prom_addr, query);
            if status == 200 {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                let result = &v["data"]["result"];
                if let Some(sample) = result.as_array().and_then(|r| r.first()) {
                    assert_eq!(sample["metric"]["job"], "sovereign-agent");
                    assert_eq!(sample["metric"]["instance"], agent_addr.as_str());
                    if sample["value"][1] == CONNECTS.to_string().as_str() {
                        // And the target is healthy in Prometheus's own view.
                        let (_, up) = http_get(&prom_addr, "/api/v1/query?query=up");
                        assert!(up.contains("\"1\""), "{up}");
                        return;
                    }
                }
                last = body;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("Prometheus never reported {CONNECTS} connects; last answer: {last}");
}

/// The next message on the notify socket that satisfies `pred` (others are skipped).
fn next_message(notify: &UnixDatagram, pred: impl Fn(&str) -> bool) -> String {
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    let mut skipped = Vec::new();
    while start.elapsed() < Duration::from_secs(30) {
        let n = notify.recv(&mut buf).expect("a notify message within 30 s");
        let message = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
        if pred(&message) {
            return message;
        }
        skipped.push(message);
    }
    panic!("no such notify message in 30 s; got {skipped:?}");
}

/// `Type=notify`: READY=1 comes only once the programs are attached — a connect made the
/// moment it arrives is captured — then watchdog pings, STATUS on reload and STOPPING=1 on
/// SIGTERM.
#[test]
fn systemd_readiness_is_sent_once_the_programs_are_attached() {
    require_root();
    let dir = tmpdir("notify");
    let socket_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&socket_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, loopback_policy("p", "1", "allow = [\"loopback\"]")).unwrap();
    let cgroup = TestCgroup::new("notify");
    let output = dir.join("events.jsonl");
    // As systemd starts it: WATCHDOG_PID is the agent's own pid (the shell execs it).
    let child = Command::new("sh")
        .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""])
        .arg(target_bin("sovereign-agent"))
        .args([
            "run",
            "--no-api",
            "--metrics-listen",
            "127.0.0.1:0",
            "--cgroup",
        ])
        .arg(cgroup.path())
        .arg("--output")
        .arg(&output)
        .arg("--journal")
        .arg(dir.join("journal"))
        .arg("--policy")
        .arg(&policy)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Reaped(child);
    // The first message is READY=1: nothing (not even a watchdog ping) comes before it.
    let message = next_message(&notify, |_| true);
    assert!(message.lines().any(|l| l == "READY=1"), "{message}");
    assert!(message.contains("STATUS=capturing on"), "{message}");
    // No wait: the programs must already be attached.
    let refused = closed_port("127.0.0.1:0");
    let (pid, _) = cgroup.traffic(&["refused", &refused.to_string()]);
    let e = wait_for_event(&output, |e| e["kind"] == "connect" && e["pid"] == pid);
    assert_eq!(e["dst_port"], refused.port());
    // Watchdog pings at half of WATCHDOG_USEC.
    for _ in 0..2 {
        next_message(&notify, |m| m == "WATCHDOG=1");
    }

    std::fs::write(&policy, loopback_policy("p", "2", "allow = [\"loopback\"]")).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) };
    let message = next_message(&notify, |m| m != "WATCHDOG=1");
    assert!(
        message.contains("STATUS=capturing; policy p version 2 reloaded (SIGHUP)"),
        "{message}"
    );
    sigterm(&child.0);
    let message = next_message(&notify, |m| m != "WATCHDOG=1");
    assert!(message.lines().any(|l| l == "STOPPING=1"), "{message}");
}

/// A port in use or a missing TLS file stops the start with one sentence, before any
/// program is attached (the agent never logs `capturing`).
#[test]
fn a_port_in_use_or_a_missing_tls_file_stops_the_start_before_attaching() {
    require_root();
    let dir = tmpdir("refuse");
    let cgroup = TestCgroup::new("refuse");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let run = |extra: &[&str]| {
        let out = agent()
            .args(["run", "--output", "/dev/null", "--cgroup"])
            .arg(cgroup.path())
            .arg("--journal")
            .arg(dir.join("journal"))
            .arg("--api-socket")
            .arg(dir.join("api.sock"))
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !stderr.contains("capturing"),
            "attached before failing: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        (out.status.code(), stderr)
    };
    let (code, stderr) = run(&["--metrics-listen", &taken_addr]);
    assert_eq!(code, Some(73), "{stderr}");
    assert!(
        stderr.contains(&format!("metrics.listen {taken_addr}"))
            && stderr.contains("Address already in use")
            && stderr.contains("SOVEREIGN_METRICS_LISTEN"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one message: {stderr}");

    // The TCP API's certificate is missing.
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\ntcp_listen = \"127.0.0.1:{}\"\ntls_cert = \"{d}/missing.pem\"\n\
             tls_key = \"{d}/missing.key\"\nclient_ca = \"{d}/ca.pem\"\n",
            free_port(),
            d = dir.display()
        ),
    )
    .unwrap();
    let (code, stderr) = run(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("api.tls_cert")
            && stderr.contains(&format!("{}/missing.pem", dir.display()))
            && stderr.contains(config.to_str().unwrap()),
        "{stderr}"
    );
    // The collector's CA for the push is missing: caught at start, not in the background.
    std::fs::write(
        &config,
        format!(
            "[push]\ncollector = \"https://127.0.0.1:1\"\nca = \"{d}/ca.pem\"\n\
             cert = \"{d}/a.pem\"\nkey = \"{d}/a.key\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let (code, stderr) = run(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("push.ca") && stderr.contains("ca.pem"),
        "{stderr}"
    );
    drop(taken);
}

/// Containers configure the agent with `SOVEREIGN_*` variables: `config check` shows their
/// effect, `run` uses them, and a bad one is named with exit 64.
#[test]
fn environment_variables_configure_the_agent() {
    require_root();
    let dir = tmpdir("env");
    let config = dir.join("agent.toml");
    std::fs::write(&config, "[journal]\nsegment_max_bytes = 8192\n").unwrap();
    let port = free_port();
    let out = agent()
        .args(["config", "check"])
        .arg(&config)
        .env("SOVEREIGN_METRICS_LISTEN", format!("127.0.0.1:{port}"))
        .env("SOVEREIGN_JOURNAL_SEGMENT_MAX_BYTES", "1048576")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("segment_max_bytes = 1048576"), "{stdout}");
    assert!(
        stdout.contains(&format!("listen = \"127.0.0.1:{port}\"")),
        "{stdout}"
    );

    let out = agent()
        .args(["config", "check"])
        .arg(&config)
        .env("SOVEREIGN_JOURNAL_FSYNC", "sometimes")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("SOVEREIGN_JOURNAL_FSYNC") && stderr.contains("sometimes"),
        "{stderr}"
    );

    // `run` with its settings only in the environment.
    let cgroup = TestCgroup::new("env");
    let output = dir.join("events.jsonl");
    let mut child = agent()
        .args(["run", "--log-format", "json"])
        .env("SOVEREIGN_CGROUP", cgroup.path())
        .env("SOVEREIGN_OUTPUT", &output)
        .env("SOVEREIGN_JOURNAL_DIR", dir.join("journal"))
        .env("SOVEREIGN_API_ENABLED", "false")
        .env("SOVEREIGN_METRICS_LISTEN", format!("127.0.0.1:{port}"))
        .env("SOVEREIGN_JOURNAL_DIRR", "typo")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = stderr_lines(&mut child);
    let child = Reaped(child);
    assert!(wait_for_log(&logs, |l| l
        .contains("SOVEREIGN_JOURNAL_DIRR is not a setting")));
    assert!(wait_for_log(&logs, |l| l.contains("\"capturing\"")));
    let refused = closed_port("127.0.0.1:0");
    let (pid, _) = cgroup.traffic(&["refused", &refused.to_string()]);
    wait_for_event(&output, |e| e["kind"] == "connect" && e["pid"] == pid);
    let text = wait_for_metric(
        &format!("127.0.0.1:{port}"),
        "sovereign_agent_events_total{kind=\"connect\"}",
        1.0,
    );
    assert_eq!(
        metric(&text, "sovereign_agent_events_total{kind=\"connect\"}"),
        Some(1.0)
    );
    assert!(dir.join("journal/HEAD").exists() || dir.join("journal").is_dir());
    sigterm(&child.0);
}
