//! The flow ceiling: a bound on how many flow events a second the agent writes (to the output,
//! the journal and the API alike), whatever the workloads do. The kernel's per-workload
//! budgets bound each workload; the ceiling bounds their sum, so the journal's disk is not
//! the workloads' to fill.
//!
//! Within the ceiling every flow is written as it comes. Beyond it, flows are folded per
//! (kind, workload, destination) and written once a second as one event each, carrying how
//! many flows it stands for and since when (`aggregated`): fewer records, nothing silent.
//! Alerts are raised before this stage, so a violation still alerts at once.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    time::Instant,
};

use crate::event::{Aggregated, EventKind, FlowEvent, Proto};

/// Distinct (kind, workload, destination) keys folded per second; beyond, a workload's flows
/// are folded per kind under the unspecified destination `0.0.0.0:0` (a spray to a million
/// destinations costs at most this many records a second, not a million).
pub const MAX_KEYS: usize = 1_024;

type Key = (EventKind, String, IpAddr, u16, Proto);

struct Held {
    last: Box<FlowEvent>,
    flows: u64,
    first_unix_ns: i64,
}

pub struct FlowCeiling {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    held: HashMap<Key, Held>,
    /// Flows folded into aggregated events so far.
    pub folded: u64,
    /// Aggregated events written so far.
    pub aggregated_events: u64,
}

impl FlowCeiling {
    /// `per_sec` flow events a second sustained, `burst` at once.
    pub fn new(per_sec: u64, burst: u64) -> Self {
        Self {
            per_sec: per_sec as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            refilled: Instant::now(),
            held: HashMap::new(),
            folded: 0,
            aggregated_events: 0,
        }
    }

    /// The flow to write now, or `None` when it was folded (to come out of [`Self::release`]).
    pub fn admit(&mut self, f: Box<FlowEvent>, now: Instant) -> Option<Box<FlowEvent>> {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Some(f);
        }
        self.folded += 1;
        let workload = f.workload();
        let mut key: Key = (f.kind, workload, f.dst_ip, f.dst_port, f.proto);
        if !self.held.contains_key(&key) && self.held.len() >= MAX_KEYS {
            key.2 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
            key.3 = 0;
        }
        match self.held.get_mut(&key) {
            Some(h) => {
                h.flows += 1;
                h.last = f;
            }
            None => {
                let first_unix_ns = f.ts_unix_ns;
                self.held.insert(
                    key,
                    Held {
                        last: f,
                        flows: 1,
                        first_unix_ns,
                    },
                );
            }
        }
        None
    }

    /// One event for each (kind, workload, destination) folded since the last call.
    pub fn release(&mut self) -> Vec<Box<FlowEvent>> {
        let mut out = Vec::with_capacity(self.held.len());
        for ((_, _, ip, port, _), h) in self.held.drain() {
            let mut f = h.last;
            if port == 0 && ip.is_unspecified() {
                f.dst_ip = ip;
                f.dst_port = 0;
                f.names.clear();
                f.name_source = "none";
                f.dns.clear();
                f.sni = None;
                f.verdict = None;
            }
            f.aggregated = Some(Aggregated {
                flows: h.flows,
                first: crate::clock::rfc3339_from_unix_ns(i128::from(h.first_unix_ns)),
                first_unix_ns: h.first_unix_ns,
            });
            out.push(f);
        }
        // In time order, as the journal keeps everything else.
        out.sort_by_key(|f| f.ts_unix_ns);
        self.aggregated_events += out.len() as u64;
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::journal::tests::sample_flow;

    fn flow(i: u64, port: u16) -> Box<FlowEvent> {
        let mut f = sample_flow(0);
        f.cookie = i;
        f.ts_unix_ns += i as i64;
        f.dst_port = port;
        f.aggregated = None;
        Box::new(f)
    }

    #[test]
    fn within_the_ceiling_everything_passes_beyond_it_flows_fold_and_add_up() {
        let t0 = Instant::now();
        let mut c = FlowCeiling::new(100, 10);
        let mut written = 0;
        // 1,000 flows to two destinations in one instant: the burst passes, the rest folds.
        for i in 0..1000 {
            if c.admit(flow(i, 443 + (i % 2) as u16), t0).is_some() {
                written += 1;
            }
        }
        assert_eq!(written, 10);
        let folded = c.release();
        assert_eq!(folded.len(), 2, "one event per destination");
        let total: u64 = folded
            .iter()
            .map(|f| f.aggregated.as_ref().unwrap().flows)
            .sum();
        assert_eq!(written + total, 1000, "nothing lost, nothing twice");
        let a = folded[0].aggregated.as_ref().unwrap();
        assert!(a.first_unix_ns < folded[0].ts_unix_ns, "first .. last");
        assert!(c.release().is_empty(), "released once");
        // A second later the rate has refilled 100 tokens (capped at the burst).
        let later = t0 + Duration::from_secs(1);
        let passed = (0..50)
            .filter(|i| c.admit(flow(*i, 1), later).is_some())
            .count();
        assert_eq!(passed, 10);
    }

    #[test]
    fn beyond_the_key_bound_a_workloads_flows_fold_under_no_destination() {
        let t0 = Instant::now();
        let mut c = FlowCeiling::new(1, 1);
        assert!(c.admit(flow(0, 1), t0).is_some());
        let n = MAX_KEYS as u64 + 500;
        for i in 0..n {
            assert!(c.admit(flow(i, (i % 60_000) as u16 + 1), t0).is_none());
        }
        let out = c.release();
        let total: u64 = out
            .iter()
            .map(|f| f.aggregated.as_ref().unwrap().flows)
            .sum();
        assert_eq!(total, n);
        assert!(out
            .iter()
            .any(|f| f.dst_port == 0 && f.dst_ip.is_unspecified() && f.verdict.is_none()));
        assert!(out.len() <= MAX_KEYS + 1);
    }
}
