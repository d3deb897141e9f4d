//! What `/metrics` reads: the counters the stages keep, and what is read at scrape time.
use std::sync::{atomic::AtomicU64, Arc, OnceLock};

use super::{programs, ring};
use crate::{
    capture::bpf::HookStatus, journal::recorder::JournalShared, policy::PolicyReceiver,
    serve::sinks::SinkStats, telemetry::counters::Counters,
};

/// Everything `/metrics` reads.
#[derive(Clone)]
pub struct Sources {
    pub counters: Arc<Counters>,
    /// What the kernel side is, once the programs are attached (the endpoint answers before,
    /// while the agent starts).
    pub attached: Arc<OnceLock<Attached>>,
    /// What the kernel enforces (the enforcer keeps it current).
    pub enforced: Arc<std::sync::Mutex<crate::enforce::Enforced>>,
    pub journal: Option<Arc<JournalShared>>,
    pub policy: Option<PolicyReceiver>,
    pub subscribers: Arc<AtomicU64>,
    /// Each sink's delivery (serve/sinks).
    pub sinks: Vec<Arc<SinkStats>>,
    pub started_unix_ns: i64,
    /// The start-up scan for connections already open.
    pub existing: Arc<crate::capture::existing::Report>,
}

/// Known once the programs are attached; set once.
pub struct Attached {
    /// Every hook, attached or not.
    pub hooks: Vec<HookStatus>,
    /// The attached programs, for their run-time statistics.
    pub programs: programs::Programs,
    /// The event ring's fill (`None`: it could not be mapped; a warning said so).
    pub ring: Option<ring::RingFill>,
}

impl Sources {
    pub fn hooks(&self) -> Option<&[HookStatus]> {
        self.attached.get().map(|a| a.hooks.as_slice())
    }

    pub fn programs(&self) -> Option<&programs::Programs> {
        self.attached.get().map(|a| &a.programs)
    }

    pub fn ring(&self) -> Option<&ring::RingFill> {
        self.attached.get().and_then(|a| a.ring.as_ref())
    }
}
