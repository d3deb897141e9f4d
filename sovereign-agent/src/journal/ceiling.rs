//! The flow ceiling: a bound on how many flow events a second the agent writes (to the output,
//! the journal and the API alike), whatever the workloads do. The kernel's per-workload
//! budgets bound each workload; the ceiling bounds their sum, so the journal's disk is not
//! the workloads' to fill.
//!
//! The ceiling is shared out per workload (pod, systemd unit, container, else cgroup): each
//! workload that made flows in the last second refills at an equal share of the rate, so a
//! neighbour that sprays spends its own share and a quiet workload's flows are still written
//! one by one, with their verdicts. Violations have a bound of their own, apart from the
//! shares: they are never folded while it lasts.
//!
//! Beyond its share, a workload's flows are folded per (kind, workload, destination, whether a
//! violation) and written once a second as one event each, carrying how many flows it stands
//! for, since when, and the sum of their bytes and datagrams (`aggregated`): fewer records,
//! nothing silent. Alerts are raised before this stage, so a violation still alerts at once.
use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher, RandomState},
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use crate::{
    event::{Aggregated, EventKind, FlowEvent, Proto},
    policy::Decision,
};

/// Distinct (kind, workload, destination) keys of allowed flows folded per second; beyond,
/// a workload's flows are folded per kind under the unspecified destination `0.0.0.0:0` (a
/// spray to a million destinations costs at most this many records a second, not a million).
pub const MAX_KEYS: usize = 1_024;
/// The same for violations, which keep their destination up to this many keys a second and,
/// beyond, fold under `0.0.0.0:0` with their verdict kept.
pub const MAX_VIOLATION_KEYS: usize = 8_192;
/// Workloads with a share of their own; beyond, new workloads share one.
pub const MAX_SHARES: usize = 4_096;
/// How long a workload without flows keeps its share.
const SHARE_IDLE: Duration = Duration::from_secs(1);

type Key = (EventKind, String, IpAddr, u16, Proto, bool);

/// Who a share of the ceiling belongs to: the widest workload the flow names (its pod, else
/// its unit, else its container, else its cgroup), as a keyed hash.
fn share_of(keys: &RandomState, f: &FlowEvent) -> u64 {
    crate::enrich::container::share_key(
        keys,
        f.pod_uid.as_deref(),
        f.systemd_unit.as_deref(),
        f.container_id.as_deref(),
        f.cgroup_id,
    )
}

/// The share of the workloads beyond [`MAX_SHARES`].
const OTHERS: u64 = 0;

/// The keys are hashes already.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A token bucket.
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn full(tokens: f64, now: Instant) -> Self {
        Self {
            tokens,
            refilled: now,
        }
    }

    /// Takes a token if there is one after refilling at `rate` up to `cap`.
    fn take(&mut self, rate: f64, cap: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * rate).min(cap);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Share {
    bucket: Bucket,
    last_flow: Instant,
}

struct Held {
    last: Box<FlowEvent>,
    flows: u64,
    first_unix_ns: i64,
    bytes_sent: Option<u64>,
    bytes_received: Option<u64>,
    datagrams: Option<u64>,
}

fn add(sum: Option<u64>, n: Option<u64>) -> Option<u64> {
    match (sum, n) {
        (Some(a), Some(b)) => Some(a.saturating_add(b)),
        (a, b) => a.or(b),
    }
}

pub struct FlowCeiling {
    per_sec: f64,
    burst: f64,
    share_keys: RandomState,
    shares: HashMap<u64, Share, BuildHasherDefault<Prehashed>>,
    violations: Bucket,
    held: HashMap<Key, Held>,
    /// Distinct keys held, of allowed flows and of violations.
    held_keys: usize,
    held_violation_keys: usize,
    /// Flows folded into aggregated events so far.
    pub folded: u64,
    /// Aggregated events written so far.
    pub aggregated_events: u64,
}

impl FlowCeiling {
    /// `per_sec` flow events a second sustained, `burst` at once, shared out per workload;
    /// violations the same again, of their own.
    pub fn new(per_sec: u64, burst: u64) -> Self {
        let burst = burst.max(1) as f64;
        Self {
            per_sec: per_sec as f64,
            burst,
            share_keys: RandomState::new(),
            shares: HashMap::default(),
            violations: Bucket::full(burst, Instant::now()),
            held: HashMap::new(),
            held_keys: 0,
            held_violation_keys: 0,
            folded: 0,
            aggregated_events: 0,
        }
    }

    /// The flow to write now, or `None` when it was folded (to come out of [`Self::release`]).
    pub fn admit(&mut self, f: Box<FlowEvent>, now: Instant) -> Option<Box<FlowEvent>> {
        let violation = f
            .verdict
            .as_ref()
            .is_some_and(|v| v.decision == Decision::Violation);
        let admitted = if violation {
            self.violations.take(self.per_sec, self.burst, now)
        } else {
            self.take_share(&f, now)
        };
        if admitted {
            return Some(f);
        }
        self.fold(f, violation);
        None
    }

    /// A token from the flow's workload's share: the rate and burst divided among the
    /// workloads that made flows within the last second.
    fn take_share(&mut self, f: &FlowEvent, now: Instant) -> bool {
        let n = self.shares.len().max(1) as f64;
        let key = share_of(&self.share_keys, f);
        // The common case, a workload already holding a share: one lookup.
        if let Some(share) = self.shares.get_mut(&key) {
            share.last_flow = now;
            return share
                .bucket
                .take(self.per_sec / n, (self.burst / n).max(1.0), now);
        }
        let key = if self.shares.len() >= MAX_SHARES {
            OTHERS
        } else {
            key
        };
        let n = (self.shares.len() + usize::from(!self.shares.contains_key(&key))) as f64;
        let (rate, cap) = (self.per_sec / n, (self.burst / n).max(1.0));
        let share = self.shares.entry(key).or_insert_with(|| Share {
            bucket: Bucket::full(cap, now),
            last_flow: now,
        });
        share.last_flow = now;
        share.bucket.take(rate, cap, now)
    }

    fn fold(&mut self, f: Box<FlowEvent>, violation: bool) {
        self.folded += 1;
        let workload = f.workload();
        let mut key: Key = (f.kind, workload, f.dst_ip, f.dst_port, f.proto, violation);
        if !self.held.contains_key(&key) {
            let (held, bound) = if violation {
                (&mut self.held_violation_keys, MAX_VIOLATION_KEYS)
            } else {
                (&mut self.held_keys, MAX_KEYS)
            };
            if *held >= bound {
                key.2 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
                key.3 = 0;
            } else {
                *held += 1;
            }
        }
        let (sent, received, datagrams) = (f.bytes_sent, f.bytes_received, f.count);
        match self.held.get_mut(&key) {
            Some(h) => {
                h.flows += 1;
                h.bytes_sent = add(h.bytes_sent, sent);
                h.bytes_received = add(h.bytes_received, received);
                h.datagrams = add(h.datagrams, datagrams);
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
                        bytes_sent: sent,
                        bytes_received: received,
                        datagrams,
                    },
                );
            }
        }
    }

    /// One event for each (kind, workload, destination) folded since the last call.
    pub fn release(&mut self) -> Vec<Box<FlowEvent>> {
        let now = Instant::now();
        self.shares
            .retain(|_, s| now.saturating_duration_since(s.last_flow) < SHARE_IDLE);
        self.held_keys = 0;
        self.held_violation_keys = 0;
        let mut out = Vec::with_capacity(self.held.len());
        for ((_, _, ip, port, _, violation), h) in self.held.drain() {
            let mut f = h.last;
            if port == 0 && ip.is_unspecified() {
                f.dst_ip = ip;
                f.dst_port = 0;
                f.names.clear();
                f.name_source = "none";
                f.dns.clear();
                f.sni = None;
                if !violation {
                    f.verdict = None;
                }
            }
            f.bytes_sent = h.bytes_sent;
            f.bytes_received = h.bytes_received;
            f.count = h.datagrams;
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

    /// An allowed flow (no verdict) of the sample workload (unit crm-sync.service).
    fn flow(i: u64, port: u16) -> Box<FlowEvent> {
        let mut f = sample_flow(0);
        f.cookie = i;
        f.ts_unix_ns += i as i64;
        f.dst_port = port;
        f.aggregated = None;
        f.verdict = None;
        Box::new(f)
    }

    fn of_unit(mut f: Box<FlowEvent>, unit: &str) -> Box<FlowEvent> {
        f.systemd_unit = Some(unit.into());
        f
    }

    fn violation(i: u64, port: u16) -> Box<FlowEvent> {
        let mut f = flow(i, port);
        f.verdict = sample_flow(0).verdict;
        assert_eq!(f.verdict.as_ref().unwrap().decision, Decision::Violation);
        f
    }

    #[test]
    fn a_quiet_workload_keeps_its_share_while_a_neighbour_sprays() {
        // The attack of issue 31 (finding 3): one workload sprays far beyond the ceiling;
        // before, the one bucket it emptied folded every other workload's flows with it.
        let t0 = Instant::now();
        let mut c = FlowCeiling::new(1_000, 1_000);
        let mut quiet_written = 0;
        for ms in 0..2_000u64 {
            let now = t0 + Duration::from_millis(ms);
            for i in 0..50 {
                let _ = c.admit(
                    of_unit(flow(ms * 100 + i, 1 + i as u16), "spray.service"),
                    now,
                );
            }
            if ms % 100 == 0 {
                let quiet = of_unit(flow(ms, 443), "quiet.service");
                if c.admit(quiet, now).is_some() {
                    quiet_written += 1;
                }
            }
            if ms % 1_000 == 999 {
                let _ = c.release();
            }
        }
        assert_eq!(quiet_written, 20, "every quiet flow one by one");
    }

    #[test]
    fn folds_sum_bytes_and_datagrams() {
        // A 10 GB upload then a 0-byte connection to the same place: the fold says 10 GB.
        let t0 = Instant::now();
        let mut c = FlowCeiling::new(1, 1);
        assert!(c.admit(flow(0, 443), t0).is_some());
        let mut upload = flow(1, 443);
        upload.bytes_sent = Some(10_000_000_000);
        upload.bytes_received = Some(5);
        let mut empty = flow(2, 443);
        empty.bytes_sent = Some(0);
        empty.bytes_received = Some(0);
        let mut datagrams = flow(3, 443);
        datagrams.bytes_sent = None;
        datagrams.bytes_received = None;
        datagrams.count = Some(7);
        for f in [upload, empty, datagrams] {
            assert!(c.admit(f, t0).is_none());
        }
        let out = c.release();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].aggregated.as_ref().unwrap().flows, 3);
        assert_eq!(out[0].bytes_sent, Some(10_000_000_000));
        assert_eq!(out[0].bytes_received, Some(5));
        assert_eq!(out[0].count, Some(7));
    }

    #[test]
    fn violations_pass_on_their_own_bound_and_a_fold_never_drops_their_verdict() {
        let t0 = Instant::now();
        let mut c = FlowCeiling::new(10, 10);
        // The allowed flows empty the workload's share...
        for i in 0..100 {
            let _ = c.admit(flow(i, 1), t0);
        }
        // ...and violations are still written one by one, up to their own burst.
        let written = (0..10)
            .filter(|i| c.admit(violation(*i, 2), t0).is_some())
            .count();
        assert_eq!(written, 10);
        // Beyond it, folded per destination, past the allowed flows' key bound, verdict kept.
        let n = MAX_KEYS as u64 + 100;
        for i in 0..n {
            assert!(c.admit(violation(i, 1000 + i as u16), t0).is_none());
        }
        let out = c.release();
        let folded: Vec<_> = out
            .iter()
            .filter(|f| {
                f.verdict
                    .as_ref()
                    .is_some_and(|v| v.decision == Decision::Violation)
            })
            .collect();
        assert_eq!(folded.len() as u64, n, "one per destination");
        assert!(folded
            .iter()
            .all(|f| f.dst_port >= 1000 && !f.dst_ip.is_unspecified()));
        // Beyond the violations' own key bound they fold under no destination, still violations.
        let mut c = FlowCeiling::new(1, 1);
        let n = MAX_VIOLATION_KEYS as u64 + 10;
        for i in 0..n {
            let _ = c.admit(violation(i, (i % 60_000) as u16 + 1), t0);
        }
        let out = c.release();
        let rest = out.iter().find(|f| f.dst_ip.is_unspecified()).unwrap();
        assert_eq!(
            rest.verdict.as_ref().map(|v| v.decision),
            Some(Decision::Violation)
        );
        let total: u64 = out
            .iter()
            .map(|f| f.aggregated.as_ref().unwrap().flows)
            .sum();
        assert_eq!(total + 1, n);
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
