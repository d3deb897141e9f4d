//! Violations become alerts, folded so a retry loop cannot flood the security team: the first
//! violation of a (workload, destination, rule) raises an alert at once; repeats within the
//! window are counted, and reported as one alert with their count when the window ends.
use std::num::NonZeroUsize;

use lru::LruCache;

use crate::{
    clock::rfc3339_from_unix_ns,
    event::{AlertEvent, EventKind, FlowEvent},
    policy::{Decision, Severity},
};

type Key = (String, String, String);

/// The rule name of alerts raised for `flood` events.
pub const FLOOD_RULE: &str = "flood";

struct Open {
    /// When the current window started (the last alert raised for this key).
    window_start_ns: i64,
    /// Repeats since that alert, not yet reported.
    pending: u64,
    first_pending_ns: i64,
    last_flow: Option<Box<FlowEvent>>,
}

pub struct AlertFolder {
    window_ns: i64,
    open: LruCache<Key, Open>,
    /// Alerts raised and violations folded, for status.
    pub raised: u64,
    pub folded: u64,
}

impl AlertFolder {
    pub fn new(window: std::time::Duration, keys: NonZeroUsize) -> Self {
        Self {
            window_ns: window.as_nanos().min(i64::MAX as u128) as i64,
            open: LruCache::new(keys),
            raised: 0,
            folded: 0,
        }
    }

    fn alert(&mut self, key: &Key, flow: Box<FlowEvent>, count: u64, first_ns: i64) -> AlertEvent {
        self.raised += 1;
        let v = flow.verdict.as_ref();
        AlertEvent {
            ts: flow.ts.clone(),
            ts_unix_ns: flow.ts_unix_ns,
            kind: "alert",
            severity: if key.2 == FLOOD_RULE {
                Some(Severity::High)
            } else {
                v.and_then(|v| v.severity)
            },
            rule: key.2.clone(),
            workload: key.0.clone(),
            destination: key.1.clone(),
            count,
            first: rfc3339_from_unix_ns(i128::from(first_ns)),
            last: flow.ts.clone(),
            first_unix_ns: first_ns,
            last_unix_ns: flow.ts_unix_ns,
            flow,
        }
    }

    /// Looks at a judged flow event; returns the alert to raise now, if any. Only the first
    /// event of a flow (connect, or an unconnected UDP send) counts: its established and
    /// close events are the same flow.
    pub fn observe(&mut self, f: &FlowEvent) -> Option<AlertEvent> {
        if !matches!(
            f.kind,
            EventKind::Connect | EventKind::Existing | EventKind::Send | EventKind::Refused
        ) {
            return None;
        }
        self.observe_late(f)
    }

    /// A workload over its budget: an alert with rule `flood` (severity high), folded per
    /// workload like violations, whatever the verdict of the destination it flooded.
    pub fn observe_flood(&mut self, f: &crate::event::FloodEvent) -> Option<AlertEvent> {
        let key: Key = (f.flow.workload(), "flood".into(), FLOOD_RULE.into());
        self.fold(key, &f.flow)
    }

    /// Whether `f` is a violation worth an alert (not `info`).
    pub fn alerts_on(f: &FlowEvent) -> bool {
        f.verdict.as_ref().is_some_and(|v| {
            v.decision == Decision::Violation && v.severity != Some(Severity::Info)
        })
    }

    /// A flow whose verdict became a violation after its first event (its SNI was read, or
    /// a name arrived later): folded like the rest. The caller sees to once per flow.
    pub fn observe_late(&mut self, f: &FlowEvent) -> Option<AlertEvent> {
        let v = f.verdict.as_ref()?;
        if !Self::alerts_on(f) {
            return None;
        }
        let key: Key = (f.workload(), f.destination(), v.rule.clone());
        self.fold(key, f)
    }

    /// The alert to raise now for `f` under `key`, if its window allows one.
    fn fold(&mut self, key: Key, f: &FlowEvent) -> Option<AlertEvent> {
        let now = f.ts_unix_ns;
        match self.open.get_mut(&key) {
            Some(open) if now - open.window_start_ns < self.window_ns => {
                if open.pending == 0 {
                    open.first_pending_ns = now;
                }
                open.pending += 1;
                open.last_flow = Some(Box::new(f.clone()));
                self.folded += 1;
                None
            }
            Some(open) => {
                // A repeat after the window: one alert for it and whatever was pending.
                let count = open.pending + 1;
                let first = if open.pending > 0 {
                    open.first_pending_ns
                } else {
                    now
                };
                open.window_start_ns = now;
                open.pending = 0;
                open.last_flow = None;
                Some(self.alert(&key, Box::new(f.clone()), count, first))
            }
            None => {
                self.open.put(
                    key.clone(),
                    Open {
                        window_start_ns: now,
                        pending: 0,
                        first_pending_ns: 0,
                        last_flow: None,
                    },
                );
                Some(self.alert(&key, Box::new(f.clone()), 1, now))
            }
        }
    }

    /// Alerts for folded repeats whose window has ended by `now_ns` (all of them with
    /// `i64::MAX`, at shutdown).
    pub fn expire(&mut self, now_ns: i64) -> Vec<AlertEvent> {
        let due: Vec<Key> = self
            .open
            .iter()
            .filter(|(_, o)| {
                o.pending > 0 && now_ns.saturating_sub(o.window_start_ns) >= self.window_ns
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in due {
            let Some(open) = self.open.get_mut(&key) else {
                continue;
            };
            let (count, first) = (open.pending, open.first_pending_ns);
            let flow = open.last_flow.take();
            open.pending = 0;
            open.window_start_ns = now_ns.min(flow.as_ref().map_or(now_ns, |f| f.ts_unix_ns));
            if let Some(flow) = flow {
                out.push(self.alert(&key, flow, count, first));
            }
        }
        out.sort_by_key(|a| a.ts_unix_ns);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::tests::sample_flow;

    fn violation(i: u64, ts_s: i64, port: u16) -> FlowEvent {
        let mut f = sample_flow(0); // a connect with a violation verdict
        f.cookie = i;
        f.ts_unix_ns = ts_s * 1_000_000_000;
        f.ts = rfc3339_from_unix_ns(i128::from(f.ts_unix_ns));
        f.dst_port = port;
        f
    }

    fn flood(ts_s: i64, port: u16, verdict: bool) -> crate::event::FloodEvent {
        let mut flow = violation(0, ts_s, port);
        if !verdict {
            flow.verdict = None;
        }
        crate::event::FloodEvent {
            ts: flow.ts.clone(),
            ts_unix_ns: flow.ts_unix_ns,
            kind: "flood",
            scope: "process",
            suppressed: crate::event::Suppressed {
                udp: 5000,
                ..Default::default()
            },
            first: flow.ts.clone(),
            last: flow.ts.clone(),
            first_unix_ns: flow.ts_unix_ns,
            last_unix_ns: flow.ts_unix_ns,
            flow: Box::new(flow),
        }
    }

    #[test]
    fn a_flood_alerts_high_once_per_window_whatever_its_destinations_and_verdict() {
        let mut a = AlertFolder::new(
            std::time::Duration::from_secs(60),
            NonZeroUsize::new(16).unwrap(),
        );
        // No verdict at all (no policy): a flood still alerts.
        let first = a.observe_flood(&flood(1000, 1, false)).expect("alerts");
        assert_eq!(
            (first.rule.as_str(), first.severity, first.count),
            (FLOOD_RULE, Some(Severity::High), 1)
        );
        assert_eq!(first.workload, "crm-sync.service");
        // A flood event a second, each with another last destination: folded.
        for s in 1..30 {
            assert!(a.observe_flood(&flood(1000 + s, s as u16, true)).is_none());
        }
        let due = a.expire(1061 * 1_000_000_000);
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].rule.as_str(), due[0].severity, due[0].count),
            (FLOOD_RULE, Some(Severity::High), 29)
        );
    }

    #[test]
    fn first_violation_alerts_at_once_repeats_fold_into_one_alert() {
        let mut a = AlertFolder::new(
            std::time::Duration::from_secs(60),
            NonZeroUsize::new(16).unwrap(),
        );
        let first = a
            .observe(&violation(1, 1000, 443))
            .expect("first alerts at once");
        assert_eq!(first.count, 1);
        assert_eq!(first.rule, "llm-hosts");
        assert_eq!(first.destination, "api.openai.com:443");
        assert_eq!(first.workload, "crm-sync.service");
        // 10 retries within the minute: nothing now ...
        for i in 0..10 {
            assert!(a.observe(&violation(2 + i, 1001 + i as i64, 443)).is_none());
        }
        // ... another destination is its own alert ...
        assert_eq!(a.observe(&violation(50, 1005, 8443)).unwrap().count, 1);
        assert!(a.expire(1059 * 1_000_000_000).is_empty(), "window not over");
        // ... and when the window ends, one alert for the 10.
        let folded = a.expire(1060 * 1_000_000_000);
        assert_eq!(folded.len(), 1);
        assert_eq!(folded[0].count, 10);
        assert_eq!(folded[0].first_unix_ns, 1001 * 1_000_000_000);
        assert_eq!(folded[0].last_unix_ns, 1010 * 1_000_000_000);
        assert_eq!(folded[0].flow.cookie, 11);
        assert!(a.expire(2000 * 1_000_000_000).is_empty());
        // A repeat after the window alerts at once again.
        assert_eq!(a.observe(&violation(60, 2000, 443)).unwrap().count, 1);
        assert_eq!((a.raised, a.folded), (4, 10));
    }

    #[test]
    fn allowed_info_and_non_first_events_raise_nothing() {
        let mut a = AlertFolder::new(
            std::time::Duration::from_secs(60),
            NonZeroUsize::new(16).unwrap(),
        );
        let mut close = violation(1, 1000, 443);
        close.kind = EventKind::Close;
        assert!(a.observe(&close).is_none());
        let mut allowed = violation(2, 1000, 443);
        allowed.verdict.as_mut().unwrap().decision = Decision::Allow;
        assert!(a.observe(&allowed).is_none());
        let mut info = violation(3, 1000, 443);
        info.verdict.as_mut().unwrap().severity = Some(Severity::Info);
        assert!(a.observe(&info).is_none());
        let mut none = violation(4, 1000, 443);
        none.verdict = None;
        assert!(a.observe(&none).is_none());
    }
}
