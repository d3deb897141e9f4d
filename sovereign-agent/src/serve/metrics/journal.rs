//! The journal: records, events it could not write, its size on disk (read at scrape time).
use std::sync::atomic::Ordering::Relaxed;

use super::exposition::Exposition;
use crate::journal::recorder::JournalShared;

pub(super) fn render(out: &mut Exposition, j: &JournalShared) {
    let (segments, bytes) = journal_size(&j.dir);
    out.counter(
        "sovereign_agent_journal_records_total",
        "Records in the journal (its next sequence number).",
        &[(vec![], j.next_seq.load(Relaxed) as f64)],
    );
    out.counter(
        "sovereign_agent_journal_not_journaled_total",
        "Events that could not be written to the journal (disk full, I/O error).",
        &[(vec![], j.not_journaled.load(Relaxed) as f64)],
    );
    out.gauge(
        "sovereign_agent_journal_bytes",
        "Size of the journal's segment files.",
        &[(vec![], bytes as f64)],
    );
    out.gauge(
        "sovereign_agent_journal_segments",
        "Segment files in the journal.",
        &[(vec![], segments as f64)],
    );
}

/// (segments, bytes) of the journal directory; read at scrape time.
fn journal_size(dir: &std::path::Path) -> (u64, u64) {
    match crate::journal::writer::list_segments(dir) {
        Ok(segments) => (
            segments.len() as u64,
            segments
                .iter()
                .filter_map(|(_, p)| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum(),
        ),
        Err(_) => (0, 0),
    }
}
