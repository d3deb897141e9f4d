//! The one pass over the journal: every record is read once, flows as borrowed views (no
//! event built), the rare others (lifecycle, losses, floods, alerts) decoded whole. What it
//! gathers is raw (interned ids, nanoseconds); [`super::assemble`] turns it into the report.
mod flows;
mod others;
mod tallies;

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use crate::{
    event::LifecycleEvent,
    journal::convert::{self},
};

pub use tallies::*;

#[derive(Default)]
pub struct Scan {
    pub window: Window,
    pub records_total: u64,
    pub records: u64,
    /// First and last record time in the period, and in the whole journal.
    pub span: Option<(i64, i64)>,
    pub journal_span: Option<(i64, i64)>,
    pub agents: Interner,
    pub workloads: Interner,
    pub workload_info: Vec<WorkloadInfo>,
    pub flows: HashMap<FlowKey, FlowAcc>,
    pub flow_events: u64,
    /// First time each (address, port, protocol) was seen in the whole journal.
    pub dest_first: HashMap<(IpAddr, u16, u8), i64>,
    pub tracks: BTreeMap<u32, AgentTrack>,
    pub kernel_losses: u64,
    pub loss_events: u64,
    /// (agent, event) for journal gaps, recoveries and retention in the period.
    pub journal_events: Vec<(u32, LifecycleEvent)>,
    pub floods: BTreeMap<(u32, String), FloodAcc>,
    pub dns_refused: u64,
    pub judged: u64,
    pub unjudged: u64,
    pub violations: u64,
    /// Violations per hour (Unix hour number).
    pub violations_by_hour: BTreeMap<i64, u64>,
    pub groups: HashMap<GroupKey, GroupAcc>,
    /// Rule names of the violations.
    pub rules: Interner,
    /// The policies verdicts in the period name: (agent, name, version, hash, first verdict).
    pub verdict_policies: Vec<(u32, String, String, String, i64)>,
    pub(super) last_policy_hash: String,
    pub alerts: u64,
    pub alerts_by_severity: BTreeMap<String, u64>,
    /// Alerts per (agent, rule, workload, destination): in a collector's journal, which
    /// holds alerts but not always flows, the fleet's violations.
    pub alert_groups: BTreeMap<(u32, String, String, String), AlertAcc>,
    /// The first record that could not be read, if any (the scan stops there).
    pub unreadable: Option<String>,
}

impl Scan {
    pub fn new(window: Window) -> Self {
        Scan {
            window,
            ..Default::default()
        }
    }

    /// Takes one record in. `Err`: it could not be decoded (the message names it).
    pub fn record(&mut self, seq: u64, payload: &[u8]) -> Result<(), String> {
        self.records_total += 1;
        match convert::flow_view(payload) {
            Ok(Some(view)) => {
                self.flow(seq, payload, &view);
                Ok(())
            }
            Ok(None) => {
                let agent = convert::record_agent(payload);
                let agent = self.agents.id(agent);
                let event = convert::decode(payload).map_err(|e| format!("record {seq}: {e}"))?;
                self.other(agent, &event);
                Ok(())
            }
            Err(e) => Err(format!("record {seq}: {e}")),
        }
    }

    /// The agent was running at `ts` (its lifecycle records do not count: they are written
    /// at start, after a crash's gap).
    pub(super) fn alive(&mut self, agent: u32, ts: i64) {
        let track = self.tracks.entry(agent).or_default();
        track.last_ns = track.last_ns.max(ts);
    }

    /// Counts the record; whether it is in the period.
    pub(super) fn seen(&mut self, ts: i64) -> bool {
        // Records are in journal order, not strictly in time order (a flow carries the
        // kernel's time, a lifecycle record the agent's): the bounds are minimum and maximum.
        let widen = |b: &mut Option<(i64, i64)>| {
            *b = Some(b.map_or((ts, ts), |(lo, hi)| (lo.min(ts), hi.max(ts))));
        };
        widen(&mut self.journal_span);
        if self.window.before(ts) || self.window.after(ts) {
            return false;
        }
        self.records += 1;
        widen(&mut self.span);
        true
    }
}
