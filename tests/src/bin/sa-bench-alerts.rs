//! `cargo xtask bench-alerts` (root): the alert path end to end, with the real agent and the
//! real collector over mutual TLS (release builds, certificates made with openssl). Prints
//! markdown table rows for docs/performance.md.
//!
//! 1. Push throughput: an agent without push records N alerts in its journal; a second agent
//!    on the same journal pushes the backlog over one push stream; alerts per second are
//!    measured at the collector (its journal's next sequence number, polled).
//! 2. Latency: 1,000 violating connections per second for 10 s, twice; a subscriber on the
//!    agent (the journal's share of the path), then one on the collector
//!    (`sovereign-agent tail`) receives each alert; latency = receive time − the kernel's time
//!    of the connect() in the alert's flow. p50, p99, max.
//! 3. The `nats` sink, against one `nats-server` and against a 3-node cluster (a stream
//!    replicated on all three): the same journal's alert backlog published (alerts per second
//!    acknowledged by JetStream, from the agent's sink counters); the latency of 2 through
//!    JetStream (agent → JetStream → a collector reading the stream → its subscriber); the
//!    flow-event backlog published (flow events per second).
//!
//! `sa-bench-alerts collector` runs 1 and 2 only, `sa-bench-alerts nats` 3 only. The agents'
//! warnings and errors go to stderr: a figure measured while deliveries failed and were
//! retried is not the sink's speed (two such bugs hid behind figures once).
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
    collector_certs, free_port, loopback_policy,
    nats::{jetstream, start_stream_collector, Cluster},
    settled, sigterm, start_agent_with, start_collector, status_of, target_bin, TestCgroup,
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
    // `sa-bench-alerts nats` runs section 3 alone, `sa-bench-alerts collector` 1 and 2.
    let only = std::env::args().nth(1);
    // The backlog every sink starts with: BACKLOG alerts (and their flows) in the journal,
    // recorded by an agent without sinks.
    let recorder = start_agent(&cgroup, &dir, "record.toml", "recorder");
    traffic(&cgroup, BACKLOG, None);
    std::thread::sleep(Duration::from_secs(1));
    stop(recorder);
    if only.as_deref() != Some("nats") {
        bench_collector(&cgroup, &dir, port);
    }
    if only.as_deref() != Some("collector") {
        // 3. The nats sink, on one node and on three.
        for nodes in [1, 3] {
            bench_nats(&cgroup, &dir, nodes);
        }
    }
}

/// Sections 1 and 2: the collector sink into `sovereign-collector`.
fn bench_collector(cgroup: &TestCgroup, dir: &Path, port: u16) {
    let collector = start_collector(dir, port);
    let socket = dir.join("collector.sock");

    // 1. The backlog, pushed.
    let pusher = start_agent(cgroup, dir, "push.toml", "pusher");
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

    // 2. Latency at RATE flows/s (the pusher keeps running, caught up): at the agent's own
    // subscriber (the journal's share of the path), then at the collector's.
    println!(
        "| connect() → agent subscriber at {RATE} flows/s for {LATENCY_SECONDS} s | {} |",
        latency(cgroup, &dir.join("pusher.sock"))
    );
    println!(
        "| connect() → collector subscriber at {RATE} flows/s for {LATENCY_SECONDS} s | {} |",
        latency(cgroup, &socket)
    );
    stop(pusher);
    drop(collector);
}

/// Section 3 on a JetStream of `nodes` nodes (the stream replicated on all of them).
fn bench_nats(cgroup: &TestCgroup, dir: &Path, nodes: usize) {
    let home = dir.join(format!("nats-{nodes}"));
    std::fs::create_dir_all(&home).expect("bench directory");
    collector_certs(&home, "bench-agent");
    let cluster = Cluster::start(&home, nodes);
    let servers = cluster.servers();
    jetstream(&[
        "create",
        &servers,
        "SOVEREIGN",
        "sovereign.>",
        &nodes.to_string(),
    ]);
    let list: Vec<String> = servers.split(',').map(|s| format!("{s:?}")).collect();
    let sink = |name: &str, kinds: &str| {
        let config = format!("{name}.toml");
        std::fs::write(
            dir.join(&config),
            format!(
                "agent_id = \"bench-agent\"\n{UNBOUNDED}[[sink]]\nname = \"{name}\"\n\
                 type = \"nats\"\nservers = [{}]\nformat = \"protobuf\"\nbatch = 2000\n\
                 [sink.filter]\nkinds = [{kinds}]\n",
                list.join(", ")
            ),
        )
        .expect("config");
        config
    };
    let label = if nodes == 1 {
        "1 node".to_string()
    } else {
        format!("{nodes} nodes, R{nodes}")
    };

    // The alert backlog (BACKLOG + the latency run's alerts are in the journal).
    let config = sink(&format!("alerts{nodes}"), "\"alert\"");
    let agent = start_agent(cgroup, dir, &config, "nats-alerts");
    let (rate, secs) = delivered_rate(&dir.join("nats-alerts.sock"), BACKLOG);
    println!(
        "| nats sink ({label}): alert backlog | {BACKLOG} alerts | {rate:.0} alerts/s ({secs:.2} s, each acknowledged by JetStream) |"
    );
    // Latency through JetStream to a collector reading the stream.
    let collector = start_stream_collector(&home, "collector", &servers, "SOVEREIGN");
    let socket = home.join("collector/collector.sock");
    let deadline = Instant::now() + Duration::from_secs(180);
    while collector_next_seq(&socket) < BACKLOG {
        assert!(
            Instant::now() < deadline,
            "the collector read {} alerts of the stream in 180 s",
            collector_next_seq(&socket)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Caught up with the stream (its head still for a second) before measuring live alerts.
    settled(|| collector_next_seq(&socket));
    println!(
        "| nats sink ({label}): connect() → JetStream → collector → subscriber at {RATE} flows/s for {LATENCY_SECONDS} s | {} |",
        latency(cgroup, &socket)
    );
    stop(agent);
    drop(collector);

    // The flow-event backlog: connect, established and close of every connection so far.
    let config = sink(
        &format!("flows{nodes}"),
        "\"connect\", \"established\", \"close\"",
    );
    let agent = start_agent(cgroup, dir, &config, "nats-flows");
    let flows = 2 * BACKLOG;
    let (rate, secs) = delivered_rate(&dir.join("nats-flows.sock"), flows);
    println!(
        "| nats sink ({label}): flow-event backlog | {flows} flow events | {rate:.0} events/s ({secs:.2} s) |"
    );
    stop(agent);
    drop(cluster);
}

/// Waits until the one sink of the agent on `socket` has delivered `n` events; the rate from
/// its first acknowledged batch to then, and those seconds.
fn delivered_rate(socket: &Path, n: u64) -> (f64, f64) {
    let started = Instant::now();
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let status = status_of(socket);
        let delivered = status["sinks"][0]["delivered"].as_u64().unwrap_or(0);
        if delivered > 0 && first.is_none() {
            first = Some((Instant::now(), delivered));
        }
        if delivered >= n {
            let (t0, n0) = first.expect("a first acknowledgement");
            let secs = t0.elapsed().as_secs_f64();
            return ((delivered - n0) as f64 / secs, secs);
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the sink delivered {delivered} of {n} in 300 s: {status}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// RATE violating connections a second for LATENCY_SECONDS, each alert received by a
/// subscriber (`tail`) of the API on `socket`: "N of M alerts | p50, p99, max".
fn latency(cgroup: &TestCgroup, socket: &Path) -> String {
    let mut tail = Command::new(target_bin("sovereign-agent"))
        .args(["tail", "--json", "--kind", "alert", "--socket"])
        .arg(socket)
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
    traffic(cgroup, RATE * LATENCY_SECONDS, Some(RATE));
    std::thread::sleep(Duration::from_secs(2));
    let _ = tail.kill();
    let _ = tail.wait();
    let mut lat = reader.join().expect("reader");
    assert!(!lat.is_empty(), "the subscriber received no alerts");
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    format!(
        "{} of {} alerts | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        RATE * LATENCY_SECONDS,
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1]
    )
}

/// An agent on `cgroup` with the bench's policy and `config`, journaling to the bench's
/// journal (the recorder's, then the pusher's: the same one).
fn start_agent(cgroup: &TestCgroup, dir: &Path, config: &str, name: &str) -> Child {
    let arg = |p: &str| dir.join(p).display().to_string();
    let (child, logs) = start_agent_with(
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
    // Shown, not swallowed: a delivery that fails and retries makes a figure meaningless.
    std::thread::spawn(move || {
        for line in logs {
            if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("agent: {line}");
            }
        }
    });
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
