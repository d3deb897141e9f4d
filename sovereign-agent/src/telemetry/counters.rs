//! What the agent counts while it runs, shared by the pipeline, the API's `GetStatus`, the
//! sinks and `/metrics` ([`crate::serve::metrics`] renders them). Updates are relaxed atomic
//! adds (or a short lock for the maps), so counting costs the hot path next to nothing.
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
};

use crate::{
    event::EventKind,
    policy::{Decision, Explanation, Severity},
};

/// Counters shared by the pipeline, the API's `GetStatus`, the sinks and `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Flow events by kind, in the order of [`KINDS`].
    pub events_by_kind: [AtomicU64; KINDS.len()],
    pub kernel_losses: AtomicU64,
    /// Records the kernel's budgets suppressed since load, by what they would have reported.
    pub suppressed: Mutex<crate::event::Suppressed>,
    /// Flows the flow ceiling folded into `aggregated` events.
    pub flows_folded: AtomicU64,
    pub decode_errors: AtomicU64,
    pub verdicts: Mutex<Verdicts>,
    /// Alerts raised (a folded repeat is counted when its summary alert is raised).
    pub alerts_raised: AtomicU64,
    /// The policy watcher's loads and reloads.
    pub policy_loads: Arc<crate::policy::watch::LoadStats>,
    /// Programs attached and the policy loaded (`/readyz`).
    pub ready: AtomicBool,
    /// The journal is behind its disk and the pipeline has paused reading (`/readyz`).
    pub output_behind: AtomicBool,
    /// The naming stage's counters, as the pipeline last published them.
    pub names: Mutex<crate::names::NamesSnapshot>,
    /// Alerts raised after a flow's first event (its SNI was read later).
    pub late_alerts: AtomicU64,
    /// TCP closes whose kernel owner entry had been evicted (`tcp_socket_entries`).
    pub owner_evictions: AtomicU64,
    /// The process table's counters and size, as the pipeline last published them.
    pub processes: Mutex<(crate::enrich::processes::TableStats, usize)>,
}

/// Verdicts by (decision, severity) then rule: the rule names are the policy's, so the map
/// stays as small as the policy, and counting a verdict allocates only the first time.
pub type Verdicts = HashMap<(Decision, Option<Severity>), HashMap<String, u64>>;

pub const KINDS: [EventKind; 6] = [
    EventKind::Connect,
    EventKind::Existing,
    EventKind::Send,
    EventKind::Established,
    EventKind::Close,
    EventKind::Refused,
];

impl Counters {
    pub fn count_event(&self, kind: EventKind, verdict: Option<&Explanation>) {
        if let Some(i) = KINDS.iter().position(|k| *k == kind) {
            self.events_by_kind[i].fetch_add(1, Relaxed);
        }
        if let Some(v) = verdict {
            let mut verdicts = self
                .verdicts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let by_rule = verdicts.entry((v.decision, v.severity)).or_default();
            match by_rule.get_mut(v.rule.as_str()) {
                Some(n) => *n += 1,
                None => {
                    by_rule.insert(v.rule.clone(), 1);
                }
            }
        }
    }

    /// Flow events of every kind.
    pub fn events(&self) -> u64 {
        self.events_by_kind.iter().map(|n| n.load(Relaxed)).sum()
    }
}
