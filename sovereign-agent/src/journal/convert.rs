//! Events to and from their protobuf form (`sovereign.agent.v1.Event`), the journal's
//! record encoding. Decoding gives back exactly the event that was written, so `journal
//! export` prints the same JSON as the live output.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use prost::Message;
use sovereign_agent_proto::agent::v1 as pb;

use crate::{
    clock::rfc3339_from_unix_ns,
    event::{
        DatasetVersion, DnsRefusedEvent, Event, EventKind, Family, FloodEvent, FlowEvent,
        Lifecycle, LifecycleEvent, LossEvent, Proto, Suppressed,
    },
    names::DnsChain,
    policy::{Decision, Evidence, Explanation, PolicyRef, Severity},
};

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("not a valid record: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("record has no body")]
    Empty,
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Encodes `event` (its `seq` is the frame's, not stored here) into `out`.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    match event {
        Event::Flow(f) => encode_flow_event(f, out),
        other => to_proto(other, 0)
            .encode(out)
            .expect("a Vec grows as needed"),
    }
}

pub fn decode(payload: &[u8]) -> Result<Event, ConvertError> {
    from_proto(pb::Event::decode(payload)?)
}

/// Whether a record's payload is a lifecycle record, without decoding it: the top-level
/// field numbers are scanned (verification needs retention records only, and must be fast).
pub fn is_lifecycle(payload: &[u8]) -> bool {
    let mut b = payload;
    while !b.is_empty() {
        let Some((key, rest)) = varint(b) else {
            return false;
        };
        let (field, wire) = (key >> 3, key & 7);
        if field == 12 {
            return true;
        }
        b = match wire {
            0 => match varint(rest) {
                Some((_, r)) => r,
                None => return false,
            },
            1 => rest.get(8..).unwrap_or(&[]),
            2 => match varint(rest) {
                Some((len, r)) => r.get(len as usize..).unwrap_or(&[]),
                None => return false,
            },
            5 => rest.get(4..).unwrap_or(&[]),
            _ => return false,
        };
    }
    false
}

fn varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, &b[i + 1..]));
        }
    }
    None
}

pub fn to_proto(event: &Event, seq: u64) -> pb::Event {
    let (ts, body) = match event {
        Event::Flow(f) => (
            f.ts_unix_ns,
            pb::event::Body::Flow(Box::new(flow_to_proto(f))),
        ),
        Event::Loss(l) => (
            l.ts_unix_ns,
            pb::event::Body::Loss(pb::Loss { lost: l.lost }),
        ),
        Event::Lifecycle(l) => (
            l.ts_unix_ns,
            pb::event::Body::Lifecycle(lifecycle_to_proto(&l.body)),
        ),
        Event::Alert(a) => (
            a.ts_unix_ns,
            pb::event::Body::Alert(Box::new(pb::Alert {
                flow: Some(flow_to_proto(&a.flow)),
                count: a.count,
                first_unix_ns: a.first_unix_ns,
                last_unix_ns: a.last_unix_ns,
                workload: a.workload.clone(),
                destination: a.destination.clone(),
                rule: a.rule.clone(),
                severity: severity_to_proto(a.severity) as i32,
            })),
        ),
        Event::DnsRefused(d) => (
            d.ts_unix_ns,
            pb::event::Body::DnsRefused(pb::DnsRefused {
                cgroup_id: d.cgroup_id,
                cookie: d.cookie,
                resolver: d.resolver.clone(),
                client_port: d.client_port.into(),
                reason: d.reason.to_string(),
                question: d.question.clone(),
                names: d.names.clone(),
                addresses: d.addresses.iter().map(ip_bytes).collect(),
                count: d.count,
                pid: d.pid,
                comm: d.comm.clone(),
                exe: d.exe.clone(),
                cgroup: d.cgroup.clone(),
            }),
        ),
        Event::Flood(f) => (
            f.ts_unix_ns,
            pb::event::Body::Flood(pb::Flood {
                flow: Some(flow_to_proto(&f.flow)),
                scope: f.scope.to_string(),
                tcp_connects: f.suppressed.tcp_connects,
                udp: f.suppressed.udp,
                dns_packets: f.suppressed.dns_packets,
                tls_segments: f.suppressed.tls_segments,
                first_unix_ns: f.first_unix_ns,
                last_unix_ns: f.last_unix_ns,
            }),
        ),
    };
    pb::Event {
        seq,
        ts_unix_ns: ts,
        body: Some(body),
        agent_id: String::new(),
        agent_seq: 0,
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

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

fn flow_to_proto(f: &FlowEvent) -> pb::Flow {
    pb::Flow {
        kind: match f.kind {
            EventKind::Connect => pb::FlowKind::Connect,
            EventKind::Existing => pb::FlowKind::Existing,
            EventKind::Send => pb::FlowKind::Send,
            EventKind::Established => pb::FlowKind::Established,
            EventKind::Close | EventKind::Loss => pb::FlowKind::Close,
        } as i32,
        pid: f.pid,
        tid: f.tid,
        uid: f.uid,
        gid: f.gid,
        comm: f.comm.clone(),
        exe: f.exe.clone(),
        cmdline: f.cmdline.clone(),
        cgroup_id: f.cgroup_id,
        cgroup: f.cgroup.clone(),
        container_id: f.container_id.clone(),
        container_runtime: f.container_runtime.map(str::to_string),
        pod_uid: f.pod_uid.clone(),
        systemd_unit: f.systemd_unit.clone(),
        cookie: f.cookie,
        proto: match f.proto {
            Proto::Tcp => pb::Protocol::Tcp,
            Proto::Udp => pb::Protocol::Udp,
        } as i32,
        family: match f.family {
            Family::Ipv4 => pb::Family::Ipv4,
            Family::Ipv6 => pb::Family::Ipv6,
        } as i32,
        dst_ip: ip_bytes(&f.dst_ip),
        dst_port: f.dst_port.into(),
        src_port: f.src_port.map(u32::from),
        bytes_sent: f.bytes_sent,
        bytes_received: f.bytes_received,
        count: f.count,
        was_established: f.was_established,
        names: f.names.clone(),
        name_source: f.name_source.to_string(),
        name_conflict: f.name_conflict,
        verdict: f.verdict.as_ref().map(verdict_to_proto),
        dns: f
            .dns
            .iter()
            .map(|c| pb::DnsChain {
                names: c.names.clone(),
                resolver: c.resolver.clone(),
                verified: c.verified,
            })
            .collect(),
        sni: f.sni.clone(),
        sni_unreadable: f.sni_unreadable.map(str::to_string),
        exec_path: f.exec_path.clone(),
        interpreter: f.interpreter.clone(),
        ppid: f.ppid,
        parent_exe: f.parent_exe.clone(),
        ancestors: f.ancestors.clone(),
        identity: f.identity.map(str::to_string),
        aggregated: f.aggregated.as_ref().map(|a| pb::Aggregated {
            flows: a.flows,
            first_unix_ns: a.first_unix_ns,
        }),
    }
}

fn verdict_to_proto(v: &Explanation) -> pb::Verdict {
    pb::Verdict {
        decision: match v.decision {
            Decision::Allow => pb::Decision::Allow,
            Decision::Violation => pb::Decision::Violation,
        } as i32,
        severity: severity_to_proto(v.severity) as i32,
        rule: v.rule.clone(),
        zones: v.zones.clone(),
        matched_zones: v.matched_zones.clone(),
        evidence: v
            .evidence
            .iter()
            .map(|e| pb::Evidence {
                zone: e.zone.clone(),
                decisive: e.decisive,
                source: e.source.to_string(),
                detail: e.detail.clone(),
                via: e.via.to_string(),
                name: e.name.clone(),
            })
            .collect(),
        destination: v.destination.clone(),
        weak: v.weak.iter().map(|w| w.to_string()).collect(),
        policy: Some(pb::PolicyRef {
            name: v.policy.name.clone(),
            version: v.policy.version.clone(),
            hash: v.policy.hash.clone(),
        }),
    }
}

fn severity_to_proto(s: Option<Severity>) -> pb::Severity {
    match s {
        None => pb::Severity::Unspecified,
        Some(Severity::Info) => pb::Severity::Info,
        Some(Severity::Low) => pb::Severity::Low,
        Some(Severity::Medium) => pb::Severity::Medium,
        Some(Severity::High) => pb::Severity::High,
        Some(Severity::Critical) => pb::Severity::Critical,
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

fn lifecycle_to_proto(l: &Lifecycle) -> pb::Lifecycle {
    use pb::lifecycle::Kind;
    let kind = match l.clone() {
        Lifecycle::AgentStart {
            version,
            binary_hash,
            config_hash,
            config_path,
            hostname,
            cgroup,
            hooks,
            hooks_failed,
            pid,
        } => Kind::Start(pb::AgentStart {
            version,
            binary_hash,
            config_hash,
            config_path: config_path.unwrap_or_default(),
            hostname,
            cgroup,
            hooks,
            hooks_failed,
            pid,
        }),
        Lifecycle::AgentStop {
            reason,
            flows,
            kernel_losses,
            not_journaled,
        } => Kind::Stop(pb::AgentStop {
            reason,
            flows,
            kernel_losses,
            not_journaled,
        }),
        Lifecycle::Policy {
            name,
            version,
            hash,
            path,
            datasets,
            catalogue_version,
        } => Kind::Policy(pb::PolicyInForce {
            name,
            version,
            hash,
            path,
            datasets: datasets
                .into_iter()
                .map(|d| pb::Dataset {
                    kind: d.kind,
                    version: d.version,
                    path: d.path,
                })
                .collect(),
            catalogue_version: catalogue_version.unwrap_or_default(),
        }),
        Lifecycle::JournalRetention {
            first_segment,
            last_segment,
            last_seq,
            last_head,
            bytes,
            reason,
        } => Kind::Retention(pb::RetentionDeleted {
            first_segment,
            last_segment,
            last_seq,
            last_head: super::format::unhex(&last_head).unwrap_or_default(),
            bytes,
            reason,
        }),
        Lifecycle::JournalRecovered {
            segment,
            offset,
            bytes_cut,
            reason,
        } => Kind::Recovered(pb::JournalRecovered {
            segment,
            offset,
            bytes_cut,
            reason,
        }),
        Lifecycle::JournalGap {
            events,
            reason,
            from_unix_ns,
            until_unix_ns,
            ..
        } => Kind::Gap(pb::JournalGap {
            events,
            reason,
            from_unix_ns,
            until_unix_ns,
        }),
    };
    pb::Lifecycle { kind: Some(kind) }
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
const FLOOD_SCOPES: &[&str] = &["process", "cgroup"];
const REFUSALS: &[&str] = &[
    "no_query",
    "wrong_question",
    "duplicate",
    "expired",
    "query_table_full",
    "answered_by_own_cgroup",
];
/// Why a process's facts are missing (enrich::table).
const IDENTITY: &[&str] = &["exited_before_read"];
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
    let ts = rfc3339_from_unix_ns(ts_unix_ns as i128);
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
            let flow_ts = rfc3339_from_unix_ns(a.last_unix_ns as i128);
            Event::Alert(Box::new(crate::event::AlertEvent {
                ts,
                ts_unix_ns,
                kind: "alert",
                severity: severity_from_proto(a.severity),
                rule: a.rule,
                workload: a.workload,
                destination: a.destination,
                count: a.count,
                first: rfc3339_from_unix_ns(a.first_unix_ns as i128),
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
            let flow_ts = rfc3339_from_unix_ns(f.last_unix_ns as i128);
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
                },
                first: rfc3339_from_unix_ns(f.first_unix_ns as i128),
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
            cgroup: d.cgroup,
            pid: d.pid,
            comm: d.comm,
            exe: d.exe,
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
        exe: f.exe,
        cmdline: f.cmdline,
        cgroup_id: f.cgroup_id,
        cgroup: f.cgroup,
        container_id: f.container_id,
        container_runtime: f.container_runtime.as_deref().map(|r| known(r, RUNTIMES)),
        pod_uid: f.pod_uid,
        systemd_unit: f.systemd_unit,
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
        exec_path: f.exec_path,
        interpreter: f.interpreter,
        ppid: f.ppid,
        parent_exe: f.parent_exe,
        ancestors: f.ancestors,
        identity: f.identity.as_deref().map(|w| known(w, IDENTITY)),
        verdict: f.verdict.map(verdict_from_proto).transpose()?,
        aggregated: f.aggregated.map(|a| crate::event::Aggregated {
            flows: a.flows,
            first: rfc3339_from_unix_ns(a.first_unix_ns as i128),
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
                    .map(|(_, name)| *name)
                    .unwrap_or("unknown")
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
            last_head: super::format::hex(&r.last_head),
            bytes: r.bytes,
            reason: r.reason,
        },
        Kind::Recovered(r) => Lifecycle::JournalRecovered {
            segment: r.segment,
            offset: r.offset,
            bytes_cut: r.bytes_cut,
            reason: r.reason,
        },
        Kind::Gap(g) => Lifecycle::JournalGap {
            events: g.events,
            reason: g.reason,
            from: rfc3339_from_unix_ns(g.from_unix_ns as i128),
            until: rfc3339_from_unix_ns(g.until_unix_ns as i128),
            from_unix_ns: g.from_unix_ns,
            until_unix_ns: g.until_unix_ns,
        },
    })
}

// ---------------------------------------------------------------------------------------
// The hot paths: flows are encoded straight from the event (no intermediate message, no
// string copies) and decoded for replay as borrowed views. Both produce and read exactly the
// bytes prost does for `sovereign.agent.v1.Event` (tested below against prost itself).

mod wire {
    pub const VARINT: u64 = 0;
    pub const LEN: u64 = 2;

    pub fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    pub fn key(tag: u32, wire: u64, out: &mut Vec<u8>) {
        varint(((tag as u64) << 3) | wire, out);
    }
    /// A scalar field with proto3 semantics: nothing for the default value.
    pub fn uint(tag: u32, v: u64, out: &mut Vec<u8>) {
        if v != 0 {
            key(tag, VARINT, out);
            varint(v, out);
        }
    }
    /// An `optional` scalar: present whenever set, even to zero.
    pub fn opt_uint(tag: u32, v: Option<u64>, out: &mut Vec<u8>) {
        if let Some(v) = v {
            key(tag, VARINT, out);
            varint(v, out);
        }
    }
    pub fn bytes(tag: u32, b: &[u8], out: &mut Vec<u8>) {
        key(tag, LEN, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }
    pub fn str(tag: u32, s: &str, out: &mut Vec<u8>) {
        if !s.is_empty() {
            bytes(tag, s.as_bytes(), out);
        }
    }
    pub fn opt_str(tag: u32, s: Option<&str>, out: &mut Vec<u8>) {
        if let Some(s) = s {
            bytes(tag, s.as_bytes(), out);
        }
    }
    /// A nested message: written to the end of `out`, then its key and length are put in
    /// front of it (a small move instead of computing every length twice).
    pub fn message(tag: u32, out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
        let start = out.len();
        body(out);
        let len = out.len() - start;
        let mut head = Vec::with_capacity(6);
        key(tag, LEN, &mut head);
        varint(len as u64, &mut head);
        out.splice(start..start, head);
    }
}

fn encode_flow(f: &FlowEvent, out: &mut Vec<u8>) {
    use wire::*;
    let kind = match f.kind {
        EventKind::Connect => pb::FlowKind::Connect,
        EventKind::Existing => pb::FlowKind::Existing,
        EventKind::Send => pb::FlowKind::Send,
        EventKind::Established => pb::FlowKind::Established,
        EventKind::Close | EventKind::Loss => pb::FlowKind::Close,
    };
    uint(1, kind as u64, out);
    uint(2, f.pid.into(), out);
    uint(3, f.tid.into(), out);
    uint(4, f.uid.into(), out);
    uint(5, f.gid.into(), out);
    str(6, &f.comm, out);
    opt_str(7, f.exe.as_deref(), out);
    opt_str(8, f.cmdline.as_deref(), out);
    uint(9, f.cgroup_id, out);
    opt_str(10, f.cgroup.as_deref(), out);
    opt_str(11, f.container_id.as_deref(), out);
    opt_str(12, f.container_runtime, out);
    opt_str(13, f.pod_uid.as_deref(), out);
    opt_str(14, f.systemd_unit.as_deref(), out);
    uint(15, f.cookie, out);
    let proto = match f.proto {
        Proto::Tcp => pb::Protocol::Tcp,
        Proto::Udp => pb::Protocol::Udp,
    };
    uint(16, proto as u64, out);
    let family = match f.family {
        Family::Ipv4 => pb::Family::Ipv4,
        Family::Ipv6 => pb::Family::Ipv6,
    };
    uint(17, family as u64, out);
    match f.dst_ip {
        IpAddr::V4(a) => bytes(18, &a.octets(), out),
        IpAddr::V6(a) => bytes(18, &a.octets(), out),
    }
    uint(19, f.dst_port.into(), out);
    opt_uint(20, f.src_port.map(u64::from), out);
    opt_uint(21, f.bytes_sent, out);
    opt_uint(22, f.bytes_received, out);
    opt_uint(23, f.count, out);
    opt_uint(24, f.was_established.map(u64::from), out);
    for n in &f.names {
        bytes(25, n.as_bytes(), out);
    }
    str(26, f.name_source, out);
    uint(27, f.name_conflict.into(), out);
    if let Some(v) = &f.verdict {
        message(28, out, |out| {
            let decision = match v.decision {
                Decision::Allow => pb::Decision::Allow,
                Decision::Violation => pb::Decision::Violation,
            };
            uint(1, decision as u64, out);
            let severity = match v.severity {
                None => pb::Severity::Unspecified,
                Some(Severity::Info) => pb::Severity::Info,
                Some(Severity::Low) => pb::Severity::Low,
                Some(Severity::Medium) => pb::Severity::Medium,
                Some(Severity::High) => pb::Severity::High,
                Some(Severity::Critical) => pb::Severity::Critical,
            };
            uint(2, severity as u64, out);
            str(3, &v.rule, out);
            for z in &v.zones {
                bytes(4, z.as_bytes(), out);
            }
            for z in &v.matched_zones {
                bytes(5, z.as_bytes(), out);
            }
            for e in &v.evidence {
                message(6, out, |out| {
                    str(1, &e.zone, out);
                    uint(2, e.decisive.into(), out);
                    str(3, e.source, out);
                    str(4, &e.detail, out);
                    str(5, e.via, out);
                    opt_str(6, e.name.as_deref(), out);
                });
            }
            for d in &v.destination {
                bytes(7, d.as_bytes(), out);
            }
            for w in &v.weak {
                bytes(8, w.as_bytes(), out);
            }
            message(9, out, |out| {
                str(1, &v.policy.name, out);
                str(2, &v.policy.version, out);
                str(3, &v.policy.hash, out);
            });
        });
    }
    for c in &f.dns {
        message(29, out, |out| {
            for n in &c.names {
                bytes(1, n.as_bytes(), out);
            }
            str(2, &c.resolver, out);
            uint(3, c.verified.into(), out);
        });
    }
    opt_str(30, f.sni.as_deref(), out);
    opt_str(31, f.sni_unreadable, out);
    opt_str(32, f.exec_path.as_deref(), out);
    opt_uint(33, f.ppid.map(u64::from), out);
    opt_str(34, f.parent_exe.as_deref(), out);
    for a in &f.ancestors {
        bytes(35, a.as_bytes(), out);
    }
    opt_str(36, f.identity, out);
    opt_str(37, f.interpreter.as_deref(), out);
    if let Some(a) = &f.aggregated {
        message(38, out, |out| {
            uint(1, a.flows, out);
            if a.first_unix_ns != 0 {
                key(2, VARINT, out);
                varint(a.first_unix_ns as u64, out);
            }
        });
    }
}

/// Encodes a flow event as an `Event` record, without building the message first.
fn encode_flow_event(f: &FlowEvent, out: &mut Vec<u8>) {
    if f.ts_unix_ns != 0 {
        wire::key(2, wire::VARINT, out);
        wire::varint(f.ts_unix_ns as u64, out);
    }
    wire::message(10, out, |out| encode_flow(f, out));
}

/// A protobuf reader over borrowed bytes: (field, wire type, value) at a time.
struct Fields<'a>(&'a [u8]);

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), ConvertError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let bad = || Some(Err(ConvertError::Invalid("protobuf framing")));
        let Some((key, rest)) = varint(self.0) else {
            return bad();
        };
        let field = (key >> 3) as u32;
        let (value, rest) = match key & 7 {
            0 => match varint(rest) {
                Some((v, r)) => (Value::Varint(v), r),
                None => return bad(),
            },
            1 => match rest.get(8..) {
                Some(r) => (Value::Other, r),
                None => return bad(),
            },
            2 => match varint(rest) {
                Some((len, r)) if (len as usize) <= r.len() => {
                    (Value::Bytes(&r[..len as usize]), &r[len as usize..])
                }
                _ => return bad(),
            },
            5 => match rest.get(4..) {
                Some(r) => (Value::Other, r),
                None => return bad(),
            },
            _ => return bad(),
        };
        self.0 = rest;
        Some(Ok((field, value)))
    }
}

fn utf8(b: &[u8]) -> Result<&str, ConvertError> {
    std::str::from_utf8(b).map_err(|_| ConvertError::Invalid("UTF-8 string"))
}

/// What replay needs of a recorded flow, borrowed from the record's bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowView<'a> {
    pub ts_unix_ns: i64,
    pub pid: u32,
    pub uid: u32,
    pub cookie: u64,
    pub comm: &'a str,
    pub exe: Option<&'a str>,
    pub interpreter: Option<&'a str>,
    pub cgroup: Option<&'a str>,
    pub container_id: Option<&'a str>,
    pub container_runtime: Option<&'a str>,
    pub systemd_unit: Option<&'a str>,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: u16,
    pub names: Vec<String>,
    pub name_source: &'a str,
    pub name_conflict: bool,
    pub dns: Vec<DnsChain>,
    pub sni: Option<&'a str>,
    pub sni_unreadable: bool,
    /// Executables of the process's ancestors, parent first.
    pub ancestors: Vec<String>,
    /// The SNI of a record written before `sni` was a field of its own.
    pub legacy_sni: Option<String>,
    pub verdict: Option<VerdictView<'a>>,
}

impl FlowView<'_> {
    /// The connection's SNI, from either kind of record.
    pub fn sni(&self) -> Option<&str> {
        self.sni.or(self.legacy_sni.as_deref())
    }

    /// Records written before names carried their evidence have only `names` and
    /// `name_source`: their DNS names become one chain of claims (they were never verified),
    /// their SNI (when it can be told apart) the SNI.
    fn legacy_names(&mut self) {
        if !self.dns.is_empty() || self.sni.is_some() || self.names.is_empty() {
            return;
        }
        let mut dns = self.names.clone();
        let sni = match self.name_source {
            "sni" => dns.pop(),
            "dns+sni" if self.name_conflict => dns.pop(),
            _ => None,
        };
        if !dns.is_empty() {
            self.dns.push(DnsChain {
                names: dns,
                resolver: String::new(),
                verified: false,
            });
        }
        self.legacy_sni = sni;
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerdictView<'a> {
    pub violation: bool,
    pub rule: &'a str,
    pub policy_name: &'a str,
    pub policy_version: &'a str,
    pub policy_hash: &'a str,
}

/// The flow of a record, if it is one (`Ok(None)` for loss and lifecycle records).
pub fn flow_view(payload: &[u8]) -> Result<Option<FlowView<'_>>, ConvertError> {
    // Protobuf semantics, as the full decoder applies them: the last member of the `body`
    // oneof wins, and a message field that occurs more than once is the merge of all its
    // occurrences in order. Recorded events never repeat a field, but replay of a crafted or
    // damaged record must judge the same flow `journal export` shows.
    let mut ts = 0i64;
    let mut flow_parts: Vec<&[u8]> = Vec::new();
    let mut body_is_flow = false;
    for field in Fields(payload) {
        match field? {
            (2, Value::Varint(v)) => ts = v as i64,
            (10, Value::Bytes(b)) => {
                if !body_is_flow {
                    flow_parts.clear();
                }
                body_is_flow = true;
                flow_parts.push(b);
            }
            (11..=14, _) => body_is_flow = false,
            _ => {}
        }
    }
    if !body_is_flow {
        return Ok(None);
    }
    let mut v = FlowView {
        ts_unix_ns: ts,
        ..Default::default()
    };
    for field in flow_parts.into_iter().flat_map(Fields) {
        match field? {
            (2, Value::Varint(x)) => v.pid = x as u32,
            (4, Value::Varint(x)) => v.uid = x as u32,
            (6, Value::Bytes(s)) => v.comm = utf8(s)?,
            (7, Value::Bytes(s)) => v.exe = Some(utf8(s)?),
            (37, Value::Bytes(s)) => v.interpreter = Some(utf8(s)?),
            (10, Value::Bytes(s)) => v.cgroup = Some(utf8(s)?),
            (11, Value::Bytes(s)) => v.container_id = Some(utf8(s)?),
            (12, Value::Bytes(s)) => v.container_runtime = Some(utf8(s)?),
            (14, Value::Bytes(s)) => v.systemd_unit = Some(utf8(s)?),
            (15, Value::Varint(x)) => v.cookie = x,
            (18, Value::Bytes(a)) => {
                v.dst_ip = Some(match a.len() {
                    4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(a).unwrap())),
                    16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(a).unwrap())),
                    _ => return Err(ConvertError::Invalid("destination address")),
                })
            }
            (19, Value::Varint(x)) => {
                v.dst_port = u16::try_from(x).map_err(|_| ConvertError::Invalid("port"))?
            }
            (25, Value::Bytes(s)) => v.names.push(utf8(s)?.to_string()),
            (26, Value::Bytes(s)) => v.name_source = utf8(s)?,
            (27, Value::Varint(x)) => v.name_conflict = x != 0,
            (29, Value::Bytes(cb)) => {
                let mut chain = DnsChain {
                    names: Vec::new(),
                    resolver: String::new(),
                    verified: false,
                };
                for f in Fields(cb) {
                    match f? {
                        (1, Value::Bytes(s)) => chain.names.push(utf8(s)?.to_string()),
                        (2, Value::Bytes(s)) => chain.resolver = utf8(s)?.to_string(),
                        (3, Value::Varint(x)) => chain.verified = x != 0,
                        _ => {}
                    }
                }
                v.dns.push(chain);
            }
            (30, Value::Bytes(s)) => v.sni = Some(utf8(s)?),
            (31, Value::Bytes(_)) => v.sni_unreadable = true,
            (35, Value::Bytes(s)) => v.ancestors.push(utf8(s)?.to_string()),
            (28, Value::Bytes(vb)) => {
                let mut verdict = v.verdict.take().unwrap_or_default();
                for f in Fields(vb) {
                    match f? {
                        (1, Value::Varint(d)) => {
                            verdict.violation = d == pb::Decision::Violation as u64
                        }
                        (3, Value::Bytes(s)) => verdict.rule = utf8(s)?,
                        (9, Value::Bytes(pbytes)) => {
                            for pf in Fields(pbytes) {
                                match pf? {
                                    (1, Value::Bytes(s)) => verdict.policy_name = utf8(s)?,
                                    (2, Value::Bytes(s)) => verdict.policy_version = utf8(s)?,
                                    (3, Value::Bytes(s)) => verdict.policy_hash = utf8(s)?,
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
                v.verdict = Some(verdict);
            }
            _ => {}
        }
    }
    if v.dst_ip.is_none() {
        return Err(ConvertError::Invalid("destination address"));
    }
    v.legacy_names();
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::tests::sample_event;

    #[test]
    fn hand_encoding_is_byte_identical_to_prost() {
        for i in 0..200 {
            let e = sample_event(i);
            let mut ours = Vec::new();
            encode(&e, &mut ours);
            let theirs = to_proto(&e, 0).encode_to_vec();
            assert_eq!(ours, theirs, "event {i}: {e:?}");
        }
    }

    #[test]
    fn flow_view_reads_what_was_written() {
        for i in 0..60 {
            let e = sample_event(i);
            let mut b = Vec::new();
            encode(&e, &mut b);
            let view = flow_view(&b).unwrap();
            match &e {
                Event::Flow(f) => assert_view_matches(view.expect("a flow"), f),
                _ => assert!(view.is_none()),
            }
        }
        assert!(flow_view(&[0x52, 0x7f]).is_err(), "length past the end");
    }

    fn assert_view_matches(v: FlowView<'_>, f: &crate::event::FlowEvent) {
        assert_eq!(v.ts_unix_ns, f.ts_unix_ns);
        assert_eq!((v.pid, v.uid, v.cookie), (f.pid, f.uid, f.cookie));
        assert_eq!(v.comm, f.comm);
        assert_eq!(v.exe, f.exe.as_deref());
        assert_eq!(v.cgroup, f.cgroup.as_deref());
        assert_eq!(v.container_runtime, f.container_runtime);
        assert_eq!(v.systemd_unit, f.systemd_unit.as_deref());
        assert_eq!((v.dst_ip, v.dst_port), (Some(f.dst_ip), f.dst_port));
        assert_eq!(v.names, f.names);
        assert_eq!(v.dns, f.dns);
        assert_eq!(v.sni(), f.sni.as_deref());
        assert_eq!(v.sni_unreadable, f.sni_unreadable.is_some());
        assert_eq!(v.ancestors, f.ancestors);
        assert_eq!(
            v.verdict
                .map(|x| (x.violation, x.rule.to_string(), x.policy_hash.to_string())),
            f.verdict.as_ref().map(|x| (
                x.decision == Decision::Violation,
                x.rule.clone(),
                x.policy.hash.clone()
            ))
        );
    }

    /// Found by the journal_record fuzz target: a record whose `flow` field occurs twice is,
    /// to protobuf (and so to `journal export`), the merge of both; replay must judge the same
    /// flow. Likewise the last member of the oneof wins.
    #[test]
    fn flow_view_merges_repeated_fields_as_protobuf_does() {
        let flow = (0..)
            .map(sample_event)
            .find(|e| matches!(e, Event::Flow(f) if f.dst_port != 0 && f.verdict.is_some()))
            .unwrap();
        let mut b = Vec::new();
        encode(&flow, &mut b);
        // A second `flow` (field 10) that only sets pid = 7 (field 2).
        let mut merged = b.clone();
        merged.extend_from_slice(&[0x52, 0x02, 0x10, 0x07]);
        let Event::Flow(f) = decode(&merged).unwrap() else {
            panic!("a flow")
        };
        assert_eq!(f.pid, 7);
        assert_view_matches(flow_view(&merged).unwrap().expect("a flow"), &f);
        // A `loss` (field 11) after the flow replaces it ...
        let mut loss = b.clone();
        loss.extend_from_slice(&[0x5a, 0x00]);
        assert!(matches!(decode(&loss).unwrap(), Event::Loss(_)));
        assert_eq!(flow_view(&loss).unwrap(), None);
        // ... and a flow after a loss replaces that.
        let mut back = vec![0x5a, 0x00];
        back.extend_from_slice(&b);
        let Event::Flow(f) = decode(&back).unwrap() else {
            panic!("a flow")
        };
        assert_view_matches(flow_view(&back).unwrap().expect("a flow"), &f);
    }
}

#[cfg(test)]
mod recorded {
    use super::*;

    /// Records written by an earlier build of the agent still decode, to the same bytes.
    #[test]
    fn records_written_by_the_agent_decode_and_round_trip() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut kinds = Vec::new();
        for name in [
            "agent-start",
            "policy",
            "connect-verdict",
            "close",
            "agent-stop",
        ] {
            let bytes = std::fs::read(dir.join(format!("journal-record-{name}.bin"))).unwrap();
            let event = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut again = Vec::new();
            encode(&event, &mut again);
            assert_eq!(again, bytes, "{name} re-encodes identically");
            kinds.push(serde_json::to_value(&event).unwrap()["kind"].clone());
        }
        assert_eq!(
            kinds,
            ["agent_start", "policy", "connect", "close", "agent_stop"]
        );
    }
}
