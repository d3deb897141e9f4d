//! The `syslog` sink against a real `rsyslog` receiving RFC 5425 (syslog over TLS, mutual
//! certificates): alerts arrive as RFC 5424 messages rsyslog itself parses (JSON and CEF
//! bodies, the verdict in structured data); rsyslog is stopped for 30 s while violations go
//! on, and when it is back every alert arrives, once.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use serde_json::Value;
use sovereign_agent_tests::{
    closed_port, loopback_policy, require_root,
    rsyslog::{self, received},
    sigterm, start_agent_with, wait_for_event, Reaped, TestCgroup,
};

/// How long rsyslog is down.
const OUTAGE: Duration = Duration::from_secs(30);

fn wait_received(dir: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = received(dir);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "rsyslog received {} of {n} messages: {got:?}",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of `name="..."` in a structured-data element.
fn sd_param<'a>(sd: &'a str, name: &str) -> Option<&'a str> {
    let start = sd.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = start + sd[start..].find('"')?;
    Some(&sd[start..end])
}

#[test]
fn alerts_reach_rsyslog_over_tls_as_rfc5424_json_and_cef_once_each_through_a_30s_outage() {
    require_root();
    let dir = std::env::temp_dir().join(format!("sa-syslog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = rsyslog::configure(&dir);
    let d = dir.display();
    std::fs::write(
        dir.join("policy.toml"),
        loopback_policy(
            "no-loopback",
            "1",
            "deny = [\"loopback\"]\nseverity = \"high\"",
        ),
    )
    .unwrap();
    let sink = |name: &str, format: &str| {
        format!(
            "[[sink]]\nname = \"{name}\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{port}\"\n\
             format = \"{format}\"\nca = \"{d}/ca.pem\"\ncert = \"{d}/agent.pem\"\n\
             key = \"{d}/agent.key\"\n\n"
        )
    };
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            "agent_id = \"node-s\"\n\n[alerts]\nwindow_secs = 0\n\n{}{}",
            sink("siem", "json"),
            sink("arcsight", "cef")
        ),
    )
    .unwrap();

    let mut rsyslog = Reaped(rsyslog::start(&dir));
    let cgroup = TestCgroup::new("syslog-sink");
    let output = dir.join("run.jsonl");
    let (agent, _logs) = start_agent_with(
        &cgroup,
        &output,
        &[
            "--policy",
            dir.join("policy.toml").to_str().unwrap(),
            "--config",
            dir.join("agent.toml").to_str().unwrap(),
            "--journal",
            dir.join("journal").to_str().unwrap(),
        ],
    );
    let _agent = Reaped(agent);
    let violation = || {
        let port = closed_port("127.0.0.1:0");
        cgroup.traffic(&["refused", &port.to_string()]).0
    };
    let mut pids: Vec<u32> = (0..3).map(|_| violation()).collect();
    wait_received(&dir, 6);

    // rsyslog goes away for 30 s; violations go on.
    let outage = Instant::now();
    sigterm(&rsyslog.0);
    rsyslog.0.wait().unwrap();
    pids.extend((0..3).map(|_| violation()));
    wait_for_event(&output, |e| {
        e["kind"] == "alert" && e["flow"]["pid"] == pids[5]
    });
    std::thread::sleep(OUTAGE.saturating_sub(outage.elapsed()));
    assert_eq!(
        received(&dir).len(),
        6,
        "nothing arrived while rsyslog was down"
    );
    rsyslog = Reaped(rsyslog::start(&dir));
    wait_received(&dir, 12);
    // Nothing more comes (no alert twice).
    std::thread::sleep(Duration::from_secs(3));
    let messages = received(&dir);
    assert_eq!(messages.len(), 12, "{messages:?}");

    let journal_id = std::fs::read_to_string(dir.join("journal/journal.id")).unwrap();
    let journal_id = journal_id.trim();
    for (format, prefix) in [("json", "{"), ("cef", "CEF:0|")] {
        let of_format: Vec<&Value> = messages
            .iter()
            .filter(|m| m["msg"].as_str().unwrap().starts_with(prefix))
            .collect();
        assert_eq!(of_format.len(), 6, "{format}: {messages:?}");
        let mut seqs = Vec::new();
        let mut got_pids = Vec::new();
        for m in &of_format {
            // Parsed by rsyslog as RFC 5424 (protocol version 1, not the BSD format).
            assert_eq!(m["protocol-version"], "1", "{m}");
            assert_eq!(m["hostname"], "node-s", "{m}");
            assert_eq!(m["app-name"], "sovereign-agent", "{m}");
            assert_eq!(m["msgid"], "alert", "{m}");
            assert_eq!(m["syslogfacility"], "13", "log audit: {m}");
            assert_eq!(m["syslogseverity"], "3", "a high alert is err: {m}");
            let sd = m["structured-data"].as_str().unwrap();
            assert!(sd.starts_with("[sovereign@32473 "), "{sd}");
            assert_eq!(sd_param(sd, "kind"), Some("alert"), "{sd}");
            assert_eq!(sd_param(sd, "rule"), Some("generator"), "{sd}");
            assert_eq!(sd_param(sd, "decision"), Some("violation"), "{sd}");
            assert_eq!(sd_param(sd, "severity"), Some("high"), "{sd}");
            assert_eq!(sd_param(sd, "dst"), Some("127.0.0.1"), "{sd}");
            let id = sd_param(sd, "id").unwrap();
            let (origin, seq) = id.rsplit_once(':').unwrap();
            assert_eq!(origin, format!("node-s:{journal_id}"), "{sd}");
            seqs.push(seq.parse::<u64>().unwrap());
            let msg = m["msg"].as_str().unwrap();
            let pid: u32 = if format == "json" {
                let body: Value = serde_json::from_str(msg).unwrap();
                assert_eq!(body["id"], id);
                body["flow"]["pid"].as_u64().unwrap() as u32
            } else {
                assert!(msg.starts_with("CEF:0|sovereign|sovereign-agent|"), "{msg}");
                assert!(msg.contains(&format!("externalId={id}")), "{msg}");
                let spid = msg.split(" spid=").nth(1).unwrap();
                spid.split(' ').next().unwrap().parse().unwrap()
            };
            assert_eq!(m["procid"], pid.to_string(), "{m}");
            got_pids.push(pid);
        }
        assert_eq!(got_pids, pids, "{format}: every alert once, in order");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    }
    drop(rsyslog);
    let _ = std::fs::remove_dir_all(&dir);
}
