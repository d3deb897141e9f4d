//! The rare records (lifecycle, losses, floods, alerts), decoded whole.

use super::{tallies::*, Scan};
use crate::event::{Event, Lifecycle, LifecycleEvent};

impl Scan {
    pub(super) fn other(&mut self, agent: u32, event: &Event) {
        let ts = event.ts_unix_ns();
        let before = self.window.before(ts);
        let in_period = self.seen(ts);
        if !matches!(event, Event::Lifecycle(_)) {
            self.alive(agent, ts);
        }
        if in_period {
            self.tracks.entry(agent).or_default().records_in_period += 1;
        }
        match event {
            Event::Lifecycle(l) => self.lifecycle(agent, l, before, in_period),
            _ if !in_period => {}
            Event::Loss(l) => {
                self.kernel_losses += l.lost;
                self.loss_events += 1;
            }
            Event::Flood(f) => {
                let key = (agent, f.flow.workload());
                let acc = self.floods.entry(key).or_insert_with(|| FloodAcc {
                    first_ns: f.first_unix_ns,
                    last_ns: f.last_unix_ns,
                    ..Default::default()
                });
                acc.suppressed.tcp_connects += f.suppressed.tcp_connects;
                acc.suppressed.udp += f.suppressed.udp;
                acc.suppressed.dns_packets += f.suppressed.dns_packets;
                acc.suppressed.tls_segments += f.suppressed.tls_segments;
                acc.suppressed.process_records += f.suppressed.process_records;
                acc.first_ns = acc.first_ns.min(f.first_unix_ns);
                acc.last_ns = acc.last_ns.max(f.last_unix_ns);
            }
            Event::DnsRefused(d) => self.dns_refused += d.count.max(1),
            Event::Alert(a) => {
                self.alerts += 1;
                if let Some(v) = &a.flow.verdict {
                    let p = &v.policy;
                    Self::verdict_policy(
                        &mut self.verdict_policies,
                        agent,
                        [&p.name, &p.version, &p.hash],
                        a.first_unix_ns,
                    );
                }
                let severity = a.severity.map_or("none".to_string(), |s| s.to_string());
                *self.alerts_by_severity.entry(severity.clone()).or_default() += 1;
                let key = (
                    agent,
                    a.rule.clone(),
                    a.workload.clone(),
                    a.destination.clone(),
                );
                let acc = self.alert_groups.entry(key).or_insert_with(|| AlertAcc {
                    severity,
                    first_ns: a.first_unix_ns,
                    last_ns: a.last_unix_ns,
                    ..Default::default()
                });
                acc.alerts += 1;
                acc.violations += a.count;
                acc.first_ns = acc.first_ns.min(a.first_unix_ns);
                acc.last_ns = acc.last_ns.max(a.last_unix_ns);
            }
            Event::Flow(_) => {}
        }
    }

    fn lifecycle(&mut self, agent: u32, l: &LifecycleEvent, before: bool, in_period: bool) {
        let ts = l.ts_unix_ns;
        let track = self.tracks.entry(agent).or_default();
        match &l.body {
            Lifecycle::AgentStart {
                version,
                binary_hash,
                hostname,
                hooks_failed,
                not_reported,
                ..
            } => {
                // A start while a session is open: the previous run ended without a stop
                // record, at its last record.
                if let Some(open) = track.sessions.last_mut().filter(|s| s.1.is_none()) {
                    open.1 = Some(track.last_ns.clamp(open.0, ts));
                    open.2 = "no stop recorded (killed, crashed or power lost)".into();
                    track.unclean.push(ts);
                }
                track.sessions.push((ts, None, String::new()));
                if before {
                    track.hooks.clear();
                }
                if before || in_period {
                    for (list, item) in [
                        (&mut track.hostnames, hostname),
                        (&mut track.versions, version),
                        (&mut track.binary_hashes, binary_hash),
                    ] {
                        if !list.contains(item) {
                            list.push(item.clone());
                        }
                    }
                    if !hooks_failed.is_empty() {
                        track
                            .hooks
                            .push((ts, hooks_failed.clone(), not_reported.clone()));
                    }
                }
                if in_period {
                    track.starts_in_period += 1;
                }
            }
            Lifecycle::AgentStop { reason, .. } => {
                track.last_ns = track.last_ns.max(ts);
                if let Some(open) = track.sessions.last_mut().filter(|s| s.1.is_none()) {
                    open.1 = Some(ts);
                    open.2 = format!("stop: {reason}");
                }
            }
            Lifecycle::Policy { .. } => {
                if before {
                    track.policies.clear();
                }
                if before || in_period {
                    track.policies.push((ts, l.clone()));
                }
            }
            Lifecycle::JournalRetention { .. }
            | Lifecycle::JournalRecovered { .. }
            | Lifecycle::JournalGap { .. } => {
                if in_period {
                    self.journal_events.push((agent, l.clone()));
                }
            }
        }
    }
}
