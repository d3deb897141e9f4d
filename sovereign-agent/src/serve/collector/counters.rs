//! What every store of the collector counts, whether the events came by push or from
//! JetStream (rendered by `metrics.rs`).
use std::sync::atomic::AtomicU64;

/// Counted by every store, whether the events came by push or from JetStream.
#[derive(Debug, Default)]
pub struct Counters {
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub batches_refused: AtomicU64,
    pub store_errors: AtomicU64,
}
