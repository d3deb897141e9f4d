//! Journal speed: appending with fsync per batch, a subscriber's cost per record (naming its
//! kind, decoding it), verifying, exporting-style decoding and replaying under a policy with
//! the real provider datasets (about 105,000 prefixes).
//!
//!     cargo bench -p sovereign-agent --bench journal
//!
//! The journal lives in the system temp directory (on disk here, not tmpfs), so fsync is
//! real. Figures are recorded in docs/performance.md.
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

#[path = "support/testdata.rs"]
mod testdata;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;
use sovereign_agent::{
    cli::{journal::FilterArgs, replay},
    clock::WallClock,
    enrich::{processes::Identity, ProcessInfo},
    event::{Event, EventKind, FlowEvent},
    journal::feed::peek::peek,
    journal::{ceiling::FlowCeiling, reader, verify, FsyncPolicy, JournalOptions, JournalWriter},
    policy::{DnsChain, Policy},
};
use sovereign_agent_common::{FlowRecord, RecordKind, AF_INET, IPPROTO_TCP};
use sovereign_agent_proto::agent::v1 as pb;

const BATCH: usize = 1024;
const REPLAY_RECORDS: u64 = 1_000_000;

/// The CRM host's policy: external AI APIs allowed, or denied (a rule that does not name a
/// destination lets it fall through to the default, `allow`, so denying takes a `deny`).
fn policy_path(name: &str, deny_ai: bool) -> PathBuf {
    let verdicts = if deny_ai {
        "allow = [\"company\", \"eu-cloud\"]\ndeny = [\"external-ai\"]"
    } else {
        "allow = [\"company\", \"eu-cloud\", \"external-ai\"]"
    };
    let rules = format!(
        "\n[[rule]]\nname = \"crm\"\nworkload = {{ comm = [\"crm-sync*\"] }}\n{verdicts}\n"
    );
    let path = std::env::temp_dir().join(format!("sovereign-bench-{name}.toml"));
    std::fs::write(&path, testdata::policy_text(name, &rules)).unwrap();
    path
}

/// Realistic events: a CRM-sync process talking to cloud, company and AI destinations, each
/// judged under `policy` so it carries a full verdict (~400-500 bytes per record).
fn events(policy: &Policy, n: usize) -> Vec<Event> {
    let clock = WallClock::sample();
    let info = Identity::from(ProcessInfo {
        exe: Some("/usr/local/bin/crm-sync".into()),
        cmdline: Some("crm-sync --tenant eu-west --batch 500".into()),
        ..Default::default()
    });
    let dests: [(IpAddr, &str); 4] = [
        (
            "3.5.140.2".parse().unwrap(),
            "s3.eu-central-1.amazonaws.com",
        ),
        ("10.20.1.5".parse().unwrap(), "db.corp.example"),
        ("162.159.140.245".parse().unwrap(), "api.openai.com"),
        ("20.50.2.1".parse().unwrap(), "tenant.crm4.dynamics.com"),
    ];
    (0..n)
        .map(|i| {
            let (ip, name) = dests[i % dests.len()];
            let mut rec = FlowRecord {
                kind: RecordKind::Connect as u32,
                family: AF_INET,
                protocol: IPPROTO_TCP,
                ts_ns: 1_000_000_000 + i as u64 * 1000,
                tgid: 4242,
                pid: 4243,
                cookie: i as u64,
                dst_port: 443,
                ..FlowRecord::default()
            };
            if let IpAddr::V4(v4) = ip {
                rec.dst_addr[..4].copy_from_slice(&v4.octets());
            }
            rec.comm[..8].copy_from_slice(b"crm-sync");
            let mut ev = FlowEvent::from_record(EventKind::Connect, &rec, &info, &clock);
            // A verified answer from the host's resolver, as the naming stage would record it:
            // the policy judges names by their evidence, not by the `names` list alone.
            ev.dns = vec![DnsChain {
                names: vec![name.to_string()],
                resolver: "127.0.0.53:53".into(),
                verified: true,
            }];
            ev.names = vec![name.to_string()];
            ev.name_source = "dns";
            ev.judge(policy);
            Event::Flow(Box::new(ev))
        })
        .collect()
}

fn fresh_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sovereign-bench-journal-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn options(dir: &Path, fsync: FsyncPolicy) -> JournalOptions {
    JournalOptions {
        fsync,
        retention_max_age: None,
        retention_max_bytes: None,
        ..JournalOptions::new(dir)
    }
}

fn bench(c: &mut Criterion) {
    let old = Policy::load(
        &policy_path("old", false),
        Some(&testdata::testdata().join("cloud-ranges")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let batch = events(&old, BATCH);
    let mut size = 0;
    for e in &batch {
        let mut b = Vec::new();
        sovereign_agent::journal::convert::encode(e, &mut b);
        size += b.len() + 16;
    }
    eprintln!("average record: {} bytes", size / BATCH);

    let mut g = c.benchmark_group("journal_append");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (label, fsync) in [
        ("fsync_every_batch", FsyncPolicy::Batch),
        ("no_fsync", FsyncPolicy::Never),
    ] {
        let dir = fresh_dir(label);
        let (mut w, _) = JournalWriter::open(options(&dir, fsync)).unwrap();
        g.bench_function(label, |b| b.iter(|| w.append(&batch).unwrap()));
        w.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();

    // What a subscriber pays per record it reads: the walk that names the kind (all that a
    // record of a kind it did not ask for costs now), against the full decode (what each
    // record cost before).
    let payloads: Vec<Vec<u8>> = batch
        .iter()
        .map(|e| {
            let mut b = Vec::new();
            sovereign_agent::journal::convert::encode(e, &mut b);
            b
        })
        .collect();
    let mut g = c.benchmark_group("subscriber_record");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("peek_kind", |b| {
        b.iter(|| {
            for p in &payloads {
                let peeked = peek(p).expect("well-formed");
                std::hint::black_box(peeked);
            }
        });
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            for p in &payloads {
                let e = pb::Event::decode(&p[..]).expect("decodes");
                std::hint::black_box(e);
            }
        });
    });
    g.finish();

    // A journal of a million records for verify and replay.
    let dir = fresh_dir("replay");
    let started = Instant::now();
    {
        let (mut w, _) = JournalWriter::open(options(&dir, FsyncPolicy::Batch)).unwrap();
        for _ in 0..REPLAY_RECORDS / BATCH as u64 {
            w.append(&batch).unwrap();
        }
        w.close().unwrap();
    }
    let records = (REPLAY_RECORDS / BATCH as u64) * BATCH as u64;
    eprintln!(
        "wrote {records} records in {:.2} s ({:.0} records/s, fsync every {BATCH})",
        started.elapsed().as_secs_f64(),
        records as f64 / started.elapsed().as_secs_f64()
    );

    let mut g = c.benchmark_group("journal_read");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(records));
    g.bench_function("verify", |b| {
        b.iter(|| {
            let r = verify::verify(&dir, None).unwrap();
            assert!(r.problem.is_none() && r.records == records);
        });
    });
    g.bench_function("decode_all", |b| {
        b.iter(|| {
            let mut n = 0u64;
            reader::for_each_event(
                &dir,
                |_| {},
                |_, _| {
                    n += 1;
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(n, records);
        });
    });
    let new_policy = policy_path("new", true);
    g.bench_function("replay_with_datasets", |b| {
        b.iter(|| {
            let r = replay::replay(&replay::ReplayArgs {
                dir: dir.clone(),
                policy: new_policy.clone(),
                datasets: Some(testdata::testdata().join("cloud-ranges")),
                filter: FilterArgs::default(),
                json: true,
                limit: 0,
            })
            .unwrap_or_else(|(_, e)| panic!("{e}"));
            // A quarter of the flows go to api.openai.com, which the new policy denies.
            assert_eq!(r.new_violations, records / 4);
        });
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The flow ceiling's cost per flow within it (shared out per workload: one keyed hash and a
/// token bucket a flow), for one workload and for 100 (docs/performance.md).
fn ceiling(c: &mut Criterion) {
    let policy = Policy::load(
        &policy_path("ceiling", false),
        Some(&testdata::testdata().join("cloud-ranges")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let flows: Vec<Box<FlowEvent>> = events(&policy, 100)
        .into_iter()
        .enumerate()
        .map(|(i, e)| match e {
            Event::Flow(mut f) => {
                f.systemd_unit = Some(format!("w{i}.service").into());
                f
            }
            _ => unreachable!("events() makes flows"),
        })
        .collect();
    let mut g = c.benchmark_group("ceiling_admit");
    for workloads in [1usize, 100] {
        let mut ceiling = FlowCeiling::new(u64::MAX / 4, u64::MAX / 4);
        let now = Instant::now();
        let mut i = 0;
        g.bench_function(format!("{workloads}_workloads"), |b| {
            b.iter_batched(
                || {
                    i += 1;
                    flows[i % workloads].clone()
                },
                |f| {
                    let admitted = ceiling.admit(f, now);
                    assert!(admitted.is_some(), "within the ceiling");
                    admitted
                },
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

criterion_group!(benches, bench, ceiling);
criterion_main!(benches);
