//! The process table: memory for 10,000 and 100,000 live processes, and the cost of one
//! process's fork, arguments, exec and exit records (against an empty procfs, so the figures
//! are the table's own work, not /proc reads).
//!
//!     cargo bench -p sovereign-agent --bench process_table
use std::{
    hint::black_box,
    num::NonZeroUsize,
    time::{Duration, Instant},
};

#[path = "support/rss.rs"]
mod rss;

#[path = "support/process_record.rs"]
mod process_record;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sovereign_agent::enrich::ProcessTable;
use sovereign_agent_common::RecordKind;

use process_record::record;

const EXE: &[u8] = b"/opt/crm-sync/bin/crm-sync-worker";
const ARGS: &[u8] =
    b"crm-sync-worker\0--tenant\0eu-west-3\0--batch\x00500\0--region\0eu-central-1\0";

/// A process's life: forked by pid 1, its arguments, its exec.
fn birth(t: &mut ProcessTable, tgid: u32, now: Instant) {
    t.on_record(&record(RecordKind::Fork, tgid, 1, b""), now);
    t.on_record(&record(RecordKind::Argv, tgid, 0, ARGS), now);
    t.on_record(&record(RecordKind::Exec, tgid, 0, EXE), now);
}

fn table(capacity: usize) -> ProcessTable {
    let empty = std::env::temp_dir().join("sa-bench-empty-proc");
    std::fs::create_dir_all(&empty).unwrap();
    ProcessTable::with_proc_root(
        NonZeroUsize::new(capacity).unwrap(),
        Duration::from_secs(30),
        empty,
    )
}

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    for n in [10_000u32, 100_000] {
        let before = rss::rss_kib();
        let mut t = table(n as usize + 1);
        for tgid in 2..n + 2 {
            birth(&mut t, tgid, now);
        }
        let after = rss::rss_kib();
        eprintln!(
            "{n} live processes: {} entries, resident memory grew by {:.1} MiB ({} bytes each)",
            t.len(),
            (after.saturating_sub(before)) as f64 / 1024.0,
            (after.saturating_sub(before)) * 1024 / u64::from(n)
        );
        black_box(&t);
    }
    let mut t = table(32_768);
    let mut tgid = 2u32;
    let mut g = c.benchmark_group("process_table");
    g.throughput(Throughput::Elements(1));
    g.bench_function("fork_argv_exec_exit_lookup", |b| {
        b.iter(|| {
            tgid = tgid.wrapping_add(1).max(2);
            birth(&mut t, tgid, now);
            black_box(t.identify(tgid, &[0; 16], 4));
            t.on_record(&record(RecordKind::Exit, tgid, 0, b""), now);
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
