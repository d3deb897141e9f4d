//! `cargo xtask bench-alerts` (root): the alert path end to end, with the real agent and the
//! real collector over mutual TLS (release builds, certificates made with openssl). Prints
//! markdown table rows for docs/performance.md.
//!
//! 1. Push throughput: an agent without push records N alerts in its journal; a second agent
//!    on the same journal pushes the backlog over one push stream; alerts per second are
//!    measured at the collector (its journal's next sequence number, polled).
//! 2. Latency: 1,000 violating connections per second for 10 s; a subscriber on the collector
//!    (`sovereign-agent tail`) receives each alert; latency = receive time − the kernel's time
//!    of the connect() in the alert's flow. p50, p99, max.
//!
//! It lives with the integration tests to share their helpers (cgroups, certificates, the
//! collector, the agent's start); xtask builds it in release and runs it.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sovereign_agent_tests::{
    collector_certs, free_port, loopback_policy, sigterm, start_agent_with, start_collector,
    target_bin, TestCgroup,
};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

const BACKLOG: u64 = 50_000;
const RATE: u64 = 1_000;
const LATENCY_SECONDS: u64 = 10;

/// Alerts unfolded, and the budgets and the flow ceiling off: the generator is a flood by
/// design, and what is measured is the alert path itself (docs/performance.md).
const UNBOUNDED: &str = "[alerts]\nwindow_secs = 0\n\
    [budget]\nprocess_records_per_sec = 0\ncgroup_records_per_sec = 0\n\
    [journal]\nmax_flows_per_sec = 0\n";

fn main() {
    let dir = std::env::temp_dir().join("sovereign-bench-alerts");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench directory");
    collector_certs(&dir, "bench-agent");
    std::fs::write(
        dir.join("policy.toml"),
        loopback_policy(
            "bench-alerts",
            "1",
            "deny = [\"loopback\"]\nseverity = \"high\"",
        ),
    )
    .expect("policy");
    let port = free_port();
    std::fs::write(dir.join("record.toml"), UNBOUNDED).expect("config");
    std::fs::write(
        dir.join("push.toml"),
        format!(
            "{UNBOUNDED}[push]\ncollector = \"https://127.0.0.1:{port}\"\nca = \"{d}/ca.pem\"\n\
             cert = \"{d}/bench-agent.pem\"\nkey = \"{d}/bench-agent.key\"\n",
            d = dir.display()
        ),
    )
    .expect("config");
    let cgroup = TestCgroup::new("bench-alerts");
    let collector = start_collector(&dir, port);
    let socket = dir.join("collector.sock");

    // 1. Backlog: record, then push.
    let recorder = start_agent(&cgroup, &dir, "record.toml", "recorder");
    traffic(&cgroup, BACKLOG, None);
    std::thread::sleep(Duration::from_secs(1));
    stop(recorder);
    let pusher = start_agent(&cgroup, &dir, "push.toml", "pusher");
    let started = Instant::now();
    let mut first: Option<(Instant, u64)> = None;
    let last;
    loop {
        let n = collector_next_seq(&socket);
        if n > 0 && first.is_none() {
            first = Some((Instant::now(), n));
        }
        if n >= BACKLOG {
            last = Instant::now();
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the collector got {n} of {BACKLOG} alerts in 120 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let (t0, n0) = first.expect("a first acknowledgement");
    let rate = (BACKLOG - n0) as f64 / (last - t0).as_secs_f64();
    println!(
        "| push backlog over one stream | {BACKLOG} alerts | {rate:.0} alerts/s ({:.2} s from the first ack to the last; {:.2} s from agent start) |",
        (last - t0).as_secs_f64(),
        (last - started).as_secs_f64()
    );

    // 2. Latency at RATE flows/s (the pusher keeps running, caught up).
    let mut tail = Command::new(target_bin("sovereign-agent"))
        .args(["tail", "--json", "--kind", "alert", "--socket"])
        .arg(&socket)
        .stdout(Stdio::piped())
        .spawn()
        .expect("sovereign-agent tail");
    let out = tail.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut latencies = Vec::new();
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let received = OffsetDateTime::now_utc();
            let ts = line
                .split("\"flow\":{\"ts\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
            if let Some(ts) = ts {
                latencies.push((received - ts).as_seconds_f64() * 1000.0);
            }
        }
        latencies
    });
    std::thread::sleep(Duration::from_millis(500));
    traffic(&cgroup, RATE * LATENCY_SECONDS, Some(RATE));
    std::thread::sleep(Duration::from_secs(2));
    let _ = tail.kill();
    let _ = tail.wait();
    let mut lat = reader.join().expect("reader");
    stop(pusher);
    drop(collector);
    assert!(!lat.is_empty(), "the subscriber received no alerts");
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "| connect() → collector subscriber at {RATE} flows/s for {LATENCY_SECONDS} s | {} of {} alerts | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
        lat.len(),
        RATE * LATENCY_SECONDS,
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1]
    );
}

/// An agent on `cgroup` with the bench's policy and `config`, journaling to the bench's
/// journal (the recorder's, then the pusher's: the same one).
fn start_agent(cgroup: &TestCgroup, dir: &Path, config: &str, name: &str) -> Child {
    let arg = |p: &str| dir.join(p).display().to_string();
    let (child, _logs) = start_agent_with(
        cgroup,
        Path::new("/dev/null"),
        &[
            "--policy",
            &arg("policy.toml"),
            "--config",
            &arg(config),
            "--journal",
            &arg("agent-journal"),
            "--api-socket",
            &arg(&format!("{name}.sock")),
        ],
    );
    child
}

fn stop(mut child: Child) {
    sigterm(&child);
    let _ = child.wait();
}

/// `n` violating connects from the watched cgroup, at `rate` a second (or as fast as possible).
fn traffic(cgroup: &TestCgroup, n: u64, rate: Option<u64>) {
    let mut cmd = Command::new(target_bin("sa-traffic"));
    cmd.arg(cgroup.path().join("cgroup.procs")).args([
        "connect-loop",
        "127.0.0.1:0",
        &n.to_string(),
    ]);
    if let Some(r) = rate {
        cmd.env("SA_TRAFFIC_RATE", r.to_string());
    }
    let out = cmd.output().expect("sa-traffic");
    assert!(
        out.status.success(),
        "sa-traffic: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The collector journal's next sequence number (from `status --json` on its API socket).
fn collector_next_seq(socket: &Path) -> u64 {
    let out = Command::new(target_bin("sovereign-agent"))
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .output()
        .expect("sovereign-agent status");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "collector status: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    status["journal_next_seq"]
        .as_u64()
        .expect("journal_next_seq")
}
