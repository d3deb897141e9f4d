//! Events to and from their protobuf form (`sovereign.agent.v1.Event`), the journal's
//! record encoding. Decoding gives back exactly the event that was written, so `journal
//! export` prints the same JSON as the live output.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use prost::Message;
use sovereign_agent_proto::agent::v1 as pb;

use crate::{
    clock::rfc3339_from_unix_ns,
    event::{
        DatasetVersion, Event, EventKind, Family, FlowEvent, Lifecycle, LifecycleEvent, LossEvent,
        Proto,
    },
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
    let msg = to_proto(event, 0);
    msg.encode(out).expect("a Vec grows as needed");
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
    };
    pb::Event {
        seq,
        ts_unix_ns: ts,
        body: Some(body),
    }
}

fn flow_to_proto(f: &FlowEvent) -> pb::Flow {
    pb::Flow {
        kind: match f.kind {
            EventKind::Connect => pb::FlowKind::Connect,
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
        dst_ip: match f.dst_ip {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        },
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
    }
}

fn verdict_to_proto(v: &Explanation) -> pb::Verdict {
    pb::Verdict {
        decision: match v.decision {
            Decision::Allow => pb::Decision::Allow,
            Decision::Violation => pb::Decision::Violation,
        } as i32,
        severity: match v.severity {
            None => pb::Severity::Unspecified,
            Some(Severity::Info) => pb::Severity::Info,
            Some(Severity::Low) => pb::Severity::Low,
            Some(Severity::Medium) => pb::Severity::Medium,
            Some(Severity::High) => pb::Severity::High,
            Some(Severity::Critical) => pb::Severity::Critical,
        } as i32,
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
const NAME_SOURCES: &[&str] = &["dns", "sni", "dns+sni", "none"];
const EVIDENCE_SOURCES: &[&str] = &[
    "cidr", "domain", "ai", "aws", "azure", "gcp", "oracle", "country", "asn",
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
    })
}

fn flow_from_proto(f: pb::Flow, ts: String, ts_unix_ns: i64) -> Result<FlowEvent, ConvertError> {
    let dst_ip = match f.dst_ip.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&f.dst_ip[..]).unwrap())),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&f.dst_ip[..]).unwrap())),
        _ => return Err(ConvertError::Invalid("destination address")),
    };
    Ok(FlowEvent {
        ts,
        ts_unix_ns,
        kind: match pb::FlowKind::try_from(f.kind) {
            Ok(pb::FlowKind::Connect) => EventKind::Connect,
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
        verdict: f.verdict.map(verdict_from_proto).transpose()?,
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
