//! What `/metrics` reads: the counters the stages keep, and what is read at scrape time.
use std::sync::{atomic::AtomicU64, Arc};

use super::{programs, ring};
use crate::{
    capture::bpf::HookStatus, journal::recorder::JournalShared, policy::PolicyReceiver,
    serve::sinks::SinkStats, telemetry::counters::Counters,
};

/// Everything `/metrics` reads.
#[derive(Clone)]
pub struct Sources {
    pub counters: Arc<Counters>,
    pub ring: Arc<std::sync::OnceLock<ring::RingFill>>,
    /// The attached programs, for their run-time statistics.
    pub programs: Arc<std::sync::OnceLock<programs::Programs>>,
    /// Every hook, attached or not (known once the programs are attached).
    pub hooks: Arc<std::sync::OnceLock<Vec<HookStatus>>>,
    pub journal: Option<Arc<JournalShared>>,
    pub policy: Option<PolicyReceiver>,
    pub subscribers: Arc<AtomicU64>,
    /// Each sink's delivery (serve/sinks).
    pub sinks: Vec<Arc<SinkStats>>,
    pub started_unix_ns: i64,
    /// The start-up scan for connections already open.
    pub existing: Arc<crate::capture::existing::Report>,
}
