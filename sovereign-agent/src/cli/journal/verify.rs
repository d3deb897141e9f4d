//! `sovereign-agent journal verify`: every frame, checksum, hash link, seal and checkpoint.
use std::path::Path;

use crate::{cli::complain, exit, journal::verify};

/// Checks everything; prints a summary or the first problem. Exit 0 valid, 1 a problem,
/// 64 bad arguments (key), 66 not a journal.
pub fn verify(dir: &Path, public_key: Option<&Path>, json: bool) -> u8 {
    let key = match public_key
        .map(crate::journal::keys::read_verifying_key)
        .transpose()
    {
        Ok(k) => k,
        Err(e) => {
            complain(format_args!("--public-key {e}"));
            return exit::USAGE;
        }
    };
    let started = std::time::Instant::now();
    let report = match verify::verify(dir, key.as_ref()) {
        Ok(r) => r,
        Err(e) => {
            complain(e);
            return exit::NOINPUT;
        }
    };
    let secs = started.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("plain struct")
        );
    } else if let Some(p) = &report.problem {
        println!(
            "{}: INVALID after {} good records",
            dir.display(),
            report.records
        );
        println!(
            "  {} at offset {}: {}",
            p.file.display(),
            p.offset,
            p.message
        );
    } else {
        println!(
            "{}: OK: {} records (seq {}..{}) in {} segments ({} to {}), {:.1} MiB, verified in {:.2} s",
            dir.display(),
            report.records,
            report.first_seq,
            report.next_seq.saturating_sub(1),
            report.segments,
            report.first_segment,
            report.first_segment + report.segments.saturating_sub(1),
            report.bytes as f64 / f64::from(1 << 20),
            secs
        );
        println!("  chain head {}", report.head);
        match (report.signed, key.is_some()) {
            (true, true) => println!("  {} signatures verified", report.signatures_checked),
            (true, false) => println!("  signed; signatures NOT checked (give --public-key)"),
            (false, _) => println!("  not signed"),
        }
        for d in &report.damage_recovered {
            println!(
                "  DAMAGE RECOVERED at {} (record {}): {} synced records of segment {} cut at offset {} ({}); kept in {}; journal id was {}",
                d.ts,
                d.seq,
                d.records_removed,
                d.segment,
                d.offset,
                d.reason,
                d.set_aside.as_deref().unwrap_or("(nowhere)"),
                d.previous_journal_id.as_deref().unwrap_or("(unknown)"),
            );
        }
    }
    if report.problem.is_some() {
        exit::FAILURE
    } else if !report.damage_recovered.is_empty() {
        exit::DAMAGE_RECOVERED
    } else {
        exit::OK
    }
}
