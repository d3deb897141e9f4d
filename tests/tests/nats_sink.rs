//! The `nats` sink against a real 3-node `nats-server` JetStream cluster on loopback: 10,000
//! alerts and over 100,000 flow events are published while one node is killed and restarted
//! and the agent is restarted once. Read back with nats-py (not our code), the stream holds
//! each of the journal's events exactly once, in the agent's order.
use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use sovereign_agent_tests::{
    collector_certs, free_port, metric,
    nats::{jetstream, start_stream_collector, Cluster},
    require_root, settled, sigterm, start_agent_with, status_of, tail_events, target_bin, Reaped,
    TestCgroup,
};

const STREAM: &str = "SOVEREIGN";
const ALERTS: usize = 10_000;
/// Allowed connections; each makes three flow events (connect, established, close), as does
/// each violating one.
const ALLOWED: usize = 28_000;

/// Connections to 127.0.0.1 are violations; to 127.0.0.2 (also loopback) allowed.
fn write_policy(dir: &Path) {
    std::fs::write(
        dir.join("policy.toml"),
        "[policy]\nname = \"residency\"\nversion = \"1\"\ndefault = \"allow\"\n\n\
         [zones.forbidden]\ncidrs = [\"127.0.0.1/32\"]\n\n\
         [[rule]]\nname = \"generator\"\nworkload = { comm = [\"sa-traffic\"] }\n\
         deny = [\"forbidden\"]\notherwise = \"allow\"\nseverity = \"high\"\n",
    )
    .unwrap();
}

/// The agent of `dir` (its API on `dir/agent.sock`).
fn start_agent(cgroup: &TestCgroup, dir: &Path, output: &str, metrics: &str) -> Reaped {
    let (child, logs) = start_agent_with(
        cgroup,
        &dir.join(output),
        &[
            "--policy",
            dir.join("policy.toml").to_str().unwrap(),
            "--config",
            dir.join("agent.toml").to_str().unwrap(),
            "--journal",
            dir.join("journal").to_str().unwrap(),
            "--metrics-listen",
            metrics,
            "--api-socket",
            dir.join("agent.sock").to_str().unwrap(),
        ],
    );
    // The sink's interruptions, shown with a failure: which way a delivery broke.
    std::thread::spawn(move || {
        for line in logs.iter().filter(|l| l.contains("sink")) {
            println!("agent: {line}");
        }
    });
    Reaped(child)
}

/// `n` connections from one sa-traffic process to a listener of its own on `addr`, paced
/// so that the ring buffer keeps up on a 2-core machine (what is lost there is not the
/// sink's to deliver, and this test is about the sink). At 6,000/s a CI run lost 175
/// records while the other test's cluster and the faster sink shared the CPUs.
///
/// The tests also run one at a time ([`SERIAL`]): two of them run three nats-servers each.
fn connections(cgroup: &TestCgroup, addr: &str, n: usize) {
    let out = Command::new(target_bin("sa-traffic"))
        .env("SA_TRAFFIC_RATE", "3000")
        .arg(cgroup.path().join("cgroup.procs"))
        .args(["connect-loop", addr, &n.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sink's delivered count on the agent's /metrics (0 when unreachable).
fn delivered(metrics: &str) -> f64 {
    let text = sovereign_agent_tests::http_get(metrics, "/metrics").1;
    metric(
        &text,
        "sovereign_agent_sink_delivered_total{sink=\"fleet\",type=\"nats\"}",
    )
    .unwrap_or(0.0)
}

/// The journal's events of the kinds the sink takes: (seq, kind).
fn journaled(dir: &Path) -> Vec<(u64, String)> {
    let export = Command::new(target_bin("sovereign-agent"))
        .args(["journal", "export"])
        .arg(dir.join("journal"))
        .output()
        .unwrap();
    assert!(export.status.success());
    String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| {
            ["alert", "connect", "established", "close"].contains(&e["kind"].as_str().unwrap())
        })
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Records the kernel's ring buffer lost, as the journal's `loss` events say.
fn kernel_losses(dir: &Path) -> u64 {
    let export = Command::new(target_bin("sovereign-agent"))
        .args(["journal", "export"])
        .arg(dir.join("journal"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&export.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "loss")
        .filter_map(|e| e["lost"].as_u64())
        .sum()
}

/// Held by each test for its whole run.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The test's own run: [`SERIAL`] held, and an empty directory `name`.
fn serial_run(name: &str) -> (std::sync::MutexGuard<'static, ()>, std::path::PathBuf) {
    let serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    (serial, dir)
}

#[test]
fn a_jetstream_cluster_holds_every_event_once_in_order_through_a_node_kill_and_an_agent_restart() {
    require_root();
    let (_serial, dir) = serial_run("sa-nats");
    let mut cluster = Cluster::start(&dir, 3);
    let servers = cluster.servers();
    jetstream(&["create", &servers, STREAM, "sovereign.>", "3"]);

    write_policy(&dir);
    let server_list: Vec<String> = servers.split(',').map(|s| format!("{s:?}")).collect();
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            "agent_id = \"node-a\"\n\n[alerts]\nwindow_secs = 0\n\n\
             [budget]\nprocess_records_per_sec = 0\ncgroup_records_per_sec = 0\n\n\
             [[sink]]\nname = \"fleet\"\ntype = \"nats\"\nservers = [{}]\nbatch = 1000\n\
             [sink.filter]\nkinds = [\"alert\", \"connect\", \"established\", \"close\"]\n",
            server_list.join(", ")
        ),
    )
    .unwrap();

    let cgroup = TestCgroup::new("nats-sink");
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut agent = start_agent(&cgroup, &dir, "run1.jsonl", &metrics);
    let traffic = |share: usize| {
        connections(&cgroup, "127.0.0.1:0", ALERTS / 4 * share);
        connections(&cgroup, "127.0.0.2:0", ALLOWED / 4 * share);
    };
    traffic(1);
    // Every node in turn dies while events flow, and comes back (so whichever node the
    // agent is connected to, and the stream's leader, die once).
    let wait_delivering = |floor: f64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while delivered(&metrics) < floor {
            assert!(Instant::now() < deadline, "the sink delivers nothing");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_delivering(1000.0);
    cluster.kill_node(0);
    traffic(1);
    cluster.start_node(0);
    std::thread::sleep(Duration::from_secs(2));
    cluster.kill_node(1);
    // The agent is restarted once, its sink mid-way through a backlog.
    traffic(1);
    cluster.start_node(1);
    std::thread::sleep(Duration::from_secs(2));
    cluster.kill_node(2);
    sigterm(&agent.0);
    assert!(agent.0.wait().unwrap().success());
    drop(agent);
    agent = start_agent(&cgroup, &dir, "run2.jsonl", &metrics);
    traffic(1);
    cluster.start_node(2);

    // What the stream must hold: each journaled event of those kinds, once, in order (read
    // once the agent has journaled all the traffic: two exports a second apart agree).
    let expected = settled(|| journaled(&dir));
    let alerts = expected.iter().filter(|(_, k)| k == "alert").count();
    assert_eq!(
        alerts,
        ALERTS,
        "one alert per violating connection (records the capture lost, not the sink's: {})",
        kernel_losses(&dir)
    );
    assert!(
        expected.len() - alerts >= 100_000,
        "{} flow events",
        expected.len() - alerts
    );

    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let n: usize = jetstream(&["count", &servers, STREAM])
            .trim()
            .parse()
            .unwrap();
        if n >= expected.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream holds {n} of {} events after 180 s",
            expected.len()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let journal_id = std::fs::read_to_string(dir.join("journal/journal.id")).unwrap();
    let journal_id = journal_id.trim();
    let stored: Vec<Value> = jetstream(&["dump", &servers, STREAM])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(u64, String)> = stored
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                m["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    if got != expected {
        let first = got.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "the stream ({} messages) is not the journal's {} events once each, in order; \
             first difference at {first:?}: {:?} vs {:?}",
            got.len(),
            expected.len(),
            first.map(|i| &got[i]),
            first.map(|i| &expected[i])
        );
    }
    for m in &stored {
        let (seq, kind) = (m["seq"].as_u64().unwrap(), m["kind"].as_str().unwrap());
        assert_eq!(m["msg_id"], format!("node-a:{journal_id}:{seq}"));
        assert_eq!(m["subject"], format!("sovereign.node-a.{kind}"));
        assert_eq!(m["journal"], journal_id);
        assert_eq!(m["body_seq"], seq);
    }
    drop(agent);
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two collectors share the fleet's stream, each reading all of it from its own cursor: each
/// stores every alert once, one of them across its own restart in the middle of a batch. The agent is named by the
/// subject it published under (which NATS permissions bind to its credentials), not by a
/// header: a message published under `node-b`'s subject claiming to be `node-a` with a huge
/// sequence number is stored as `node-b`'s, and does not make `node-a`'s real alerts look
/// like re-sends (with the header trusted, all of them would be dropped). And a journal's
/// events out of order in the stream (a later one stored before an earlier one, as after a
/// stream leader's death) are all stored, a re-send of either is not (with "older than the
/// highest = a re-send", the late one was dropped).
#[test]
fn collectors_consume_the_stream_each_holding_every_alert_once_by_the_subjects_agent() {
    require_root();
    let (_serial, dir) = serial_run("sa-nats-collectors");
    collector_certs(&dir, "node-a");
    let cluster = Cluster::start(&dir, 3);
    let servers = cluster.servers();
    jetstream(&["create", &servers, STREAM, "sovereign.>", "3"]);
    write_policy(&dir);
    let server_list: Vec<String> = servers.split(',').map(|s| format!("{s:?}")).collect();
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            "agent_id = \"node-a\"\n\n[alerts]\nwindow_secs = 0\n\n\
             [[sink]]\nname = \"fleet\"\ntype = \"nats\"\nservers = [{}]\n\
             format = \"protobuf\"\n[sink.filter]\nkinds = [\"alert\"]\n",
            server_list.join(", ")
        ),
    )
    .unwrap();
    let one = start_stream_collector(&dir, "collector-1", &servers, STREAM);
    let mut two = start_stream_collector(&dir, "collector-2", &servers, STREAM);
    let cgroup = TestCgroup::new("nats-collectors");
    let metrics = format!("127.0.0.1:{}", free_port());
    let agent = start_agent(&cgroup, &dir, "run.jsonl", &metrics);
    let journal_id = std::fs::read_to_string(dir.join("journal/journal.id")).unwrap();
    let journal_id = journal_id.trim();

    // The forgery, before any real alert: a loss record (field 11: Loss { lost: 1 }) at seq
    // 1,000,000 (fields 1 and 4 of sovereign.agent.v1.Event, varints) in node-a's name and
    // journal, on node-b's subject.
    jetstream(&[
        "publish",
        &servers,
        STREAM,
        "sovereign.node-b.alert",
        "node-a",
        journal_id,
        "08c0843d20c0843d5a020801",
    ]);
    // A stream reordered by a leader's death: node-c's seq 10 stored before its seq 8 (late:
    // must be stored), then 8 again (a re-send: must not be). Loss records, fields as above.
    for payload in ["080a200a5a020801", "080820085a020801", "080820085a020801"] {
        jetstream(&[
            "publish",
            &servers,
            STREAM,
            "sovereign.node-c.alert",
            "node-c",
            "journal-c",
            payload,
        ]);
    }
    const HALF: usize = 200;
    connections(&cgroup, "127.0.0.1:0", HALF);
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered(&metrics) < 50.0 {
        assert!(Instant::now() < deadline, "the sink delivers nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    // collector-2 stops while alerts flow, once it has stored some, and resumes from its
    // cursor.
    let cursor = dir.join("collector-2/journal/jetstream.SOVEREIGN.cursor");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cursor.exists() {
        assert!(Instant::now() < deadline, "collector-2 stores nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    sigterm(&two.0);
    assert!(two.0.wait().unwrap().success());
    drop(two);
    connections(&cgroup, "127.0.0.1:0", HALF);
    two = start_stream_collector(&dir, "collector-2", &servers, STREAM);

    let mut expected: Vec<u64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while expected.len() < 2 * HALF {
        assert!(
            Instant::now() < deadline,
            "{} alerts journaled",
            expected.len()
        );
        std::thread::sleep(Duration::from_millis(200));
        expected = journaled(&dir)
            .into_iter()
            .filter(|(_, k)| k == "alert")
            .map(|(seq, _)| seq)
            .collect();
    }
    for name in ["collector-1", "collector-2"] {
        let socket = dir.join(name).join("collector.sock");
        let alerts = tail_events(&socket, "alert", 2 * HALF);
        let losses = tail_events(&socket, "loss", 3);
        assert_eq!(losses[0]["agent_id"], "node-b", "{name}: {losses:?}");
        assert_eq!(losses[0]["agent_seq"], 1_000_000);
        let late: Vec<(&Value, &Value)> = losses[1..]
            .iter()
            .map(|l| (&l["agent_id"], &l["agent_seq"]))
            .collect();
        assert_eq!(
            late,
            [
                (&Value::from("node-c"), &Value::from(10)),
                (&Value::from("node-c"), &Value::from(8))
            ],
            "{name}: the late event stored, its re-send not"
        );
        let real: Vec<u64> = alerts
            .iter()
            .filter(|a| a["agent_id"] == "node-a")
            .map(|a| a["agent_seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            real, expected,
            "{name}: node-a's alerts, each once, in order"
        );
        let status = status_of(&socket);
        // Nothing else stored: no duplicate past the events read (node-a's alerts, node-b's
        // forgery, node-c's two).
        assert_eq!(
            status["journal_next_seq"],
            2 * HALF as u64 + 3,
            "{name}: {status}"
        );
        let agents = status["agents"].as_array().unwrap();
        let a = agents
            .iter()
            .find(|a| a["agent_id"] == "node-a")
            .unwrap_or_else(|| panic!("{name}: {status}"));
        assert_eq!(a["journal_id"], journal_id);
        assert_eq!(a["last_seq"], *expected.last().unwrap());
        let b = agents.iter().find(|a| a["agent_id"] == "node-b").unwrap();
        assert_eq!(
            (&b["journal_id"], &b["last_seq"]),
            (&Value::from(journal_id), &Value::from(1_000_000))
        );
    }
    drop((agent, one, two, cluster));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stream forgotten (or its subjects mistyped) is the commonest way to set the sink up
/// wrong: JetStream then answers each publish with "no responders". The sink says so, in
/// `status`, and loses nothing: once the operator creates the stream, every alert arrives,
/// once.
#[test]
fn a_subject_no_stream_takes_is_reported_and_every_alert_arrives_once_the_stream_exists() {
    require_root();
    let (_serial, dir) = serial_run("sa-nats-nostream");
    let cluster = Cluster::start(&dir, 1);
    let servers = cluster.servers();
    write_policy(&dir);
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            "agent_id = \"node-a\"\n\n[alerts]\nwindow_secs = 0\n\n\
             [[sink]]\nname = \"fleet\"\ntype = \"nats\"\nservers = [{servers:?}]\n\
             [sink.filter]\nkinds = [\"alert\"]\n"
        ),
    )
    .unwrap();
    let cgroup = TestCgroup::new("nats-nostream");
    let socket = dir.join("agent.sock");
    let metrics = format!("127.0.0.1:{}", free_port());
    let agent = start_agent(&cgroup, &dir, "out.jsonl", &metrics);
    const N: usize = 50;
    connections(&cgroup, "127.0.0.1:0", N);

    let sink = || status_of(&socket)["sinks"][0].clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = sink();
        let error = s["last_error"].as_str().unwrap_or_default();
        if error.contains("no JetStream stream takes this subject") {
            assert_eq!(s["delivered"], 0, "{s}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no error naming the missing stream in 30 s: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    jetstream(&["create", &servers, STREAM, "sovereign.>", "1"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink()["delivered"].as_u64().unwrap_or(0) < N as u64 {
        assert!(
            Instant::now() < deadline,
            "{} of {N} alerts delivered 60 s after the stream was created",
            sink()["delivered"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stored: Vec<Value> = jetstream(&["dump", &servers, STREAM])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = stored.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = journaled(&dir)
        .into_iter()
        .filter(|(_, k)| k == "alert")
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(expected.len(), N);
    assert_eq!(seqs, expected, "each alert once, in the journal's order");
    drop(agent);
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
