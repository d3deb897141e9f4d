//! The report of a journal written here with known flows: every figure checked against what
//! was written (no root needed; the integration test does the same with the real agent).
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use super::*;
use crate::{
    clock::rfc3339_from_unix_ns,
    event::{Event, EventKind, FlowEvent, Lifecycle, LifecycleEvent, LossEvent, Proto},
    journal::{reader, tests::sample_flow, JournalWriter},
    policy::{Decision, Evidence, Explanation, PolicyRef, Severity},
};

const T0: i64 = 1_795_824_000_000_000_000; // 2026-11-28T00:00:00Z
const SEC: i64 = 1_000_000_000;

fn at(s: i64) -> i64 {
    T0 + s * SEC
}

fn lifecycle(ts: i64, body: Lifecycle) -> Event {
    Event::Lifecycle(Box::new(LifecycleEvent {
        ts: rfc3339_from_unix_ns(i128::from(ts)),
        ts_unix_ns: ts,
        body,
    }))
}

fn start(ts: i64) -> Event {
    lifecycle(
        ts,
        Lifecycle::AgentStart {
            version: "0.1.0".into(),
            binary_hash: "sha256:aa".into(),
            config_hash: "sha256:bb".into(),
            config_path: None,
            hostname: "crm-1".into(),
            cgroup: "/".into(),
            hooks: vec!["connect4".into()],
            hooks_failed: vec!["tls_hello".into()],
            pid: 1,
            not_reported: vec!["tls_hello: TLS server names".into()],
        },
    )
}

fn stop(ts: i64) -> Event {
    lifecycle(
        ts,
        Lifecycle::AgentStop {
            reason: "SIGTERM".into(),
            flows: 0,
            kernel_losses: 0,
            not_journaled: 0,
        },
    )
}

struct F {
    ts: i64,
    kind: EventKind,
    unit: &'static str,
    ip: &'static str,
    names: &'static [&'static str],
    bytes: Option<(u64, u64)>,
    violation: bool,
    aggregated: Option<u64>,
    proto: Proto,
}

fn flow(f: F) -> Event {
    let mut e: FlowEvent = sample_flow(0);
    e.ts = rfc3339_from_unix_ns(i128::from(f.ts));
    e.ts_unix_ns = f.ts;
    e.kind = f.kind;
    e.systemd_unit = Some(f.unit.into());
    e.container_id = None;
    e.dst_ip = f.ip.parse::<IpAddr>().unwrap();
    e.dst_port = 443;
    e.proto = f.proto;
    e.names = f.names.iter().map(|n| (*n).to_string()).collect();
    e.name_source = if f.names.is_empty() { "none" } else { "dns" };
    e.dns = Vec::new();
    e.sni = None;
    e.sni_unreadable = None;
    e.bytes_sent = f.bytes.map(|b| b.0);
    e.bytes_received = f.bytes.map(|b| b.1);
    e.aggregated = f.aggregated.map(|n| crate::event::Aggregated {
        flows: n,
        first: e.ts.clone(),
        first_unix_ns: f.ts,
    });
    e.verdict = Some(Explanation {
        decision: if f.violation {
            Decision::Violation
        } else {
            Decision::Allow
        },
        severity: f.violation.then_some(Severity::High),
        rule: "llm-hosts".into(),
        zones: vec![if f.violation { "external-ai" } else { "eu" }.into()],
        matched_zones: vec![if f.violation { "external-ai" } else { "eu" }.into()],
        evidence: vec![Evidence {
            zone: "external-ai".into(),
            decisive: true,
            source: "ai",
            via: "dns",
            name: Some("api.openai.com".into()),
            detail: "AI endpoint api.openai.com of openai".into(),
        }],
        destination: Vec::new(),
        weak: Vec::new(),
        policy: PolicyRef {
            name: "eu-only".into(),
            version: "3".into(),
            hash: "sha256:00ff".into(),
        },
    });
    Event::Flow(Box::new(e))
}

/// The alert the agent raises for a violating flow (`count` violations folded).
fn alert(flow: Event, count: u64) -> Event {
    let Event::Flow(f) = flow else { unreachable!() };
    Event::Alert(Box::new(crate::event::AlertEvent {
        ts: f.ts.clone(),
        ts_unix_ns: f.ts_unix_ns,
        kind: "alert",
        severity: Some(Severity::High),
        rule: "llm-hosts".into(),
        workload: f.workload(),
        destination: f.destination(),
        count,
        first: f.ts.clone(),
        last: f.ts.clone(),
        first_unix_ns: f.ts_unix_ns,
        last_unix_ns: f.ts_unix_ns,
        flow: f,
    }))
}

fn tcp(ts: i64, kind: EventKind, unit: &'static str, ip: &'static str) -> F {
    F {
        ts,
        kind,
        unit,
        ip,
        names: &[],
        bytes: None,
        violation: false,
        aggregated: None,
        proto: Proto::Tcp,
    }
}

/// The journal every test reads: two runs of the agent (one stopped cleanly, one killed)
/// and a third still running, with flows to Sweden, the US (an AI API, a violation), an AWS
/// region, and a private address.
fn journal(dir: &Path) {
    let (mut w, _) = JournalWriter::open(crate::journal::tests::options(dir)).unwrap();
    let crm = "crm-sync.service";
    let llm = "llm.service";
    let events = vec![
        start(at(0)),
        lifecycle(
            at(0),
            Lifecycle::Policy {
                name: "eu-only".into(),
                version: "3".into(),
                hash: "sha256:00ff".into(),
                path: "/etc/sovereign-agent/policy.toml".into(),
                datasets: Vec::new(),
                catalogue_version: Some("2026.11.28".into()),
            },
        ),
        flow(F {
            names: &["crm.example.se"],
            ..tcp(at(10), EventKind::Connect, crm, "89.160.20.112")
        }),
        flow(F {
            names: &["crm.example.se"],
            bytes: Some((1000, 2000)),
            ..tcp(at(11), EventKind::Close, crm, "89.160.20.112")
        }),
        flow(tcp(at(20), EventKind::Connect, crm, "89.160.20.112")),
        flow(F {
            bytes: Some((500, 10)),
            ..tcp(at(21), EventKind::Close, crm, "89.160.20.112")
        }),
        flow(F {
            names: &["api.openai.com"],
            violation: true,
            ..tcp(at(30), EventKind::Connect, llm, "216.160.83.56")
        }),
        alert(
            flow(F {
                names: &["api.openai.com"],
                violation: true,
                ..tcp(at(30), EventKind::Connect, llm, "216.160.83.56")
            }),
            1,
        ),
        flow(F {
            names: &["api.openai.com"],
            violation: true,
            bytes: Some((300, 4000)),
            ..tcp(at(31), EventKind::Close, llm, "216.160.83.56")
        }),
        flow(F {
            aggregated: Some(5),
            proto: Proto::Udp,
            ..tcp(at(40), EventKind::Send, llm, "3.120.0.1")
        }),
        flow(tcp(at(50), EventKind::Connect, llm, "10.0.0.5")),
        Event::Loss(LossEvent {
            ts: rfc3339_from_unix_ns(i128::from(at(55))),
            ts_unix_ns: at(55),
            kind: EventKind::Loss,
            lost: 7,
        }),
        stop(at(60)),
        // Down from 60 to 100; then killed after its last record at 150.
        start(at(100)),
        flow(F {
            names: &["crm.example.se"],
            ..tcp(at(150), EventKind::Connect, crm, "89.160.20.112")
        }),
        start(at(200)),
        flow(F {
            names: &["new.example.se"],
            ..tcp(at(300), EventKind::Connect, crm, "89.160.20.120")
        }),
    ];
    w.append(&events).unwrap();
    w.close().unwrap();
}

fn datasets_dir(dir: &Path) -> PathBuf {
    let d = dir.join("datasets");
    std::fs::create_dir_all(&d).unwrap();
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata");
    for f in [
        "geoip/GeoLite2-Country-Test.mmdb",
        "geoip/GeoLite2-ASN-Test.mmdb",
        "cloud-ranges/aws-ip-ranges.json",
    ] {
        let src = testdata.join(f);
        let link = d.join(src.file_name().unwrap());
        if !link.exists() {
            std::os::unix::fs::symlink(&src, link).unwrap();
        }
    }
    d
}

fn report_of(dir: &Path, window: Window, adequate: &[&str]) -> Report {
    let datasets = datasets_dir(dir);
    let j = dir.join("journal");
    if !j.exists() {
        journal(&j);
    }
    build(
        &Options {
            dir: &j,
            window,
            datasets: Some(&datasets),
            public_key: None,
            adequate: adequate.iter().map(|s| (*s).to_string()).collect(),
        },
        |_| {},
    )
    .unwrap()
}

/// The report of a whole journal, without datasets.
fn whole_report(journal: &Path) -> Report {
    let opts = Options {
        dir: journal,
        window: Window::default(),
        datasets: None,
        public_key: None,
        adequate: Vec::new(),
    };
    build(&opts, |_| {}).unwrap()
}

#[test]
fn every_figure_matches_the_flows_written() {
    let tmp = tempfile::tempdir().unwrap();
    let r = report_of(tmp.path(), Window::default(), &[]);
    assert!(r.integrity.intact, "{:?}", r.integrity.verify);
    assert_eq!(r.totals.records, 17);
    assert_eq!(r.totals.alerts, 1);
    let a = &r.verdicts.alerts[0];
    assert_eq!(
        (a.rule.as_str(), a.workload.as_str(), a.destination.as_str()),
        ("llm-hosts", "llm.service", "api.openai.com:443")
    );
    assert_eq!((a.alerts, a.violations, a.agent.as_str()), (1, 1, "crm-1"));
    assert_eq!(r.totals.flow_events, 10);
    // Connects and sends: 2 + 1 + 1 to Sweden, 1 to the US, 5 aggregated to AWS, 1 private.
    assert_eq!(r.totals.flows, 11);
    assert_eq!((r.totals.bytes_out, r.totals.bytes_in), (1800, 6010));
    assert_eq!(r.totals.workloads, 2);
    assert_eq!(r.totals.destinations, 5);
    assert_eq!(r.totals.violations, 1);

    let se = r.by_country.iter().find(|c| c.country == "SE").unwrap();
    assert_eq!((se.flows, se.bytes_out, se.bytes_in), (4, 1500, 2010));
    assert!(se.eea && !se.adequate);
    assert_eq!((se.destinations, se.workloads), (2, 1));
    let us = r.by_country.iter().find(|c| c.country == "US").unwrap();
    assert_eq!((us.flows, us.bytes_out, us.eea), (1, 300, false));
    let private = r
        .by_country
        .iter()
        .find(|c| c.country == "private")
        .unwrap();
    assert_eq!(private.flows, 1);
    // 3.120.0.1 is in AWS's file but not in the test country database.
    let region = &r.by_cloud_region[0];
    assert_eq!(
        (region.cloud.provider, region.cloud.region.as_str()),
        ("aws", "eu-central-1")
    );
    assert_eq!(region.flows, 5);
    let outside: Vec<(&str, &str)> = r
        .outside
        .iter()
        .map(|o| (o.country.as_str(), o.address.as_str()))
        .collect();
    assert_eq!(outside, [("US", "216.160.83.56"), ("unknown", "3.120.0.1")]);

    let row = r
        .inventory
        .iter()
        .find(|i| i.address == "216.160.83.56")
        .unwrap();
    assert_eq!(row.workload, "llm.service");
    assert_eq!(row.destination, "api.openai.com:443");
    assert_eq!(row.location.asn, Some(209));
    assert_eq!((row.flows, row.violations), (1, 1));
    assert_eq!(row.zones, ["external-ai"]);
    let se_row = r
        .inventory
        .iter()
        .find(|i| i.address == "89.160.20.112")
        .unwrap();
    assert_eq!(se_row.zones, ["eu"]);
    assert!(row.ai.as_deref().unwrap().starts_with("OpenAI"));
    assert_eq!(r.ai_apis.len(), 1);
    let ai = &r.ai_apis[0];
    assert_eq!(
        (
            ai.provider.as_str(),
            ai.workload.as_str(),
            ai.flows,
            ai.bytes_out
        ),
        ("openai", "llm.service", 1, 300)
    );

    assert_eq!(r.verdicts.groups.len(), 1);
    let g = &r.verdicts.groups[0];
    assert_eq!(
        (g.rule.as_str(), g.severity.as_str(), g.flows),
        ("llm-hosts", "high", 1)
    );
    assert_eq!(g.zones, ["external-ai"]);
    assert!(
        g.evidence[0].contains("AI endpoint api.openai.com"),
        "{g:?}"
    );
    assert_eq!(r.verdicts.over_time.len(), 1);
    assert_eq!(r.verdicts.over_time[0].count, 1);

    assert_eq!(r.integrity.kernel_losses, 7);
    assert_eq!(r.integrity.hooks_not_attached.len(), 1);
    assert_eq!(
        r.integrity.hooks_not_attached[0].not_reported,
        "tls_hello: TLS server names"
    );
    let c = &r.integrity.coverage[0];
    assert_eq!(c.hostname, "crm-1");
    assert_eq!((c.starts, c.unclean_stops), (3, 1));
    let ends: Vec<&str> = c.sessions.iter().map(|s| s.end.as_str()).collect();
    assert_eq!(
        ends,
        [
            "stop: SIGTERM",
            "no stop recorded (killed, crashed or power lost)",
            "running at the end of the journal"
        ]
    );
    let gaps: Vec<f64> = c.gaps.iter().map(|g| g.seconds).collect();
    assert_eq!(gaps, [40.0, 50.0]);
    assert_eq!(c.period_seconds, 300.0);
    assert_eq!(c.watched_seconds, 210.0);
    assert_eq!(r.scope.policies.len(), 1);
    assert_eq!(r.scope.policies[0].hash, "sha256:00ff");
    assert!(r.missing.is_empty(), "{:?}", r.missing);
}

#[test]
fn a_period_counts_only_its_own_flows_and_names_new_destinations() {
    let tmp = tempfile::tempdir().unwrap();
    let window = Window {
        since: Some(at(100)),
        until: Some(at(400)),
    };
    let r = report_of(tmp.path(), window, &["US"]);
    assert_eq!(r.totals.flows, 2);
    assert_eq!(r.totals.violations, 0);
    // The policy in force came from before the period; it is still listed.
    assert_eq!(r.scope.policies.len(), 1);
    let new: Vec<&str> = r
        .verdicts
        .new_destinations
        .iter()
        .map(|d| d.destination.as_str())
        .collect();
    assert_eq!(new, ["new.example.se:443"]);
    assert!(r.verdicts.history_before_period);
    // Stated up to the journal's last record (300 s), not to --until.
    let c = &r.integrity.coverage[0];
    assert_eq!(c.period_seconds, 200.0);
    assert_eq!(c.gaps.iter().map(|g| g.seconds).collect::<Vec<_>>(), [50.0]);
    assert_eq!(c.starts, 2);

    // With the US treated as adequate, only the unlocated AWS address stays "outside".
    let all = report_of(tmp.path(), Window::default(), &["US"]);
    let us = all.by_country.iter().find(|c| c.country == "US").unwrap();
    assert!(us.adequate);
    assert_eq!(all.outside.len(), 1);
    assert_eq!(all.outside[0].country, "unknown");
}

#[test]
fn an_empty_period_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let r = report_of(
        tmp.path(),
        Window {
            since: Some(at(10_000)),
            until: None,
        },
        &[],
    );
    assert_eq!(r.totals.flows, 0);
    assert!(
        r.missing
            .iter()
            .any(|m| m.contains("no records in this period")),
        "{:?}",
        r.missing
    );
    html::render(&r).unwrap();
}

#[test]
fn a_tampered_journal_is_reported_as_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let j = tmp.path().join("journal");
    journal(&j);
    let segment = reader::segments(&j).unwrap()[0].1.clone();
    let mut bytes = std::fs::read(&segment).unwrap();
    // A byte inside the first flow's destination name ("crm.example.se" becomes "crm.example.sf").
    let at = bytes
        .windows(14)
        .position(|w| w == b"crm.example.se")
        .unwrap();
    bytes[at + 13] = b'f';
    std::fs::write(&segment, bytes).unwrap();
    let r = report_of(tmp.path(), Window::default(), &[]);
    assert!(!r.integrity.intact);
    assert!(r.integrity.verify.problem.is_some());
    let page = html::render(&r).unwrap();
    let banner = page.find("THE JOURNAL IS DAMAGED").expect("a banner");
    assert!(
        banner < page.find("id=\"scope\"").unwrap(),
        "on the first page"
    );
}

#[test]
fn the_html_is_self_contained_and_the_csv_has_every_row() {
    let tmp = tempfile::tempdir().unwrap();
    let r = report_of(tmp.path(), Window::default(), &[]);
    let page = html::render(&r).unwrap();
    for section in [
        "id=\"scope\"",
        "id=\"integrity\"",
        "id=\"inventory\"",
        "id=\"where\"",
        "id=\"ai\"",
        "id=\"verdicts\"",
        "id=\"limitations\"",
    ] {
        assert!(page.contains(section), "{section} missing");
    }
    // Nothing is loaded from anywhere (the SVG namespace is a name, not a request).
    for attr in [" src=", "href=\"http", "url(", "@import"] {
        assert!(!page.contains(attr), "{attr} in the page");
    }
    assert!(page.contains("Content-Security-Policy"));
    assert!(page.contains("<svg"));
    assert!(page.contains("api.openai.com:443"));

    let mut out = Vec::new();
    csv::write(&r, &mut out).unwrap();
    let mut reader = ::csv::Reader::from_reader(out.as_slice());
    let rows: Vec<::csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), r.inventory.len());
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let us = rows
        .iter()
        .find(|row| &row[col("address")] == "216.160.83.56")
        .unwrap();
    assert_eq!(&us[col("country")], "US");
    assert_eq!(&us[col("violations")], "1");
    assert_eq!(&us[col("bytes_out")], "300");
}

#[test]
fn a_collector_journal_gets_an_agent_column() {
    use prost::Message;
    let tmp = tempfile::tempdir().unwrap();
    let j = tmp.path().join("collector-journal");
    let (mut w, _) = JournalWriter::open(crate::journal::tests::options(&j)).unwrap();
    let mut batch = crate::journal::EncodedBatch::default();
    // Alerts from two agents, as the collector stores them: each record names its agent.
    for (i, (agent, count)) in [("node-a", 3), ("node-b", 5), ("node-a", 2)]
        .into_iter()
        .enumerate()
    {
        let event = alert(
            flow(F {
                names: &["api.openai.com"],
                violation: true,
                ..tcp(
                    at(i as i64),
                    EventKind::Connect,
                    "llm.service",
                    "216.160.83.56",
                )
            }),
            count,
        );
        let mut msg = crate::journal::convert::to_proto(&event, 0);
        msg.agent_id = agent.to_string();
        msg.agent_seq = i as u64;
        batch.push_encoded(&msg.encode_to_vec(), event.ts_unix_ns());
    }
    w.append_encoded(&batch).unwrap();
    w.close().unwrap();
    let r = whole_report(&j);
    // No policy record (a collector's journal): the alerts' verdicts name it, per agent.
    let policies: Vec<(&str, &str)> = r
        .scope
        .policies
        .iter()
        .map(|p| (p.agent.as_str(), p.hash.as_str()))
        .collect();
    assert_eq!(
        policies,
        [("node-a", "sha256:00ff"), ("node-b", "sha256:00ff")]
    );
    let rows: Vec<(&str, u64, u64)> = r
        .verdicts
        .alerts
        .iter()
        .map(|a| (a.agent.as_str(), a.alerts, a.violations))
        .collect();
    assert_eq!(rows, [("node-a", 2, 5), ("node-b", 1, 5)]);
    let agents: Vec<&str> = r.scope.agents.iter().map(|a| a.agent.as_str()).collect();
    assert_eq!(agents, ["node-a", "node-b"]);
    assert!(
        r.missing
            .iter()
            .any(|m| m.starts_with("node-a: no start or stop record"))
            && r.missing
                .iter()
                .any(|m| m.starts_with("the journal holds no policy record")),
        "{:?}",
        r.missing
    );
    assert!(html::render(&r)
        .unwrap()
        .contains("<th>Agent</th><th>Rule</th>"));
}

#[test]
fn a_container_workload_is_named_with_its_pod() {
    let tmp = tempfile::tempdir().unwrap();
    let j = tmp.path().join("journal");
    let (mut w, _) = JournalWriter::open(crate::journal::tests::options(&j)).unwrap();
    let Event::Flow(mut f) = flow(tcp(at(1), EventKind::Connect, "x", "89.160.20.112")) else {
        unreachable!()
    };
    f.systemd_unit = None;
    f.container_id = Some("3f4e5d6c7b8a9f0e1d2c3b4a".into());
    f.container_runtime = Some("containerd");
    f.pod_uid = Some("0b8d2c3e-1111-2222-3333-444455556666".into());
    w.append(&[Event::Flow(f)]).unwrap();
    w.close().unwrap();
    let r = whole_report(&j);
    let row = &r.inventory[0];
    assert_eq!(row.workload, "containerd 3f4e5d6c7b8a");
    assert_eq!(
        row.pod_uid.as_deref(),
        Some("0b8d2c3e-1111-2222-3333-444455556666")
    );
    assert!(html::render(&r).unwrap().contains("pod 0b8d2c3e"));
}

#[test]
fn without_policy_records_the_verdicts_name_their_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let j = tmp.path().join("journal");
    let (mut w, _) = JournalWriter::open(crate::journal::tests::options(&j)).unwrap();
    // Retention took the start and policy records: only flows judged under eu-only v3.
    w.append(&[
        flow(tcp(
            at(5),
            EventKind::Connect,
            "crm.service",
            "89.160.20.112",
        )),
        flow(tcp(
            at(6),
            EventKind::Connect,
            "crm.service",
            "89.160.20.113",
        )),
    ])
    .unwrap();
    w.close().unwrap();
    let r = whole_report(&j);
    let p: Vec<(&str, &str, &str, &str)> = r
        .scope
        .policies
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.version.as_str(),
                p.hash.as_str(),
                p.in_force_from.as_str(),
            )
        })
        .collect();
    assert_eq!(p, [("eu-only", "3", "sha256:00ff", "2026-11-28T00:00:05Z")]);
    assert!(
        r.missing
            .iter()
            .any(|m| m.starts_with("the journal holds no policy record")),
        "{:?}",
        r.missing
    );
    assert!(!r
        .missing
        .iter()
        .any(|m| m.starts_with("no policy was in force")));
}
