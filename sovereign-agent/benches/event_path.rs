//! The user-space cost of one flow event on the normal path, without the kernel and the
//! threads: the process and its lineage looked up, the event built, written as a JSON line
//! (the `output`) and encoded for the journal. A process four generations deep with a
//! realistic executable and command line, as the connect loop of `cargo xtask bench` has.
//!
//!     cargo bench -p sovereign-agent --bench event_path
use std::{
    hint::black_box,
    num::NonZeroUsize,
    time::{Duration, Instant},
};

#[path = "support/process_record.rs"]
mod process_record;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sovereign_agent::{
    clock::WallClock,
    enrich::ProcessTable,
    event::{Event, EventKind, FlowEvent},
    journal::convert,
};
use sovereign_agent_common::{FlowRecord, RecordKind, AF_INET, IPPROTO_TCP};

use process_record::record;

/// systemd → bash → bash → sync-runner → crm-sync-worker (the one that connects, tgid 104).
fn lineage(t: &mut ProcessTable, now: Instant) -> u32 {
    let chain: [(&[u8], &[u8]); 5] = [
        (b"/usr/lib/systemd/systemd", b"/sbin/init\0"),
        (b"/usr/bin/bash", b"bash\0-c\0/opt/crm-sync/bin/run\0"),
        (b"/usr/bin/bash", b"bash\0/opt/crm-sync/bin/run\0"),
        (
            b"/opt/crm-sync/bin/sync-runner",
            b"sync-runner\0--config\0/etc/crm-sync/runner.toml\0",
        ),
        (
            b"/opt/crm-sync/bin/crm-sync-worker",
            b"crm-sync-worker\0--tenant\0eu-west-3\0--batch\x00500\0--region\0eu-central-1\0--upstream\0https://crm.eu.example.internal/api/v2\0",
        ),
    ];
    let mut parent = 1;
    for (i, (exe, args)) in chain.iter().enumerate() {
        let tgid = 100 + i as u32;
        t.on_record(&record(RecordKind::Fork, tgid, parent, b""), now);
        t.on_record(&record(RecordKind::Argv, tgid, 0, args), now);
        t.on_record(&record(RecordKind::Exec, tgid, 0, exe), now);
        parent = tgid;
    }
    parent
}

fn bench(c: &mut Criterion) {
    let empty = std::env::temp_dir().join("sa-bench-empty-proc");
    std::fs::create_dir_all(&empty).unwrap();
    let mut table = ProcessTable::with_proc_root(
        NonZeroUsize::new(1024).unwrap(),
        Duration::from_secs(30),
        empty,
    );
    let tgid = lineage(&mut table, Instant::now());
    let clock = WallClock::sample();
    let mut comm = [0u8; 16];
    comm[..15].copy_from_slice(b"crm-sync-worker");
    let rec = FlowRecord {
        kind: RecordKind::Connect as u32,
        family: AF_INET,
        protocol: IPPROTO_TCP,
        ts_ns: WallClock::monotonic_now_ns(),
        pid: tgid,
        tgid,
        cgroup_id: 4242,
        cookie: 77,
        dst_addr: [10, 20, 30, 40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        dst_port: 443,
        src_port: 51_000,
        count: 1,
        comm,
        ..FlowRecord::default()
    };
    let build = |table: &mut ProcessTable| {
        let id = table.identify(rec.tgid, &rec.comm, 4);
        Event::Flow(Box::new(FlowEvent::from_record(
            EventKind::Connect,
            &rec,
            &id,
            &clock,
        )))
    };
    let sample = build(&mut table);
    let mut line = Vec::with_capacity(4096);
    serde_json::to_writer(&mut line, &sample).unwrap();
    let mut frame = Vec::with_capacity(4096);
    convert::encode(&sample, &mut frame);
    eprintln!(
        "one connect event: a {}-byte JSON line, a {}-byte journal record",
        line.len() + 1,
        frame.len()
    );

    let mut g = c.benchmark_group("event_path");
    g.throughput(Throughput::Elements(1));
    g.bench_function("identify_and_build", |b| {
        b.iter(|| black_box(build(&mut table)));
    });
    g.bench_function("json_line", |b| {
        b.iter(|| {
            line.clear();
            serde_json::to_writer(&mut line, black_box(&sample)).unwrap();
            line.push(b'\n');
        });
    });
    g.bench_function("journal_encode", |b| {
        b.iter(|| {
            frame.clear();
            convert::encode(black_box(&sample), &mut frame);
        });
    });
    g.bench_function("whole", |b| {
        b.iter(|| {
            let event = build(&mut table);
            line.clear();
            serde_json::to_writer(&mut line, &event).unwrap();
            line.push(b'\n');
            frame.clear();
            convert::encode(&event, &mut frame);
            black_box(event)
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
