//! Test helper: appends flow events to a journal in a loop, as the agent's writer thread does
//! (one batch per append, fsync per batch), and prints `durable N` after each batch whose
//! events up to cookie N are synced. The crash-safety test kills it with SIGKILL at random
//! moments and checks that everything it reported as durable survived.
//!
//! Usage: sa-journal-writer DIR FIRST_COOKIE [SEGMENT_BYTES [COUNT [violations]]]
//!
//! With COUNT, it writes COUNT events in batches of 1024 and exits (to build large journals
//! for the replay and report figures in docs/performance.md); with `violations`, every event
//! carries a recorded violation verdict with its evidence, as under a strict policy.
use std::io::Write;

use sovereign_agent::{
    clock::WallClock,
    enrich::{processes::Identity, ProcessInfo},
    event::{Event, EventKind, FlowEvent},
    journal::{JournalOptions, JournalWriter},
    policy::{Decision, Evidence, Explanation, PolicyRef, Severity},
};
use sovereign_agent_common::{FlowRecord, RecordKind, AF_INET, IPPROTO_TCP};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = &args[1];
    let mut cookie: u64 = args[2].parse().expect("FIRST_COOKIE");
    let segment_max_bytes = args
        .get(3)
        .map_or(64 << 10, |s| s.parse().expect("SEGMENT_BYTES"));
    let count: Option<u64> = args.get(4).map(|s| s.parse().expect("COUNT"));
    let violations = args.get(5).is_some_and(|a| a == "violations");
    let first = cookie;
    let opts = JournalOptions {
        segment_max_bytes,
        retention_max_age: None,
        retention_max_bytes: None,
        ..JournalOptions::new(dir)
    };
    let (mut w, recovery) = JournalWriter::open(opts).unwrap_or_else(|e| {
        eprintln!("sa-journal-writer: {e}");
        std::process::exit(1)
    });
    let mut out = std::io::stdout().lock();
    if let Some(r) = recovery {
        let _ = writeln!(out, "recovered {} {} {}", r.segment, r.offset, r.bytes_cut);
    }
    let clock = WallClock::sample();
    let info = Identity::from(ProcessInfo {
        exe: Some("/usr/bin/crm-sync".into()),
        cmdline: Some("crm-sync --all-accounts --region eu-west-1".into()),
        ..Default::default()
    });
    let mut batch = Vec::new();
    let mut size = if count.is_some() { 1024 } else { 1 };
    loop {
        if let Some(n) = count {
            if cookie - first >= n {
                w.close().expect("close");
                return;
            }
            size = size.min((n - (cookie - first)) as usize);
        }
        batch.clear();
        for _ in 0..size {
            let mut rec = FlowRecord {
                kind: RecordKind::Connect as u32,
                family: AF_INET,
                protocol: IPPROTO_TCP,
                ts_ns: WallClock::monotonic_now_ns(),
                tgid: 4242,
                pid: 4242,
                cookie,
                dst_port: 443,
                ..FlowRecord::default()
            };
            rec.dst_addr[..4].copy_from_slice(&[203, 0, 113, (cookie % 251) as u8]);
            rec.comm[..8].copy_from_slice(b"crm-sync");
            let mut ev = FlowEvent::from_record(EventKind::Connect, &rec, &info, &clock);
            ev.names = vec![format!("tenant{}.crm4.dynamics.com", cookie % 17)];
            if violations {
                ev.verdict = Some(violation(&ev.names[0]));
            }
            batch.push(Event::Flow(Box::new(ev)));
            cookie += 1;
        }
        if let Err(e) = w.append(&batch) {
            eprintln!("sa-journal-writer: {e}");
            std::process::exit(1);
        }
        // Batch fsync: append returned, so everything up to cookie-1 is on disk.
        let _ = writeln!(out, "durable {}", cookie - 1);
        let _ = out.flush();
        if count.is_none() {
            size = size % 97 + 1;
        }
    }
}

/// A violation as a strict EU-only policy records it for a CRM endpoint outside its zones.
fn violation(name: &str) -> Explanation {
    Explanation {
        decision: Decision::Violation,
        severity: Some(Severity::High),
        rule: "crm-eu-only".into(),
        zones: vec!["eu-crm".into()],
        matched_zones: vec!["crm-global".into()],
        evidence: vec![Evidence {
            zone: "crm-global".into(),
            decisive: false,
            source: "domain",
            via: "dns",
            name: Some(name.to_string()),
            detail: "domain *.crm4.dynamics.com".into(),
        }],
        destination: vec!["country US [GeoIP country database GeoLite2-Country 1770245369]".into()],
        weak: Vec::new(),
        policy: PolicyRef {
            name: "crm-eu-only".into(),
            version: "2026-12-01".into(),
            hash: "sha256:6b1f".into(),
        },
    }
}
