//! What the scan gathers, per flow, group, agent, alert and flood: raw (interned ids,
//! nanoseconds), for [`super::super::assemble`] to turn into the report.
use std::{collections::HashMap, net::IpAddr};

use crate::event::LifecycleEvent;

/// The period asked for, in Unix nanoseconds: `since <= ts < until`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Window {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Window {
    pub fn before(&self, ts: i64) -> bool {
        self.since.is_some_and(|s| ts < s)
    }

    pub fn after(&self, ts: i64) -> bool {
        self.until.is_some_and(|u| ts >= u)
    }
}

/// Strings seen many times, stored once and referred to by index.
#[derive(Default)]
pub struct Interner {
    ids: HashMap<String, u32>,
    pub names: Vec<String>,
}

impl Interner {
    pub fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(s.to_string(), id);
        self.names.push(s.to_string());
        id
    }
}

/// One workload's traffic to one address, port and protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub agent: u32,
    pub workload: u32,
    pub ip: IpAddr,
    pub port: u16,
    /// Protobuf `Protocol`: 1 TCP, 2 UDP.
    pub proto: u8,
}

#[derive(Clone, Debug, Default)]
pub struct FlowAcc {
    pub names: Vec<String>,
    pub sources: Vec<String>,
    pub first_ns: i64,
    pub last_ns: i64,
    pub flows: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub violations: u64,
    pub rules: Vec<String>,
    /// The policy zones the destination was in, as recorded with its verdicts.
    pub zones: Vec<String>,
}

/// The facts of a workload, from its first flow in the period.
#[derive(Clone, Debug, Default)]
pub struct WorkloadInfo {
    pub exe: Option<String>,
    pub systemd_unit: Option<String>,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    pub cgroup: Option<String>,
}

/// Violations of one rule by one workload to one address and port (no string is built for a
/// record that joins a group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub agent: u32,
    /// Into [`super::Scan::rules`].
    pub rule: u32,
    pub workload: u32,
    pub ip: IpAddr,
    pub port: u16,
}

#[derive(Clone, Debug, Default)]
pub struct GroupAcc {
    /// The destination as the group's first flow named it.
    pub destination: String,
    pub severity: u64,
    pub flows: u64,
    pub first_ns: i64,
    pub last_ns: i64,
    pub first_seq: u64,
    pub zones: Vec<String>,
    pub evidence: Vec<String>,
    pub weak: Vec<String>,
}

/// One agent's history: starts and stops over the whole journal (coverage is clipped to
/// the period later), and the facts of its starts.
#[derive(Clone, Debug, Default)]
pub struct AgentTrack {
    /// (start, end, how it ended); `end` None: still open.
    pub sessions: Vec<(i64, Option<i64>, String)>,
    pub last_ns: i64,
    pub unclean: Vec<i64>,
    pub hostnames: Vec<String>,
    pub versions: Vec<String>,
    pub binary_hashes: Vec<String>,
    pub starts_in_period: u64,
    pub records_in_period: u64,
    /// Starts relevant to the period (the last one before it, and those in it): hooks that
    /// did not attach.
    pub hooks: Vec<(i64, Vec<String>, Vec<String>)>,
    /// Policy records relevant to the period: the last before it, and those in it.
    pub policies: Vec<(i64, LifecycleEvent)>,
}

#[derive(Clone, Debug, Default)]
pub struct AlertAcc {
    pub severity: String,
    pub alerts: u64,
    /// Violations the alerts stand for (each folds its repeats).
    pub violations: u64,
    pub first_ns: i64,
    pub last_ns: i64,
}

#[derive(Clone, Debug, Default)]
pub struct FloodAcc {
    pub suppressed: crate::event::Suppressed,
    pub first_ns: i64,
    pub last_ns: i64,
}
