//! Protobuf messages back to events, exactly as they were written; closed sets of strings are
//! mapped back to their static values, anything unknown to "unknown" rather than an error.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use sovereign_agent_proto::agent::v1 as pb;

use super::error::ConvertError;
use crate::{
    clock::rfc3339_from_unix_ns,
    event::{
        DatasetVersion, DnsRefusedEvent, Event, EventKind, Family, FloodEvent, FlowEvent,
        Lifecycle, LifecycleEvent, LossEvent, Proto, Suppressed,
    },
    names::DnsChain,
    policy::{Decision, Evidence, Explanation, PolicyRef, Severity},
};

fn ip_from_bytes(b: &[u8]) -> Result<IpAddr, ConvertError> {
    match b.len() {
        4 => Ok(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(b).expect("4 bytes"),
        ))),
        16 => Ok(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(b).expect("16 bytes"),
        ))),
        _ => Err(ConvertError::Invalid("address")),
    }
}

fn severity_from_proto(s: i32) -> Option<Severity> {
    match pb::Severity::try_from(s) {
        Ok(pb::Severity::Info) => Some(Severity::Info),
        Ok(pb::Severity::Low) => Some(Severity::Low),
        Ok(pb::Severity::Medium) => Some(Severity::Medium),
        Ok(pb::Severity::High) => Some(Severity::High),
        Ok(pb::Severity::Critical) => Some(Severity::Critical),
        _ => None,
    }
}

/// The `&'static str` of a known value (the event types use static strings for closed sets);
/// anything else becomes "unknown" rather than failing the whole record.
fn known(s: &str, values: &[&'static str]) -> &'static str {
    values
        .iter()
        .find(|v| **v == s)
        .copied()
        .unwrap_or("unknown")
}

const RUNTIMES: &[&str] = &[
    "docker",
    "containerd",
    "cri-o",
    "podman",
    "kubernetes",
    "unknown",
];
const NAME_SOURCES: &[&str] = &[
    "dns",
    "dns_untrusted",
    "sni",
    "dns+sni",
    "dns_untrusted+sni",
    "none",
];
const EVIDENCE_SOURCES: &[&str] = &[
    "cidr", "domain", "ai", "aws", "azure", "gcp", "oracle", "country", "asn", "cname",
];
const EVIDENCE_VIA: &[&str] = &["address", "dns", "dns_cname", "dns_untrusted", "sni"];
const FLOOD_SCOPES: &[&str] = &["process", "cgroup", "destination"];
const REFUSALS: &[&str] = &[
    "no_query",
    "wrong_question",
    "duplicate",
    "expired",
    "query_table_full",
    "answered_by_own_cgroup",
    "answered_by_watched_socket",
];
/// Why a process's facts are missing (enrich::processes).
const IDENTITY: &[&str] = &["exited_before_read", "exec_raced"];
/// Why a ClientHello could not be read (names::hello).
const SNI_UNREADABLE: &[&str] = &[
    "server name beyond the bytes copied",
    "split into more segments than are copied",
    "not a ClientHello",
    "connection ended before the ClientHello was complete",
    "length overflow",
    "server name list",
    "server name entry",
    "server name length",
    "server name characters",
];

pub fn from_proto(msg: pb::Event) -> Result<Event, ConvertError> {
    let ts_unix_ns = msg.ts_unix_ns;
    let ts = rfc3339_from_unix_ns(i128::from(ts_unix_ns));
    Ok(match msg.body.ok_or(ConvertError::Empty)? {
        pb::event::Body::Flow(f) => Event::Flow(Box::new(flow_from_proto(*f, ts, ts_unix_ns)?)),
        pb::event::Body::Loss(l) => Event::Loss(LossEvent {
            ts,
            ts_unix_ns,
            kind: EventKind::Loss,
            lost: l.lost,
        }),
        pb::event::Body::Lifecycle(l) => Event::Lifecycle(Box::new(LifecycleEvent {
            ts,
            ts_unix_ns,
            body: lifecycle_from_proto(l)?,
        })),
        pb::event::Body::Alert(a) => {
            let a = *a;
            let flow = a
                .flow
                .ok_or(ConvertError::Invalid("alert without its flow"))?;
            let flow_ts = rfc3339_from_unix_ns(i128::from(a.last_unix_ns));
            Event::Alert(Box::new(crate::event::AlertEvent {
                ts,
                ts_unix_ns,
                kind: "alert",
                severity: severity_from_proto(a.severity),
                rule: a.rule,
                workload: a.workload,
                destination: a.destination,
                count: a.count,
                first: rfc3339_from_unix_ns(i128::from(a.first_unix_ns)),
                last: flow_ts.clone(),
                first_unix_ns: a.first_unix_ns,
                last_unix_ns: a.last_unix_ns,
                flow: Box::new(flow_from_proto(flow, flow_ts, a.last_unix_ns)?),
            }))
        }
        pb::event::Body::Flood(f) => {
            let flow = f
                .flow
                .ok_or(ConvertError::Invalid("flood without its flow"))?;
            let flow_ts = rfc3339_from_unix_ns(i128::from(f.last_unix_ns));
            Event::Flood(Box::new(FloodEvent {
                ts,
                ts_unix_ns,
                kind: "flood",
                scope: known(&f.scope, FLOOD_SCOPES),
                suppressed: Suppressed {
                    tcp_connects: f.tcp_connects,
                    udp: f.udp,
                    dns_packets: f.dns_packets,
                    tls_segments: f.tls_segments,
                    process_records: f.process_records,
                },
                first: rfc3339_from_unix_ns(i128::from(f.first_unix_ns)),
                last: flow_ts.clone(),
                first_unix_ns: f.first_unix_ns,
                last_unix_ns: f.last_unix_ns,
                flow: Box::new(flow_from_proto(flow, flow_ts, f.last_unix_ns)?),
            }))
        }
        pb::event::Body::DnsRefused(d) => Event::DnsRefused(Box::new(DnsRefusedEvent {
            ts,
            ts_unix_ns,
            kind: "dns_refused",
            reason: known(&d.reason, REFUSALS),
            cgroup_id: d.cgroup_id,
            cgroup: d.cgroup.map(Arc::from),
            pid: d.pid,
            comm: d.comm,
            exe: d.exe.map(Arc::from),
            cookie: d.cookie,
            resolver: d.resolver,
            client_port: u16::try_from(d.client_port).map_err(|_| ConvertError::Invalid("port"))?,
            question: d.question,
            names: d.names,
            addresses: d
                .addresses
                .iter()
                .map(|a| ip_from_bytes(a))
                .collect::<Result<_, _>>()?,
            count: d.count,
        })),
    })
}

fn flow_from_proto(f: pb::Flow, ts: String, ts_unix_ns: i64) -> Result<FlowEvent, ConvertError> {
    let dst_ip =
        ip_from_bytes(&f.dst_ip).map_err(|_| ConvertError::Invalid("destination address"))?;
    Ok(FlowEvent {
        ts,
        ts_unix_ns,
        kind: match pb::FlowKind::try_from(f.kind) {
            Ok(pb::FlowKind::Connect) => EventKind::Connect,
            Ok(pb::FlowKind::Existing) => EventKind::Existing,
            Ok(pb::FlowKind::Refused) => EventKind::Refused,
            Ok(pb::FlowKind::Send) => EventKind::Send,
            Ok(pb::FlowKind::Established) => EventKind::Established,
            Ok(pb::FlowKind::Close) => EventKind::Close,
            _ => return Err(ConvertError::Invalid("flow kind")),
        },
        pid: f.pid,
        tgid: f.pid,
        tid: f.tid,
        uid: f.uid,
        gid: f.gid,
        comm: f.comm,
        exe: f.exe.map(Arc::from),
        cmdline: f.cmdline.map(Arc::from),
        cgroup_id: f.cgroup_id,
        cgroup: f.cgroup.map(Arc::from),
        container_id: f.container_id.map(Arc::from),
        container_runtime: f.container_runtime.as_deref().map(|r| known(r, RUNTIMES)),
        pod_uid: f.pod_uid.map(Arc::from),
        systemd_unit: f.systemd_unit.map(Arc::from),
        cookie: f.cookie,
        proto: match pb::Protocol::try_from(f.proto) {
            Ok(pb::Protocol::Tcp) => Proto::Tcp,
            Ok(pb::Protocol::Udp) => Proto::Udp,
            _ => return Err(ConvertError::Invalid("protocol")),
        },
        family: match pb::Family::try_from(f.family) {
            Ok(pb::Family::Ipv4) => Family::Ipv4,
            Ok(pb::Family::Ipv6) => Family::Ipv6,
            _ => return Err(ConvertError::Invalid("address family")),
        },
        dst_ip,
        dst_port: u16::try_from(f.dst_port).map_err(|_| ConvertError::Invalid("port"))?,
        src_port: f.src_port.and_then(|p| u16::try_from(p).ok()),
        bytes_sent: f.bytes_sent,
        bytes_received: f.bytes_received,
        count: f.count,
        was_established: f.was_established,
        owner_evicted: f.owner_evicted,
        names: f.names,
        name_source: known(&f.name_source, NAME_SOURCES),
        name_conflict: f.name_conflict,
        dns: f
            .dns
            .into_iter()
            .map(|c| DnsChain {
                names: c.names,
                resolver: c.resolver,
                verified: c.verified,
            })
            .collect(),
        sni: f.sni,
        sni_unreadable: f
            .sni_unreadable
            .as_deref()
            .map(|w| known(w, SNI_UNREADABLE)),
        exec_path: f.exec_path.map(Arc::from),
        interpreter: f.interpreter.map(Arc::from),
        ppid: f.ppid,
        parent_exe: f.parent_exe.map(Arc::from),
        ancestors: f.ancestors.into_iter().map(Arc::from).collect(),
        identity: f.identity.as_deref().map(|w| known(w, IDENTITY)),
        verdict: f.verdict.map(verdict_from_proto).transpose()?,
        aggregated: f.aggregated.map(|a| crate::event::Aggregated {
            flows: a.flows,
            first: rfc3339_from_unix_ns(i128::from(a.first_unix_ns)),
            first_unix_ns: a.first_unix_ns,
        }),
    })
}

fn verdict_from_proto(v: pb::Verdict) -> Result<Explanation, ConvertError> {
    let policy = v.policy.unwrap_or_default();
    Ok(Explanation {
        decision: match pb::Decision::try_from(v.decision) {
            Ok(pb::Decision::Allow) => Decision::Allow,
            Ok(pb::Decision::Violation) => Decision::Violation,
            _ => return Err(ConvertError::Invalid("decision")),
        },
        severity: match pb::Severity::try_from(v.severity) {
            Ok(pb::Severity::Info) => Some(Severity::Info),
            Ok(pb::Severity::Low) => Some(Severity::Low),
            Ok(pb::Severity::Medium) => Some(Severity::Medium),
            Ok(pb::Severity::High) => Some(Severity::High),
            Ok(pb::Severity::Critical) => Some(Severity::Critical),
            _ => None,
        },
        rule: v.rule,
        zones: v.zones,
        matched_zones: v.matched_zones,
        evidence: v
            .evidence
            .into_iter()
            .map(|e| Evidence {
                zone: e.zone,
                decisive: e.decisive,
                source: known(&e.source, EVIDENCE_SOURCES),
                // Recorded before names carried their strength: an address fact or a name.
                via: if e.via.is_empty() {
                    "unknown"
                } else {
                    known(&e.via, EVIDENCE_VIA)
                },
                name: e.name,
                detail: e.detail,
            })
            .collect(),
        destination: v.destination,
        weak: v
            .weak
            .iter()
            .map(|w| {
                crate::policy::weak::ALL
                    .iter()
                    .find(|(_, name)| name == w)
                    .map_or("unknown", |(_, name)| *name)
            })
            .collect(),
        policy: PolicyRef {
            name: policy.name,
            version: policy.version,
            hash: policy.hash,
        },
    })
}

fn lifecycle_from_proto(l: pb::Lifecycle) -> Result<Lifecycle, ConvertError> {
    use pb::lifecycle::Kind;
    Ok(match l.kind.ok_or(ConvertError::Empty)? {
        Kind::Start(s) => Lifecycle::AgentStart {
            version: s.version,
            binary_hash: s.binary_hash,
            config_hash: s.config_hash,
            config_path: (!s.config_path.is_empty()).then_some(s.config_path),
            hostname: s.hostname,
            cgroup: s.cgroup,
            hooks: s.hooks,
            hooks_failed: s.hooks_failed,
            pid: s.pid,
            not_reported: s.not_reported,
        },
        Kind::Stop(s) => Lifecycle::AgentStop {
            reason: s.reason,
            flows: s.flows,
            kernel_losses: s.kernel_losses,
            not_journaled: s.not_journaled,
        },
        Kind::Policy(p) => Lifecycle::Policy {
            name: p.name,
            version: p.version,
            hash: p.hash,
            path: p.path,
            datasets: p
                .datasets
                .into_iter()
                .map(|d| DatasetVersion {
                    kind: d.kind,
                    version: d.version,
                    path: d.path,
                })
                .collect(),
            catalogue_version: (!p.catalogue_version.is_empty()).then_some(p.catalogue_version),
        },
        Kind::Retention(r) => Lifecycle::JournalRetention {
            first_segment: r.first_segment,
            last_segment: r.last_segment,
            last_seq: r.last_seq,
            last_head: crate::journal::format::hex(&r.last_head),
            bytes: r.bytes,
            reason: r.reason,
        },
        Kind::Recovered(r) => Lifecycle::JournalRecovered {
            segment: r.segment,
            offset: r.offset,
            bytes_cut: r.bytes_cut,
            reason: r.reason,
            below_checkpoint: r.below_checkpoint,
            records_removed: r.records_removed,
            set_aside: (!r.set_aside.is_empty()).then_some(r.set_aside),
            previous_journal_id: (!r.previous_journal_id.is_empty())
                .then_some(r.previous_journal_id),
        },
        Kind::Gap(g) => Lifecycle::JournalGap {
            events: g.events,
            reason: g.reason,
            from: rfc3339_from_unix_ns(i128::from(g.from_unix_ns)),
            until: rfc3339_from_unix_ns(i128::from(g.until_unix_ns)),
            from_unix_ns: g.from_unix_ns,
            until_unix_ns: g.until_unix_ns,
        },
    })
}
