//! The one pass over the journal: every record is read once, flows as borrowed views (no
//! event built), the rare others (lifecycle, losses, floods, alerts) decoded whole. What it
//! gathers is raw (interned ids, nanoseconds); [`super::assemble`] turns it into the report.
use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use crate::{
    event::{workload_label, Event, Lifecycle, LifecycleEvent},
    journal::convert::{self, FlowView},
};

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
    /// Into [`Scan::rules`].
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
    last_policy_hash: String,
    pub alerts: u64,
    pub alerts_by_severity: BTreeMap<String, u64>,
    /// Alerts per (agent, rule, workload, destination): in a collector's journal, which
    /// holds alerts but not always flows, the fleet's violations.
    pub alert_groups: BTreeMap<(u32, String, String, String), AlertAcc>,
    /// The first record that could not be read, if any (the scan stops there).
    pub unreadable: Option<String>,
}

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
    fn alive(&mut self, agent: u32, ts: i64) {
        let track = self.tracks.entry(agent).or_default();
        track.last_ns = track.last_ns.max(ts);
    }

    /// Counts the record; whether it is in the period.
    fn seen(&mut self, ts: i64) -> bool {
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

    fn flow(&mut self, seq: u64, payload: &[u8], v: &FlowView<'_>) {
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
    fn verdict_policy(
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

    fn other(&mut self, agent: u32, event: &Event) {
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
