//! Alerts delivered to a collector exactly once, through a collector outage (30 s) and an
//! agent restart: the real agent, the real `sovereign-collector`, mutual TLS with
//! openssl-made certificates, and the collector's stream read by `sovereign-agent tail`.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use serde_json::Value;
use sovereign_agent_tests::{
    assert_metrics, closed_port, collector_certs, free_port, http_get, loopback_policy, metric,
    promtool_check, python_client, require_root, run_agent, sigterm, start_agent_with,
    start_collector, start_collector_with, status_of, tail_events, target_bin, wait_for_event,
    wait_for_metric, Reaped, TestCgroup,
};

/// The `[push]` section's sink, as /metrics labels it.
const DELIVERED: &str =
    "sovereign_agent_sink_delivered_total{sink=\"collector\",type=\"collector\"}";
const CONNECTED: &str = "sovereign_agent_sink_connected{sink=\"collector\",type=\"collector\"}";
const ERRORS: &str = "sovereign_agent_sink_errors_total{sink=\"collector\",type=\"collector\"}";
const BACKLOG: &str = "sovereign_agent_sink_backlog_records{sink=\"collector\",type=\"collector\"}";
const LAG: &str = "sovereign_agent_sink_lag_seconds{sink=\"collector\",type=\"collector\"}";

/// How long the collector is down while violations keep happening.
const OUTAGE: Duration = Duration::from_secs(30);

/// The collector's first `n` alerts (waits up to 60 s for them).
fn collector_alerts(dir: &Path, n: usize) -> Vec<Value> {
    tail_events(&dir.join("collector.sock"), "alert", n)
}

fn start_agent(cgroup: &TestCgroup, dir: &Path, output: &str, metrics: &str) -> Child {
    let out = dir.join(output);
    let (child, _logs) = start_agent_with(
        cgroup,
        &out,
        &[
            "--policy",
            dir.join("policy.toml").to_str().unwrap(),
            "--config",
            dir.join("agent.toml").to_str().unwrap(),
            "--journal",
            dir.join("agent-journal").to_str().unwrap(),
            "--metrics-listen",
            metrics,
        ],
    );
    child
}

fn violations(cgroup: &TestCgroup, n: usize) -> Vec<u32> {
    (0..n)
        .map(|_| {
            let port = closed_port("127.0.0.1:0");
            cgroup.traffic(&["refused", &port.to_string()]).0
        })
        .collect()
}

#[test]
fn every_alert_reaches_the_collector_exactly_once_through_an_outage_and_a_restart() {
    require_root();
    let dir: PathBuf = std::env::temp_dir().join(format!("sa-collector-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    collector_certs(&dir, "agent-a");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.join("policy.toml"),
        loopback_policy(
            "no-loopback",
            "1",
            "deny = [\"loopback\"]\nseverity = \"high\"",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            "[alerts]\nwindow_secs = 0\n\n[push]\ncollector = \"https://127.0.0.1:{port}\"\nca = \"{d}/ca.pem\"\ncert = \"{d}/agent-a.pem\"\nkey = \"{d}/agent-a.key\"\n",
            d = dir.display()
        ),
    )
    .unwrap();

    let collector = start_collector(&dir, port);
    let cgroup = TestCgroup::new("collector");
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut agent = Reaped(start_agent(&cgroup, &dir, "run1.jsonl", &metrics));
    let mut pids = violations(&cgroup, 3);
    let first = collector_alerts(&dir, 3);
    assert_eq!(first.len(), 3);
    // The agent's view of the delivery: all acknowledged, within the test's duration, and
    // each live batch at the first attempt (an acknowledgement taken for a forged claim
    // beyond the journal's head made every one fail and wait for a retry).
    let text = wait_for_metric(&metrics, DELIVERED, 3.0);
    assert_metrics(
        &text,
        &[
            ("sovereign_agent_alerts_total", 3.0),
            (DELIVERED, 3.0),
            (CONNECTED, 1.0),
            (ERRORS, 0.0),
        ],
    );
    let lag = metric(&text, LAG).unwrap();
    assert!(lag > 0.0 && lag < 30.0, "{text}");

    // The collector goes away; violations go on; the agent is restarted once meanwhile.
    let outage = Instant::now();
    sigterm(&collector.0);
    drop(collector);
    pids.extend(violations(&cgroup, 3));
    wait_for_event(&dir.join("run1.jsonl"), |e| {
        e["kind"] == "alert" && e["flow"]["pid"] == pids[5]
    });
    sigterm(&agent.0);
    assert!(agent.0.wait().unwrap().success());
    agent = Reaped(start_agent(&cgroup, &dir, "run2.jsonl", &metrics));
    pids.extend(violations(&cgroup, 3));
    wait_for_event(&dir.join("run2.jsonl"), |e| {
        e["kind"] == "alert" && e["flow"]["pid"] == pids[8]
    });
    // During the outage: this run's three alerts wait (at least that many journal records
    // after the cursor), the sink is down and retrying.
    let text = wait_for_metric(&metrics, CONNECTED, 0.0);
    assert_metrics(&text, &[(CONNECTED, 0.0), (DELIVERED, 0.0)]);
    assert!(metric(&text, ERRORS).unwrap() >= 1.0, "{text}");
    assert!(metric(&text, BACKLOG).unwrap() >= 3.0, "{text}");
    std::thread::sleep(OUTAGE.saturating_sub(outage.elapsed()));

    // Back: every alert arrives, once, in the agent's order.
    let _collector = start_collector(&dir, port);
    let alerts = collector_alerts(&dir, 9);
    // This run delivered its three and the three the previous run left behind.
    let text = wait_for_metric(&metrics, DELIVERED, 6.0);
    assert_metrics(&text, &[(DELIVERED, 6.0), (CONNECTED, 1.0)]);
    let got: Vec<u32> = alerts
        .iter()
        .map(|a| a["flow"]["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(got, pids, "each violation's alert, in order");
    assert!(alerts
        .iter()
        .all(|a| a["agent_id"] == "agent-a" && a["count"] == 1));
    let seqs: Vec<u64> = alerts
        .iter()
        .map(|a| a["agent_seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // An independent client (Python grpcio) subscribed to the collector sees the same.
    let py: Vec<Value> = python_client(&dir.join("collector.sock"), 0, 9, "alert")
        .into_iter()
        .skip(3)
        .collect();
    let py_pids: Vec<u32> = py
        .iter()
        .map(|a| a["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(py_pids, pids);
    assert!(py.iter().all(|a| a["body"] == "alert"
        && a["agent_id"] == "agent-a"
        && a["severity"] == "SEVERITY_HIGH"));
    // `tail --collector` reads the same over TCP with a subscriber's certificate.
    let out = Command::new(target_bin("sovereign-agent"))
        .args([
            "tail",
            "--json",
            "--since-seq",
            "0",
            "--kind",
            "alert",
            "--count",
            "9",
        ])
        .arg("--collector")
        .arg(format!("https://127.0.0.1:{port}"))
        .arg("--ca")
        .arg(dir.join("ca.pem"))
        .arg("--cert")
        .arg(dir.join("team.pem"))
        .arg("--key")
        .arg(dir.join("team.key"))
        .output()
        .unwrap();
    let remote: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(remote, alerts, "{}", String::from_utf8_lossy(&out.stderr));
    // Nothing twice: the collector's journal holds exactly these nine records.
    std::thread::sleep(Duration::from_secs(1));
    let status = Command::new(target_bin("sovereign-agent"))
        .args(["status", "--json", "--socket"])
        .arg(dir.join("collector.sock"))
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["journal_next_seq"], 9, "{status}");
    // The fleet report of the collector's journal: the nine alerts under their agent.
    let journal = dir.join("collector-journal");
    let (code, out, err) = run_agent(["report", "--format", "json", journal.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["totals"]["alerts"], 9, "{:#}", report["verdicts"]);
    let rows = report["verdicts"]["alerts"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["agent"] == "agent-a"), "{rows:#?}");
    let violations: u64 = rows.iter().map(|r| r["violations"].as_u64().unwrap()).sum();
    assert_eq!(violations, 9);
    assert_eq!(report["scope"]["agents"][0]["agent"], "agent-a");
    sigterm(&agent.0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A process with a 2.1 MiB command line makes 3,000 violating connects while the collector is
/// down. Each flow and alert is journaled with the command line cut to 4 KiB (` ...` marks the
/// cut) instead of being too large to journal or push; the backlog (over 4 MiB of alerts, more
/// than one push message may carry) is delivered in full, in order, when the collector starts.
#[test]
fn alerts_with_huge_command_lines_and_a_backlog_over_the_message_limit_are_all_delivered() {
    require_root();
    const N: usize = 3000;
    let dir: PathBuf =
        std::env::temp_dir().join(format!("sa-collector-big-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    collector_certs(&dir, "agent-a");
    let port = free_port();
    std::fs::write(
        dir.join("policy.toml"),
        "[policy]\nname = \"no-loopback\"\nversion = \"1\"\ndefault = \"allow\"\n\n\
         [zones.loopback]\ncidrs = [\"127.0.0.0/8\"]\n\n\
         [[rule]]\nname = \"python\"\nworkload = { comm = [\"python3\"] }\n\
         deny = [\"loopback\"]\nseverity = \"high\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            "[alerts]\nwindow_secs = 0\n\n[push]\ncollector = \"https://127.0.0.1:{port}\"\nca = \"{d}/ca.pem\"\ncert = \"{d}/agent-a.pem\"\nkey = \"{d}/agent-a.key\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    // The workload re-executes itself with 21 arguments of 100 KiB (a larger stack limit
    // raises the kernel's argument limit above 2 MiB), then connects N times.
    let script = dir.join("long.py");
    std::fs::write(
        &script,
        "import os, resource, socket, sys\n\
         if len(sys.argv) == 2:\n\
         \x20   resource.setrlimit(resource.RLIMIT_STACK, (64 << 20, 64 << 20))\n\
         \x20   os.execv('/usr/bin/python3', ['python3', __file__, sys.argv[1]] + ['a' * 100_000] * 21)\n\
         for _ in range(int(os.environ['N'])):\n\
         \x20   s = socket.socket()\n\
         \x20   try:\n\
         \x20       s.connect(('127.0.0.1', int(sys.argv[1].rsplit(':', 1)[1])))\n\
         \x20   except OSError:\n\
         \x20       pass\n\
         \x20   s.close()\n\
         print(os.getpid())\n",
    )
    .unwrap();

    let cgroup = TestCgroup::new("collector-big");
    let metrics = format!("127.0.0.1:{}", free_port());
    let agent = Reaped(start_agent(&cgroup, &dir, "run.jsonl", &metrics));
    let closed = closed_port("127.0.0.1:0");
    let (pid, _) = sovereign_agent_tests::run_in_cgroup(
        &cgroup,
        &format!("env N={N} /usr/bin/python3 {} {closed}", script.display()),
    );
    let output = dir.join("run.jsonl");
    let alerts = |events: &[Value]| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["kind"] == "alert" && e["flow"]["pid"] == pid)
            .cloned()
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let journaled = loop {
        let a = alerts(&sovereign_agent_tests::events_of(&output));
        if a.len() >= N || Instant::now() > deadline {
            break a;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(journaled.len(), N, "one alert per violating connect");
    let backlog: usize = journaled.iter().map(|a| a.to_string().len()).sum();
    assert!(
        backlog > 4 << 20,
        "the backlog ({backlog} bytes of alerts) is over the collector's 4 MiB message limit"
    );
    for a in &journaled {
        let cmdline = a["flow"]["cmdline"].as_str().unwrap();
        assert!(
            cmdline.starts_with("python3 ") && cmdline.ends_with(" ...") && cmdline.len() <= 4100,
            "cut to 4 KiB with its marker: {} bytes",
            cmdline.len()
        );
    }
    // The flows themselves are journaled too (their export is the journal's decode).
    let export = Command::new(target_bin("sovereign-agent"))
        .args(["journal", "export"])
        .arg(dir.join("agent-journal"))
        .output()
        .unwrap();
    assert!(export.status.success());
    let connects = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "connect" && e["pid"] == pid)
        .count();
    assert_eq!(connects, N, "every violating connect is in the journal");

    // The collector starts: the whole backlog arrives, once, in order.
    let _collector = start_collector(&dir, port);
    let delivered = collector_alerts(&dir, N);
    assert_eq!(delivered.len(), N);
    assert!(delivered.iter().all(|a| a["flow"]["pid"] == pid));
    let seqs: Vec<u64> = delivered
        .iter()
        .map(|a| a["agent_seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in the agent's order");
    let text = wait_for_metric(&metrics, DELIVERED, N as f64);
    assert_metrics(&text, &[(DELIVERED, N as f64)]);
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The status `sovereign-agent status --json` reads on `socket`.
/// The attacks on the collector itself. A node is rebuilt under the same name: its agent starts
/// a new journal whose sequence numbers are lower than those the collector stored from the old
/// one, and its alerts must not be dropped as duplicates (the collector deduplicated by
/// certificate name and sequence number alone, and acknowledged them unseen). A subscriber's
/// certificate must not push alerts into the fleet's record, and an agent's certificate (on
/// every node, so the easiest to steal) must not read the whole fleet's alerts.
#[test]
fn a_reinstalled_agent_is_heard_and_certificates_keep_to_their_roles() {
    require_root();
    let dir: PathBuf =
        std::env::temp_dir().join(format!("sa-collector-roles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    collector_certs(&dir, "agent-a");
    let port = free_port();
    std::fs::write(
        dir.join("policy.toml"),
        loopback_policy(
            "no-loopback",
            "1",
            "deny = [\"loopback\"]\nseverity = \"high\"",
        ),
    )
    .unwrap();
    let agent_toml = |cert: &str| {
        std::fs::write(
            dir.join("agent.toml"),
            format!(
                "[alerts]\nwindow_secs = 0\n\n[push]\ncollector = \"https://127.0.0.1:{port}\"\nca = \"{d}/ca.pem\"\ncert = \"{d}/{cert}.pem\"\nkey = \"{d}/{cert}.key\"\n",
                d = dir.display()
            ),
        )
        .unwrap();
    };
    agent_toml("agent-a");
    let collector_metrics = format!("127.0.0.1:{}", free_port());
    let _collector = start_collector_with(&dir, port, &["--metrics-listen", &collector_metrics]);
    let cgroup = TestCgroup::new("collector-roles");
    let metrics = format!("127.0.0.1:{}", free_port());

    // The first installation: ten violations, stored.
    let agent = Reaped(start_agent(&cgroup, &dir, "run1.jsonl", &metrics));
    let mut pids = violations(&cgroup, 10);
    assert_eq!(collector_alerts(&dir, 10).len(), 10);
    wait_for_metric(&metrics, DELIVERED, 10.0);
    sigterm(&agent.0);
    drop(agent);
    let old_journal = std::fs::read_to_string(dir.join("agent-journal/journal.id")).unwrap();

    // Reinstalled: a new, empty journal under the same certificate; two violations.
    std::fs::remove_dir_all(dir.join("agent-journal")).unwrap();
    let agent = Reaped(start_agent(&cgroup, &dir, "run2.jsonl", &metrics));
    pids.extend(violations(&cgroup, 2));
    let alerts = collector_alerts(&dir, 12);
    let got: Vec<u32> = alerts
        .iter()
        .map(|a| a["flow"]["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(
        got, pids,
        "the new journal's alerts are stored, after the old ones"
    );
    let new_journal = std::fs::read_to_string(dir.join("agent-journal/journal.id")).unwrap();
    assert_ne!(old_journal, new_journal, "a new journal has a new identity");
    // Its first alert's sequence number is below the last one stored from the old journal:
    // exactly what a (name, seq) high-water mark would have dropped.
    assert!(
        alerts[10]["agent_seq"].as_u64() < alerts[9]["agent_seq"].as_u64(),
        "{} then {}",
        alerts[9],
        alerts[10]
    );
    assert!(alerts.iter().all(|a| a["agent_id"] == "agent-a"));
    assert_eq!(alerts[9]["agent_journal_id"], old_journal.trim());
    assert_eq!(alerts[10]["agent_journal_id"], new_journal.trim());
    wait_for_metric(&metrics, DELIVERED, 2.0);
    // The collector's status lists both journals of agent-a, the live one connected.
    let status = status_of(&dir.join("collector.sock"));
    let agents = status["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2, "{status}");
    let of = |id: &str| {
        agents
            .iter()
            .find(|a| a["journal_id"] == id)
            .unwrap_or_else(|| panic!("journal {id} in {status}"))
    };
    let (old, new) = (of(old_journal.trim()), of(new_journal.trim()));
    assert_eq!(old["agent_id"], "agent-a");
    assert_eq!(old["last_seq"], alerts[9]["agent_seq"]);
    assert_eq!(old["connected"], false);
    assert_eq!(new["last_seq"], alerts[11]["agent_seq"]);
    assert_eq!(new["connected"], true);
    assert!(new["last_seen"].is_string(), "{status}");
    assert_eq!(status["journal_next_seq"], 12, "{status}");
    // The same figures on the collector's /metrics, in a form Prometheus's linter accepts.
    let (code, text) = http_get(&collector_metrics, "/metrics");
    assert_eq!(code, 200, "{text}");
    promtool_check(&text);
    let of_journal = |name: &str, journal: &str| {
        format!("{name}{{agent=\"agent-a\",journal=\"{}\"}}", journal.trim())
    };
    let expected: Vec<(String, f64)> = vec![
        ("sovereign_collector_events_stored_total".into(), 12.0),
        ("sovereign_collector_batches_refused_total".into(), 0.0),
        ("sovereign_collector_journal_next_seq".into(), 12.0),
        ("sovereign_collector_agent_journals".into(), 2.0),
        (
            of_journal("sovereign_collector_agent_last_seq", &old_journal),
            old["last_seq"].as_f64().unwrap(),
        ),
        (
            of_journal("sovereign_collector_agent_last_seq", &new_journal),
            new["last_seq"].as_f64().unwrap(),
        ),
        (
            of_journal("sovereign_collector_agent_connected", &old_journal),
            0.0,
        ),
        (
            of_journal("sovereign_collector_agent_connected", &new_journal),
            1.0,
        ),
    ];
    let expected: Vec<(&str, f64)> = expected.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_metrics(&text, &expected);
    sigterm(&agent.0);
    drop(agent);

    // A subscriber's certificate cannot push: the agent's sink is refused, says why, and
    // nothing reaches the collector's journal.
    agent_toml("team");
    let run3 = dir.join("run3.jsonl");
    let agent = Reaped(start_agent(&cgroup, &dir, "run3.jsonl", &metrics));
    pids.extend(violations(&cgroup, 1));
    wait_for_event(&run3, |e| {
        e["kind"] == "alert" && e["flow"]["pid"] == pids[12]
    });
    let text = wait_for_metric(&metrics, ERRORS, 1.0);
    assert_metrics(&text, &[(DELIVERED, 0.0), (CONNECTED, 0.0)]);
    let status = status_of(&sovereign_agent_tests::api_socket_of(&run3));
    let sink = &status["sinks"][0];
    assert_eq!(sink["name"], "collector", "{status}");
    let error = sink["last_error"].as_str().unwrap();
    assert!(
        error.contains("is not from the agent CA"),
        "the refusal says why: {error}"
    );
    assert_eq!(
        status_of(&dir.join("collector.sock"))["journal_next_seq"],
        12
    );
    drop(agent);

    // An agent's certificate cannot read the fleet's alerts; a subscriber's can.
    let tail = |cert: &str| {
        Command::new(target_bin("sovereign-agent"))
            .args(["tail", "--json", "--since-seq", "0", "--count", "12"])
            .arg("--collector")
            .arg(format!("https://127.0.0.1:{port}"))
            .arg("--ca")
            .arg(dir.join("ca.pem"))
            .arg("--cert")
            .arg(dir.join(format!("{cert}.pem")))
            .arg("--key")
            .arg(dir.join(format!("{cert}.key")))
            .output()
            .unwrap()
    };
    let refused = tail("agent-a");
    assert!(!refused.status.success());
    assert!(refused.stdout.is_empty(), "no event was shown");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("not from the subscriber CA"), "{stderr}");
    let allowed = tail("team");
    assert!(allowed.status.success());
    assert_eq!(String::from_utf8_lossy(&allowed.stdout).lines().count(), 12);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The attack of issue 31 (finding 1): an agent presents its own certificate and key with the
/// team's (public) subscriber certificate appended to its chain. The handshake accepts it (the
/// leaf chains to the agent CA); the subscriber role must not, because the role comes from the
/// leaf's own verified path, not from any certificate in the chain. Before the fix, `status`
/// and `tail` of the whole fleet answered.
#[test]
fn an_agent_certificate_with_the_subscriber_certificate_appended_cannot_read_the_fleet() {
    let dir: PathBuf = std::env::temp_dir().join(format!("sa-roles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    collector_certs(&dir, "agent-a");
    let forged = [
        std::fs::read_to_string(dir.join("agent-a.pem")).unwrap(),
        std::fs::read_to_string(dir.join("team.pem")).unwrap(),
        std::fs::read_to_string(dir.join("subscribers-ca.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(dir.join("forged.pem"), forged).unwrap();
    std::fs::copy(dir.join("agent-a.key"), dir.join("forged.key")).unwrap();
    let port = free_port();
    let _collector = start_collector(&dir, port);
    let client = |verb: &str, cert: &str| {
        let mut command = Command::new(target_bin("sovereign-agent"));
        command.arg(verb);
        if verb == "tail" {
            command.args(["--json", "--since-seq", "0", "--count", "1"]);
        } else {
            command.arg("--json");
        }
        command
            .arg("--collector")
            .arg(format!("https://127.0.0.1:{port}"))
            .arg("--ca")
            .arg(dir.join("ca.pem"))
            .arg("--cert")
            .arg(dir.join(format!("{cert}.pem")))
            .arg("--key")
            .arg(dir.join(format!("{cert}.key")))
            .output()
            .unwrap()
    };
    for verb in ["status", "tail"] {
        let refused = client(verb, "forged");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{verb} answered a forged chain");
        assert!(refused.stdout.is_empty(), "{verb}: nothing shown");
        assert!(
            stderr.contains("\"agent-a\" is not from the subscriber CA"),
            "{verb}: {stderr}"
        );
    }
    // The team's own certificate still reads.
    let allowed = client("status", "team");
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let status: Value = serde_json::from_slice(&allowed.stdout).unwrap();
    assert_eq!(status["journal_next_seq"], 0, "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether the peer closed `s` (EOF or reset) within `wait`; `false` when it is still open.
fn closed_by_peer(mut s: &std::net::TcpStream, wait: Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// Issue 31, finding 9: the collector had no TLS handshake timeout and no connection cap. A
/// host that opens connections and never sends a ClientHello held every one of them forever
/// (until the collector ran out of file descriptors and no agent could push). Now one client
/// address gets at most `--max-connections-per-client` connections (the rest are closed at
/// accept and counted), a handshake not finished within `--handshake-timeout-secs` is
/// dropped, and the team reads the fleet meanwhile from another address.
#[test]
fn connections_that_never_finish_a_handshake_are_capped_and_timed_out() {
    let dir: PathBuf = std::env::temp_dir().join(format!("sa-conn-caps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    collector_certs(&dir, "agent-a");
    let (port, metrics_port) = (free_port(), free_port());
    let metrics = format!("127.0.0.1:{metrics_port}");
    let _collector = start_collector_with(
        &dir,
        port,
        &[
            "--max-connections-per-client",
            "8",
            "--handshake-timeout-secs",
            "8",
            "--metrics-listen",
            &metrics,
        ],
    );
    // The attacker: 40 connections from 127.0.0.2 that send nothing.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let idle: Vec<std::net::TcpStream> = (0..40)
        .map(|_| {
            runtime.block_on(async {
                let s = tokio::net::TcpSocket::new_v4().unwrap();
                s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
                let s = s
                    .connect(format!("127.0.0.1:{port}").parse().unwrap())
                    .await
                    .unwrap();
                s.into_std().unwrap()
            })
        })
        .collect();
    for s in &idle {
        s.set_nonblocking(false).unwrap();
    }
    // The collector closed the 32 over the cap as it accepted them (counted), and holds 8.
    wait_for_metric(
        &metrics,
        "sovereign_collector_connections_refused_total{cap=\"per_client\"}",
        32.0,
    );
    let closed = idle
        .iter()
        .filter(|s| closed_by_peer(s, Duration::from_millis(100)))
        .count();
    assert_eq!(
        closed, 32,
        "connections over the per-client cap are closed at once"
    );
    // The team, from another address, still reads the fleet while the attacker holds its 8.
    let status = Command::new(target_bin("sovereign-agent"))
        .args(["status", "--json", "--collector"])
        .arg(format!("https://127.0.0.1:{port}"))
        .arg("--ca")
        .arg(dir.join("ca.pem"))
        .arg("--cert")
        .arg(dir.join("team.pem"))
        .arg("--key")
        .arg(dir.join("team.key"))
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    // The 8 admitted ones never finish a handshake: dropped within the timeout.
    let timed_out = idle
        .iter()
        .filter(|s| closed_by_peer(s, Duration::from_secs(10)))
        .count();
    assert_eq!(timed_out, 40, "every idle handshake is dropped");
    let text = wait_for_metric(&metrics, "sovereign_collector_connections_open", 0.0);
    assert_eq!(
        metric(
            &text,
            "sovereign_collector_connections_refused_total{cap=\"per_client\"}"
        ),
        Some(32.0),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
