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
//!    flow-event backlog published (flow events per second). With each backlog, the agent's
//!    CPU time per event delivered (the server shares these two CPUs: that figure is the one
//!    that carries to a host whose NATS runs elsewhere), and the servers' (all nodes).
//!
//! 4. The `syslog` sink into a real `rsyslog` over mutual TLS (RFC 5425, JSON bodies): the
//!    alert backlog (alerts per second counted in rsyslog's output file, and the agent's CPU
//!    per alert), then the latency of 2 from connect() to rsyslog's own reception time
//!    (`timegenerated`, microseconds).
//!
//! 5. The `webhook` sink into a real HTTPS receiver (Python's http.server and ssl; one POST
//!    per alert, kept alive): the first WEBHOOK_BACKLOG alerts of the backlog (alerts per
//!    second acknowledged, counted in the receiver's log), then the latency of 2 from connect()
//!    to the receiver's clock when the POST arrived.
//!
//! `sa-bench-alerts collector` runs 1 and 2 only, `sa-bench-alerts nats` 3 only,
//! `sa-bench-alerts syslog` 4 only, `sa-bench-alerts webhook` 5 only. The agents'
//! warnings and errors go to stderr: a figure measured while deliveries failed and were
//! retried is not the sink's speed (two such bugs hid behind figures once).
//!
//! It lives with the integration tests to share their helpers (cgroups, certificates, the
//! collector, the agent's start); xtask builds it in release and runs it.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sovereign_agent_tests::{
    collector_certs, free_port, loopback_policy,
    nats::{jetstream, start_stream_collector, Cluster},
    openssl_cert, rsyslog, settled, sigterm, start_agent_with, start_collector, status_of,
    target_bin, webhook, Reaped, TestCgroup,
};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

const BACKLOG: u64 = 50_000;
const RATE: u64 = 1_000;
const LATENCY_SECONDS: u64 = 10;
/// Alerts of the backlog the webhook section waits for (one POST each, into Python).
const WEBHOOK_BACKLOG: usize = 10_000;

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
    // `sa-bench-alerts collector` runs sections 1 and 2 alone, `nats` 3, `syslog` 4.
    let only = std::env::args().nth(1);
    let runs = |section: &str| only.is_none() || only.as_deref() == Some(section);
    // The backlog every sink starts with: BACKLOG alerts (and their flows) in the journal,
    // recorded by an agent without sinks.
    let recorder = start_agent(&cgroup, &dir, "record.toml", "recorder");
    traffic(&cgroup, BACKLOG, None);
    std::thread::sleep(Duration::from_secs(1));
    stop(recorder);
    if runs("collector") {
        bench_collector(&cgroup, &dir, port);
    }
    if runs("nats") {
        // 3. The nats sink, on one node and on three.
        for nodes in [1, 3] {
            bench_nats(&cgroup, &dir, nodes);
        }
    }
    if runs("syslog") {
        bench_syslog(&cgroup, &dir);
    }
    if runs("webhook") {
        bench_webhook(&cgroup, &dir);
    }
}

/// Section 5: the webhook sink into a real HTTPS receiver.
fn bench_webhook(cgroup: &TestCgroup, dir: &Path) {
    let home = dir.join("webhook");
    std::fs::create_dir_all(&home).expect("webhook directory");
    openssl_cert(&home, "ca", None, "2", "");
    openssl_cert(
        &home,
        "hook",
        Some("ca"),
        "2",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    let port = free_port();
    let receiver = webhook::start_receiver(&home, port, 0);
    std::fs::write(
        dir.join("webhook.toml"),
        format!(
            "agent_id = \"bench-agent\"\n{UNBOUNDED}[[sink]]\nname = \"soc\"\ntype = \"webhook\"\n\
             url = \"https://127.0.0.1:{port}/events\"\nca = \"{}/ca.pem\"\n",
            home.display()
        ),
    )
    .expect("config");
    let count = || webhook::received_count(&home);
    let agent = start_agent(cgroup, dir, "webhook.toml", "webhook");
    let d = arrival_rate(
        &agent,
        &[receiver.0.id()],
        WEBHOOK_BACKLOG,
        "the receiver",
        count,
        Duration::from_millis(50),
    );
    println!(
        "| webhook sink (HTTPS, one POST per alert, Python receiver): alert backlog | {WEBHOOK_BACKLOG} alerts | {:.0} alerts/s ({:.2} s, counted in the receiver's log; agent CPU {:.1} µs per alert, receiver's {:.1} µs) |",
        d.rate, d.secs, d.cpu_us_per_event, d.receivers_cpu_us_per_event
    );
    // The rest of the backlog first (the sink delivers in journal order), then live alerts.
    let before = settled(count);
    traffic(cgroup, RATE * LATENCY_SECONDS, Some(RATE));
    let goal = before + (RATE * LATENCY_SECONDS) as usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while count() < goal && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut lat: Vec<f64> = webhook::received(&home)[before..]
        .iter()
        .filter_map(|r| {
            let received = r["received_ns"].as_i64()?;
            let ts = OffsetDateTime::parse(r["body"]["flow"]["ts"].as_str()?, &Rfc3339).ok()?;
            Some((i128::from(received) - ts.unix_timestamp_nanos()) as f64 / 1e6)
        })
        .collect();
    assert!(!lat.is_empty(), "the receiver got no live alert");
    println!(
        "| webhook sink: connect() → receiver at {RATE} flows/s for {LATENCY_SECONDS} s | {} |",
        percentiles(&mut lat)
    );
    stop(agent);
    drop(receiver);
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
    let d = delivered_rate(
        &agent,
        &cluster.pids(),
        &dir.join("nats-alerts.sock"),
        BACKLOG,
    );
    println!(
        "| nats sink ({label}): alert backlog | {BACKLOG} alerts | {:.0} alerts/s ({:.2} s, each acknowledged by JetStream; agent CPU {:.1} µs per alert, the servers' {:.1} µs) |",
        d.rate, d.secs, d.cpu_us_per_event, d.receivers_cpu_us_per_event
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
    // Each backlog connection left three (some of the latency run's close later).
    let flows = 3 * BACKLOG;
    let d = delivered_rate(&agent, &cluster.pids(), &dir.join("nats-flows.sock"), flows);
    println!(
        "| nats sink ({label}): flow-event backlog | {flows} flow events | {:.0} events/s ({:.2} s; agent CPU {:.1} µs per event, the servers' {:.1} µs) |",
        d.rate, d.secs, d.cpu_us_per_event, d.receivers_cpu_us_per_event
    );
    stop(agent);
    drop(cluster);
}

/// Section 4: the syslog sink into rsyslog (RFC 5425, mutual TLS, JSON bodies).
fn bench_syslog(cgroup: &TestCgroup, dir: &Path) {
    let home = dir.join("syslog");
    let port = rsyslog::configure(&home);
    let receiver = Reaped(rsyslog::start(&home));
    let h = home.display();
    std::fs::write(
        dir.join("syslog.toml"),
        format!(
            "agent_id = \"bench-agent\"\n{UNBOUNDED}[[sink]]\nname = \"siem\"\ntype = \"syslog\"\n\
             address = \"127.0.0.1:{port}\"\nformat = \"json\"\nca = \"{h}/ca.pem\"\n\
             cert = \"{h}/agent.pem\"\nkey = \"{h}/agent.key\"\nbatch = 2000\n"
        ),
    )
    .expect("config");
    let agent = start_agent(cgroup, dir, "syslog.toml", "syslog");
    // Counted where they arrive: the sink counts an alert delivered once TLS wrote it.
    let d = arrival_rate(
        &agent,
        &[receiver.0.id()],
        BACKLOG as usize,
        "rsyslog",
        || rsyslog::received_count(&home),
        Duration::from_millis(5),
    );
    println!(
        "| syslog sink (rsyslog, TLS, JSON body): alert backlog | {BACKLOG} alerts | {:.0} alerts/s ({:.2} s, counted in rsyslog's output file; agent CPU {:.1} µs per alert, rsyslog's {:.1} µs) |",
        d.rate, d.secs, d.cpu_us_per_event, d.receivers_cpu_us_per_event
    );
    // Caught up (the rest of the journal's alerts too) before measuring live ones.
    let before = settled(|| rsyslog::received_count(&home));
    traffic(cgroup, RATE * LATENCY_SECONDS, Some(RATE));
    let wanted = before + (RATE * LATENCY_SECONDS) as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while rsyslog::received_count(&home) < wanted && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut lat: Vec<f64> = rsyslog::received(&home)[before..]
        .iter()
        .filter_map(|m| {
            let received = OffsetDateTime::parse(m["timegenerated"].as_str()?, &Rfc3339).ok()?;
            let body: serde_json::Value = serde_json::from_str(m["msg"].as_str()?).ok()?;
            let ts = OffsetDateTime::parse(body["flow"]["ts"].as_str()?, &Rfc3339).ok()?;
            Some((received - ts).as_seconds_f64() * 1000.0)
        })
        .collect();
    assert!(!lat.is_empty(), "rsyslog received no live alert");
    println!(
        "| syslog sink: connect() → rsyslog at {RATE} flows/s for {LATENCY_SECONDS} s | {} |",
        percentiles(&mut lat)
    );
    stop(agent);
    drop(receiver);
}

struct Delivery {
    /// Events per second from the first acknowledged batch to the `n`th event.
    rate: f64,
    secs: f64,
    /// The agent's CPU time (all its threads) over those seconds, per event delivered.
    cpu_us_per_event: f64,
    /// The same for the receiving processes (servers sharing these CPUs with the agent).
    receivers_cpu_us_per_event: f64,
}

/// Waits until `receiver` has `n` events by `count` (what arrived or was acknowledged,
/// polled every `every`; at most 300 s): the rate, and the CPU of the agent and of the
/// `receivers` (process ids) from the first on.
fn arrival_rate(
    agent: &Reaped,
    receivers: &[u32],
    n: usize,
    receiver: &str,
    count: impl Fn() -> usize,
    every: Duration,
) -> Delivery {
    let started = Instant::now();
    let mut first: Option<(Instant, usize, f64, f64)> = None;
    let receivers_cpu = || receivers.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let mut profile = None;
    loop {
        let got = count();
        if got > 0 && first.is_none() {
            profile = Profile::start(agent.0.id(), receiver);
            first = Some((
                Instant::now(),
                got,
                cpu_seconds(agent.0.id()),
                receivers_cpu(),
            ));
        }
        if got >= n {
            drop(profile);
            let (t0, n0, cpu0, receivers0) = first.expect("a first arrival");
            let secs = t0.elapsed().as_secs_f64();
            let events = (got - n0) as f64;
            return Delivery {
                rate: events / secs,
                secs,
                cpu_us_per_event: (cpu_seconds(agent.0.id()) - cpu0) * 1e6 / events,
                receivers_cpu_us_per_event: (receivers_cpu() - receivers0) * 1e6 / events,
            };
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{receiver} got {got} of {n} events in 300 s"
        );
        std::thread::sleep(every);
    }
}

/// With SOVEREIGN_BENCH_PERF=DIR, `perf record --call-graph dwarf` of the agent over each
/// measured backlog, into DIR/backlog-N.data (`perf report -i FILE --no-children --sort
/// symbol`, or `--children` for whole call paths): where the agent's CPU per event goes.
/// Stopped (SIGINT: perf writes its file) when dropped. Profiling slows the agent: the rates
/// of such a run are not figures.
struct Profile(Reaped);

impl Profile {
    fn start(pid: u32, what: &str) -> Option<Profile> {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::var_os("SOVEREIGN_BENCH_PERF")?;
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let out = Path::new(&dir).join(format!("backlog-{n}.data"));
        eprintln!(
            "profiling the agent's backlog to {what} into {}",
            out.display()
        );
        let perf = Command::new("perf")
            .args([
                "record",
                "-q",
                "--call-graph",
                "dwarf,8192",
                "-F",
                "999",
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(&out)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("perf: {e}"))
            .ok()?;
        Some(Profile(Reaped(perf)))
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0 .0.id() as i32, libc::SIGINT) };
        let _ = self.0 .0.wait();
    }
}

/// Waits until the one sink of `agent` (API on `socket`) has delivered `n` events.
fn delivered_rate(agent: &Reaped, receivers: &[u32], socket: &Path, n: u64) -> Delivery {
    let delivered = || {
        let d = status_of(socket)["sinks"][0]["delivered"]
            .as_u64()
            .unwrap_or(0);
        usize::try_from(d).unwrap_or(usize::MAX)
    };
    arrival_rate(
        agent,
        receivers,
        usize::try_from(n).unwrap_or(usize::MAX),
        "the sink (delivered, by its status)",
        delivered,
        Duration::from_millis(5),
    )
}

/// User and system CPU seconds of process `pid`, all threads (/proc/PID/stat, in USER_HZ
/// ticks: 100 a second on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces), from field 3 on.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15, the 12th and 13th after the command.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

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
    percentiles(&mut lat)
}

/// `N of M alerts | p50, p99, max` of latencies in milliseconds (not empty).
fn percentiles(lat: &mut [f64]) -> String {
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
/// The agent with `config`; killed when dropped, so a failed measurement (a panic) leaves no
/// agent running.
fn start_agent(cgroup: &TestCgroup, dir: &Path, config: &str, name: &str) -> Reaped {
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
    Reaped(child)
}

fn stop(mut agent: Reaped) {
    sigterm(&agent.0);
    let _ = agent.0.wait();
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
