//! The events the agent emits, one JSON object per line. Field names are a public contract
//! (docs/events.md): later stages, the journal and external tools rely on them.
use std::{net::IpAddr, sync::Arc};

use serde::Serialize;
use sovereign_agent_common::{
    comm_string, ip_of, FlowRecord, RecordKind, AF_INET, CLOSE_FLAG_OWNER_EVICTED,
    CLOSE_FLAG_WAS_ESTABLISHED, IPPROTO_TCP,
};

use crate::{clock::WallClock, enrich::table::Identity};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Connect,
    /// A TCP connection already open when the agent started (found at start, not by a hook).
    Existing,
    Send,
    Established,
    Close,
    Loss,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// One observed flow step: connect, send, established or close.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowEvent {
    pub ts: String,
    /// `ts` as Unix nanoseconds (what the journal stores; not in the JSON).
    #[serde(skip)]
    pub ts_unix_ns: i64,
    pub kind: EventKind,
    /// Process id (what `ps` shows).
    pub pid: u32,
    /// The kernel's name for the process id; always equal to `pid`.
    pub tgid: u32,
    /// Thread that made the call.
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    // The process's facts are shared with the process table, not copied per event.
    pub exe: Option<Arc<str>>,
    pub cmdline: Option<Arc<str>>,
    /// The file name as passed to execve, when the agent saw the exec.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec_path: Option<Arc<str>>,
    /// The interpreter running `exe`, when the file exec'd was a script.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<Arc<str>>,
    /// The parent process, its executable, and the ancestors' executables (parent first).
    pub ppid: Option<u32>,
    pub parent_exe: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<Arc<str>>,
    /// Why the process facts are missing, when they are (`exited_before_read`, or
    /// `exec_raced`: the process exec'd again before its exec could be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<&'static str>,
    pub cgroup_id: u64,
    pub cgroup: Option<Arc<str>>,
    pub container_id: Option<Arc<str>>,
    pub container_runtime: Option<&'static str>,
    pub pod_uid: Option<Arc<str>>,
    pub systemd_unit: Option<Arc<str>>,
    pub cookie: u64,
    pub proto: Proto,
    pub family: Family,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    pub src_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_received: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub was_established: Option<bool>,
    /// TCP `close`: the kernel's entry of the socket's owner was evicted before it closed (more
    /// open sockets than `tcp_socket_entries`); owner restored from the connect when known.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub owner_evicted: bool,
    /// Names of the destination: DNS (the CNAME chains in order), then TLS SNI.
    pub names: Vec<String>,
    /// `dns`, `dns_untrusted`, `sni`, `dns+sni`, `dns_untrusted+sni` or `none`.
    pub name_source: &'static str,
    /// DNS and SNI disagree (both are in `names`): worth an alert.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub name_conflict: bool,
    /// The DNS answers behind `names`: each chain, the resolver that gave it, and whether it
    /// is verified (an answer to this workload's own query from a trusted resolver).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<crate::names::DnsChain>,
    /// The server name the client sent in its ClientHello (its own claim).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Why the connection's ClientHello could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni_unreadable: Option<&'static str>,
    /// The residency verdict, when the agent runs with a policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<crate::policy::Explanation>,
    /// This event stands for several flows that came over the flow ceiling (see
    /// [`crate::journal::ceiling`]); the rest of its fields are the last one's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregated: Option<Aggregated>,
}

/// Flows of one (kind, workload, destination) written as one event by the flow ceiling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Aggregated {
    /// How many flows (this one included).
    pub flows: u64,
    /// When the first of them happened.
    pub first: String,
    #[serde(skip)]
    pub first_unix_ns: i64,
}

/// Records the kernel could not deliver since the previous loss event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LossEvent {
    pub ts: String,
    #[serde(skip)]
    pub ts_unix_ns: i64,
    pub kind: EventKind,
    pub lost: u64,
}

/// A DNS answer refused for naming (docs/events.md): nobody in the watched cgroup asked for
/// it, or it posed as a trusted resolver. An attack signal; repeats are folded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DnsRefusedEvent {
    pub ts: String,
    #[serde(skip)]
    pub ts_unix_ns: i64,
    /// Always `dns_refused`.
    pub kind: &'static str,
    pub reason: &'static str,
    pub cgroup_id: u64,
    pub cgroup: Option<Arc<str>>,
    /// The process that owns the receiving socket, when the agent saw it send a query
    /// (0 and empty otherwise).
    pub pid: u32,
    pub comm: String,
    pub exe: Option<Arc<str>>,
    pub cookie: u64,
    pub resolver: String,
    pub client_port: u16,
    pub question: Option<String>,
    pub names: Vec<String>,
    pub addresses: Vec<IpAddr>,
    pub count: u64,
}

/// A workload went over its budget: records it would have caused were counted in the kernel
/// instead of written (docs/events.md, "flood"). One per budget entry and poll while the
/// flood lasts; the counts are those since the previous one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FloodEvent {
    pub ts: String,
    #[serde(skip)]
    pub ts_unix_ns: i64,
    /// Always `flood`.
    pub kind: &'static str,
    /// `process` (socket calls, attributed to the process) or `cgroup` (packets).
    pub scope: &'static str,
    pub suppressed: Suppressed,
    /// First and last suppression this event counts.
    pub first: String,
    pub last: String,
    #[serde(skip)]
    pub first_unix_ns: i64,
    #[serde(skip)]
    pub last_unix_ns: i64,
    /// The workload (process facts, cgroup, container, unit) and the last destination it was
    /// suppressed on, judged like any flow.
    pub flow: Box<FlowEvent>,
}

/// Records a budget suppressed, by what they would have reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Suppressed {
    pub tcp_connects: u64,
    /// UDP connects and first datagrams to new destinations.
    pub udp: u64,
    pub dns_packets: u64,
    pub tls_segments: u64,
    /// Fork, exec and exit records (scope `cgroup`; the flow then has no destination).
    pub process_records: u64,
}

impl Suppressed {
    pub fn total(&self) -> u64 {
        self.tcp_connects + self.udp + self.dns_packets + self.tls_segments + self.process_records
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event {
    Flow(Box<FlowEvent>),
    Loss(LossEvent),
    Lifecycle(Box<LifecycleEvent>),
    Alert(Box<AlertEvent>),
    DnsRefused(Box<DnsRefusedEvent>),
    Flood(Box<FloodEvent>),
}

/// An alert (JSON `kind: "alert"`): violations of one (workload, destination, rule), folded
/// by [`crate::alerts::AlertFolder`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertEvent {
    pub ts: String,
    #[serde(skip)]
    pub ts_unix_ns: i64,
    pub kind: &'static str,
    pub severity: Option<crate::policy::Severity>,
    pub rule: String,
    pub workload: String,
    pub destination: String,
    /// Violations this alert stands for.
    pub count: u64,
    pub first: String,
    pub last: String,
    #[serde(skip)]
    pub first_unix_ns: i64,
    #[serde(skip)]
    pub last_unix_ns: i64,
    /// The flow that raised it (the first, or the last of the folded repeats).
    pub flow: Box<FlowEvent>,
}

impl Event {
    pub fn as_flow(&self) -> Option<&FlowEvent> {
        match self {
            Event::Flow(f) => Some(f),
            _ => None,
        }
    }

    /// Unix nanoseconds of the event.
    pub fn ts_unix_ns(&self) -> i64 {
        match self {
            Event::Flow(f) => f.ts_unix_ns,
            Event::Loss(l) => l.ts_unix_ns,
            Event::Lifecycle(l) => l.ts_unix_ns,
            Event::Alert(a) => a.ts_unix_ns,
            Event::DnsRefused(d) => d.ts_unix_ns,
            Event::Flood(f) => f.ts_unix_ns,
        }
    }
}

/// The agent's own history (start, stop, policy in force, journal maintenance), so a gap in
/// coverage is itself on record. JSON: `ts`, `kind` and the fields of the kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LifecycleEvent {
    pub ts: String,
    #[serde(skip)]
    pub ts_unix_ns: i64,
    #[serde(flatten)]
    pub body: Lifecycle,
}

impl LifecycleEvent {
    /// A lifecycle event stamped now.
    pub fn now(body: Lifecycle) -> Self {
        let ts_unix_ns = crate::clock::unix_now_ns();
        Self {
            ts: crate::clock::rfc3339_from_unix_ns(i128::from(ts_unix_ns)),
            ts_unix_ns,
            body,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Lifecycle {
    /// The agent started capturing.
    AgentStart {
        version: String,
        /// `sha256:` digest of the running executable.
        binary_hash: String,
        /// `sha256:` digest of the configuration file (of the empty string without one).
        config_hash: String,
        config_path: Option<String>,
        hostname: String,
        cgroup: String,
        hooks: Vec<String>,
        hooks_failed: Vec<String>,
        pid: u32,
        /// What the refused hooks would have reported ("HOOK: what"): what every flow after
        /// this start lacks. Absent when every hook attached.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        not_reported: Vec<String>,
    },
    /// The agent stopped.
    AgentStop {
        reason: String,
        flows: u64,
        kernel_losses: u64,
        not_journaled: u64,
    },
    /// Flows are judged under this policy from here on (at start and on every reload).
    Policy {
        name: String,
        version: String,
        hash: String,
        path: String,
        datasets: Vec<DatasetVersion>,
        catalogue_version: Option<String>,
    },
    /// Journal retention deleted the oldest sealed segments.
    JournalRetention {
        first_segment: u64,
        last_segment: u64,
        last_seq: u64,
        /// Hex of the hash chain head at the end of the last deleted segment.
        last_head: String,
        bytes: u64,
        reason: String,
    },
    /// The journal was reopened after a crash and its torn tail cut; or, `below_checkpoint`,
    /// damage was found among records that had been synced (docs/journal.md, "Recovery").
    JournalRecovered {
        segment: u64,
        offset: u64,
        bytes_cut: u64,
        reason: String,
        /// The cut removed records that had been synced: not a crash, damage.
        below_checkpoint: bool,
        /// How many synced records the cut removed.
        records_removed: u64,
        /// Where the damaged segment was kept, relative to the journal directory.
        #[serde(skip_serializing_if = "Option::is_none")]
        set_aside: Option<String>,
        /// The journal's id before; it goes on under a new one.
        #[serde(skip_serializing_if = "Option::is_none")]
        previous_journal_id: Option<String>,
    },
    /// Events observed but not journaled (e.g. the disk was full).
    JournalGap {
        events: u64,
        reason: String,
        from: String,
        until: String,
        #[serde(skip)]
        from_unix_ns: i64,
        #[serde(skip)]
        until_unix_ns: i64,
    },
}

impl Lifecycle {
    pub fn policy_in_force(p: &crate::policy::Policy) -> Self {
        Lifecycle::Policy {
            name: p.name.clone(),
            version: p.version.clone(),
            hash: p.hash.clone(),
            path: p.path.display().to_string(),
            datasets: p
                .datasets
                .iter()
                .map(|d| DatasetVersion {
                    kind: d.kind.key().to_string(),
                    version: d.version.clone(),
                    path: d.path.display().to_string(),
                })
                .collect(),
            catalogue_version: (!p.catalogue_version.is_empty())
                .then(|| p.catalogue_version.clone()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DatasetVersion {
    pub kind: String,
    pub version: String,
    pub path: String,
}

/// Destination address of a record. IPv4-mapped IPv6 addresses (an IPv6 socket talking to an
/// IPv4 host) are shown as the IPv4 address they are, so policies match them as such.
pub fn dst_ip(rec: &FlowRecord) -> IpAddr {
    ip_of(rec.family, &rec.dst_addr)
}

/// Who made a flow, in the terms an operator uses: the systemd unit, the container (runtime
/// and short id), the executable, or at least the task name. (Alerts and replay reports.)
pub fn workload_label(
    systemd_unit: Option<&str>,
    container_id: Option<&str>,
    container_runtime: Option<&str>,
    exe: Option<&str>,
    comm: &str,
) -> String {
    if let Some(u) = systemd_unit {
        return u.to_string();
    }
    if let Some(id) = container_id {
        return format!(
            "{} {}",
            container_runtime.unwrap_or("container"),
            &id[..id.len().min(12)]
        );
    }
    exe.unwrap_or(comm).to_string()
}

/// A destination as people read it: its first name (or address) and port.
pub fn destination_label(first_name: Option<&str>, ip: IpAddr, port: u16) -> String {
    match first_name {
        Some(n) => format!("{n}:{port}"),
        None if ip.is_ipv6() => format!("[{ip}]:{port}"),
        None => format!("{ip}:{port}"),
    }
}

impl FlowEvent {
    /// Who made the flow ([`workload_label`]): what alerts, folding and reports group by.
    pub fn workload(&self) -> String {
        workload_label(
            self.systemd_unit.as_deref(),
            self.container_id.as_deref(),
            self.container_runtime,
            self.exe.as_deref(),
            &self.comm,
        )
    }

    /// Where the flow went ([`destination_label`]).
    pub fn destination(&self) -> String {
        destination_label(
            self.names.first().map(String::as_str),
            self.dst_ip,
            self.dst_port,
        )
    }

    /// Records what the destination is called and how that was learned.
    pub fn name(&mut self, naming: crate::names::Naming) {
        self.names = naming.names;
        self.name_source = naming.source;
        self.name_conflict = naming.conflict;
        self.dns = naming.dns;
        self.sni = naming.sni;
        self.sni_unreadable = naming.sni_unreadable;
    }

    /// Judges this flow under `policy` and records the verdict with its reasoning.
    pub fn judge(&mut self, policy: &crate::policy::Policy) {
        let flow = crate::policy::Flow {
            ip: self.dst_ip,
            port: self.dst_port,
            dns: &self.dns,
            sni: self.sni.as_deref(),
            sni_unreadable: self.sni_unreadable.is_some(),
            exe: self.exe.as_deref(),
            interpreter: self.interpreter.as_deref(),
            ancestors: &self.ancestors,
            comm: &self.comm,
            cgroup: self.cgroup.as_deref(),
            container_id: self.container_id.as_deref(),
            uid: self.uid,
        };
        let verdict = policy.classify(&flow);
        self.verdict = Some(policy.explain(&flow, &verdict));
    }

    /// Builds the event of a decoded record. `kind` is the record's kind; `UdpRelease` records
    /// are not flows and are expanded by the pipeline instead.
    pub fn from_record(
        kind: EventKind,
        rec: &FlowRecord,
        id: &Identity,
        clock: &WallClock,
    ) -> Self {
        let process = &id.info;
        let workload = id.workload.as_deref().unwrap_or(&process.workload);
        let tcp = rec.protocol == IPPROTO_TCP;
        let is_close = kind == EventKind::Close;
        FlowEvent {
            ts: clock.rfc3339(rec.ts_ns),
            ts_unix_ns: clock.unix_ns(rec.ts_ns) as i64,
            kind,
            pid: rec.tgid,
            tgid: rec.tgid,
            tid: rec.pid,
            uid: rec.uid,
            gid: rec.gid,
            comm: comm_string(&rec.comm),
            exe: process.exe.clone(),
            cmdline: process.cmdline.clone(),
            exec_path: process.exec_path.clone(),
            interpreter: process.interpreter.clone(),
            ppid: process.ppid,
            parent_exe: id.parent_exe.clone(),
            ancestors: id.ancestors.clone(),
            identity: id.unknown.or(process.exec_raced.then_some("exec_raced")),
            cgroup_id: rec.cgroup_id,
            cgroup: workload.cgroup.clone(),
            container_id: workload.container_id.clone(),
            container_runtime: workload.container_runtime,
            pod_uid: workload.pod_uid.clone(),
            systemd_unit: workload.systemd_unit.clone(),
            cookie: rec.cookie,
            proto: if tcp { Proto::Tcp } else { Proto::Udp },
            family: if rec.family == AF_INET {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            dst_ip: dst_ip(rec),
            dst_port: rec.dst_port,
            src_port: (rec.src_port != 0).then_some(rec.src_port),
            bytes_sent: (tcp && is_close).then_some(rec.bytes_sent),
            bytes_received: (tcp && is_close).then_some(rec.bytes_received),
            count: (kind == EventKind::Send).then_some(u64::from(rec.count)),
            was_established: (tcp && is_close)
                .then_some(rec.flags & CLOSE_FLAG_WAS_ESTABLISHED != 0),
            owner_evicted: tcp && is_close && rec.flags & CLOSE_FLAG_OWNER_EVICTED != 0,
            names: Vec::new(),
            name_source: "none",
            name_conflict: false,
            dns: Vec::new(),
            sni: None,
            sni_unreadable: None,
            verdict: None,
            aggregated: None,
        }
    }
}

/// The event kind of a flow record kind; `None` for records that are not flow steps.
pub fn flow_kind(kind: RecordKind) -> Option<EventKind> {
    match kind {
        RecordKind::Connect => Some(EventKind::Connect),
        RecordKind::Send => Some(EventKind::Send),
        RecordKind::Established => Some(EventKind::Established),
        RecordKind::Close => Some(EventKind::Close),
        RecordKind::UdpRelease
        | RecordKind::DnsResponse
        | RecordKind::TlsClientHello
        | RecordKind::DnsQuery
        | RecordKind::DnsServed
        | RecordKind::Fork
        | RecordKind::Exec
        | RecordKind::Exit
        | RecordKind::Argv
        | RecordKind::Flood
        | RecordKind::Repeats => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use sovereign_agent_common::{AF_INET6, IPPROTO_UDP};

    use super::*;

    fn clock() -> WallClock {
        WallClock::from_offset(1_795_824_000_000_000_000)
    }

    #[test]
    fn tcp_close_json_has_bytes_and_names() {
        let mut rec = FlowRecord {
            kind: RecordKind::Close as u32,
            family: AF_INET,
            protocol: IPPROTO_TCP,
            flags: CLOSE_FLAG_WAS_ESTABLISHED,
            ts_ns: 5_000_000_000,
            pid: 101,
            tgid: 100,
            uid: 1000,
            gid: 1000,
            cgroup_id: 77,
            cookie: 9,
            dst_port: 443,
            src_port: 50000,
            bytes_sent: 1200,
            bytes_received: 3400,
            ..FlowRecord::default()
        };
        rec.dst_addr[..4].copy_from_slice(&[203, 0, 113, 7]);
        rec.comm[..4].copy_from_slice(b"curl");
        let info = crate::enrich::ProcessInfo {
            ppid: Some(99),
            exe: Some("/usr/bin/curl".into()),
            cmdline: Some("curl https://x".into()),
            ..Default::default()
        };
        let id = Identity {
            info: Arc::new(info),
            parent_exe: Some("/usr/bin/bash".into()),
            ancestors: vec!["/usr/bin/bash".into(), "/usr/lib/systemd/systemd".into()],
            unknown: None,
            workload: None,
        };
        let ev = FlowEvent::from_record(EventKind::Close, &rec, &id, &clock());
        let json: serde_json::Value = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["ts"], "2026-11-28T00:00:05Z");
        assert_eq!(json["kind"], "close");
        assert_eq!(json["pid"], 100);
        assert_eq!(json["tgid"], 100);
        assert_eq!(json["tid"], 101);
        assert_eq!(json["comm"], "curl");
        assert_eq!(json["exe"], "/usr/bin/curl");
        assert_eq!(json["ppid"], 99);
        assert_eq!(json["parent_exe"], "/usr/bin/bash");
        assert_eq!(json["ancestors"][1], "/usr/lib/systemd/systemd");
        assert_eq!(json["proto"], "tcp");
        assert_eq!(json["family"], "ipv4");
        assert_eq!(json["dst_ip"], "203.0.113.7");
        assert_eq!(json["dst_port"], 443);
        assert_eq!(json["src_port"], 50000);
        assert_eq!(json["bytes_sent"], 1200);
        assert_eq!(json["bytes_received"], 3400);
        assert_eq!(json["was_established"], true);
        assert!(json.get("count").is_none());
        assert_eq!(json["container_id"], serde_json::Value::Null);
    }

    #[test]
    fn udp_send_ipv6_and_mapped_addresses() {
        let mut rec = FlowRecord {
            kind: RecordKind::Send as u32,
            family: AF_INET6,
            protocol: IPPROTO_UDP,
            count: 1,
            dst_port: 53,
            ..FlowRecord::default()
        };
        rec.dst_addr = "2001:db8::53".parse::<Ipv6Addr>().unwrap().octets();
        let ev = FlowEvent::from_record(EventKind::Send, &rec, &Identity::default(), &clock());
        assert_eq!(ev.dst_ip.to_string(), "2001:db8::53");
        assert_eq!(ev.family, Family::Ipv6);
        assert_eq!(ev.proto, Proto::Udp);
        assert_eq!(ev.count, Some(1));
        assert_eq!(ev.src_port, None);
        assert_eq!(ev.bytes_sent, None);

        rec.dst_addr = "::ffff:192.0.2.1".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(dst_ip(&rec).to_string(), "192.0.2.1");
    }

    #[test]
    fn loss_event_json() {
        let ev = Event::Loss(LossEvent {
            ts: "2026-11-28T00:00:00Z".into(),
            ts_unix_ns: 1_795_824_000_000_000_000,
            kind: EventKind::Loss,
            lost: 12,
        });
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"ts":"2026-11-28T00:00:00Z","kind":"loss","lost":12}"#
        );
    }

    #[test]
    fn comm_stops_at_nul() {
        let mut c = [0u8; 16];
        c[..7].copy_from_slice(b"python3");
        assert_eq!(comm_string(&c), "python3");
        assert_eq!(comm_string(&[b'a'; 16]), "a".repeat(16));
    }
}
