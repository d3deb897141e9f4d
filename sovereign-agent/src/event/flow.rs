//! The flow event (connect, send, established, close, existing) and the flows the ceiling
//! folds; who made it and where it went, as labels for alerts and reports.
use std::{net::IpAddr, sync::Arc};

use serde::Serialize;
use sovereign_agent_common::{
    comm_string, ip_of, FlowRecord, AF_INET, CLOSE_FLAG_OWNER_EVICTED, CLOSE_FLAG_WAS_ESTABLISHED,
    IPPROTO_TCP,
};

use super::kind::*;
use crate::{clock::WallClock, enrich::processes::Identity};

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
