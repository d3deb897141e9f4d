//! A flow record in the scan: its group, its destination's first sighting, its verdict.
use std::borrow::Cow;

use super::{tallies::*, Scan};
use crate::{
    event::{workload_label, Event},
    journal::convert::{self, FlowView},
};

const NS_PER_HOUR: i64 = 3_600_000_000_000;

/// The workload label of a flow view, borrowed when it can be (it is computed per record).
fn workload_of<'a>(v: &FlowView<'a>) -> Cow<'a, str> {
    match (v.systemd_unit, v.container_id) {
        (Some(u), _) => Cow::Borrowed(u),
        (None, Some(_)) => Cow::Owned(workload_label(
            None,
            v.container_id,
            v.container_runtime,
            v.exe,
            v.comm,
        )),
        (None, None) => Cow::Borrowed(v.exe.unwrap_or(v.comm)),
    }
}

impl Scan {
    pub(super) fn flow(&mut self, seq: u64, payload: &[u8], v: &FlowView<'_>) {
        let agent = self.agents.id(v.agent_id);
        let ip = v.dst_ip.expect("views have an address");
        let proto = v.proto as u8;
        let first = self
            .dest_first
            .entry((ip, v.dst_port, proto))
            .or_insert(v.ts_unix_ns);
        *first = (*first).min(v.ts_unix_ns);
        self.alive(agent, v.ts_unix_ns);
        if !self.seen(v.ts_unix_ns) {
            return;
        }
        self.tracks.entry(agent).or_default().records_in_period += 1;
        self.flow_events += 1;
        let label = workload_of(v);
        let workload = self.workloads.id(&label);
        if workload as usize == self.workload_info.len() {
            self.workload_info.push(WorkloadInfo {
                exe: v.exe.map(str::to_string),
                systemd_unit: v.systemd_unit.map(str::to_string),
                container_id: v.container_id.map(str::to_string),
                pod_uid: v.pod_uid.map(str::to_string),
                cgroup: v.cgroup.map(str::to_string),
            });
        }
        let key = FlowKey {
            agent,
            workload,
            ip,
            port: v.dst_port,
            proto,
        };
        let acc = self.flows.entry(key).or_insert_with(|| FlowAcc {
            first_ns: v.ts_unix_ns,
            last_ns: v.ts_unix_ns,
            ..Default::default()
        });
        acc.first_ns = acc.first_ns.min(v.ts_unix_ns);
        acc.last_ns = acc.last_ns.max(v.ts_unix_ns);
        for n in &v.names {
            if acc.names.len() < 8 && !acc.names.contains(n) {
                acc.names.push(n.clone());
            }
        }
        if !v.name_source.is_empty() && !acc.sources.iter().any(|s| s == v.name_source) {
            acc.sources.push(v.name_source.to_string());
        }
        if let Some(verdict) = &v.verdict {
            for z in &verdict.matched_zones {
                if acc.zones.len() < 16 && !acc.zones.iter().any(|x| x == z) {
                    acc.zones.push((*z).to_string());
                }
            }
        }
        acc.bytes_out += v.bytes_sent.unwrap_or(0);
        acc.bytes_in += v.bytes_received.unwrap_or(0);
        // Connect (1), send (2) and existing (5) begin a flow; established and close are
        // later steps of the same one, so verdicts are counted on the first step only.
        if !matches!(v.kind, 1 | 2 | 5) {
            return;
        }
        let flows = v.aggregated_flows.unwrap_or(1).max(1);
        acc.flows += flows;
        let Some(verdict) = &v.verdict else {
            self.unjudged += flows;
            return;
        };
        self.judged += flows;
        if self.last_policy_hash != verdict.policy_hash {
            // Seldom: the policy changes at a reload, or records of agents interleave.
            verdict.policy_hash.clone_into(&mut self.last_policy_hash);
            Self::verdict_policy(
                &mut self.verdict_policies,
                agent,
                [
                    verdict.policy_name,
                    verdict.policy_version,
                    verdict.policy_hash,
                ],
                v.ts_unix_ns,
            );
        }
        if !verdict.violation {
            return;
        }
        self.violations += flows;
        acc.violations += flows;
        if !acc.rules.iter().any(|r| r == verdict.rule) {
            acc.rules.push(verdict.rule.to_string());
        }
        *self
            .violations_by_hour
            .entry(v.ts_unix_ns.div_euclid(NS_PER_HOUR))
            .or_default() += flows;
        let gkey = GroupKey {
            agent,
            rule: self.rules.id(verdict.rule),
            workload,
            ip,
            port: v.dst_port,
        };
        let group = self.groups.entry(gkey).or_insert_with(|| {
            // The evidence of the first one, as recorded (decoded whole: once per group).
            let mut g = GroupAcc {
                destination: crate::event::destination_label(
                    v.names.first().map(String::as_str),
                    ip,
                    v.dst_port,
                ),
                severity: verdict.severity,
                first_ns: v.ts_unix_ns,
                last_ns: v.ts_unix_ns,
                first_seq: seq,
                ..Default::default()
            };
            if let Ok(Event::Flow(f)) = convert::decode(payload) {
                if let Some(e) = &f.verdict {
                    g.zones.clone_from(&e.zones);
                    g.weak = e.weak.iter().map(ToString::to_string).collect();
                    g.evidence = e
                        .evidence
                        .iter()
                        .filter(|x| x.decisive)
                        .map(|x| match &x.name {
                            Some(n) => format!("{}: {} ({} {n})", x.zone, x.detail, x.via),
                            None => format!("{}: {} ({})", x.zone, x.detail, x.via),
                        })
                        .collect();
                }
            }
            g
        });
        group.flows += flows;
        group.first_ns = group.first_ns.min(v.ts_unix_ns);
        group.last_ns = group.last_ns.max(v.ts_unix_ns);
    }

    /// Notes a policy a verdict names ([name, version, hash]), once per agent.
    pub(super) fn verdict_policy(
        policies: &mut Vec<(u32, String, String, String, i64)>,
        agent: u32,
        [name, version, hash]: [&str; 3],
        ts: i64,
    ) {
        if !policies.iter().any(|p| p.0 == agent && p.3 == hash) {
            policies.push((
                agent,
                name.to_string(),
                version.to_string(),
                hash.to_string(),
                ts,
            ));
        }
    }
}
