//! The hot path: flows are encoded straight from the event (no intermediate message, no
//! string copies), producing exactly the bytes prost does for `sovereign.agent.v1.Event`
//! (tested against prost itself).
use std::net::IpAddr;

use sovereign_agent_proto::agent::v1 as pb;

use crate::{
    event::{EventKind, Family, FlowEvent, Proto},
    policy::Decision,
};

/// Protobuf field writers.
mod field {
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
        varint((u64::from(tag) << 3) | wire, out);
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
    use field::*;
    let kind = match f.kind {
        EventKind::Connect => pb::FlowKind::Connect,
        EventKind::Existing => pb::FlowKind::Existing,
        EventKind::Refused => pb::FlowKind::Refused,
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
            uint(
                2,
                super::to_proto::severity_to_proto(v.severity) as u64,
                out,
            );
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
    uint(39, u64::from(f.owner_evicted), out);
}

/// Encodes a flow event as an `Event` record, without building the message first.
pub(super) fn encode_flow_event(f: &FlowEvent, out: &mut Vec<u8>) {
    if f.ts_unix_ns != 0 {
        field::key(2, field::VARINT, out);
        field::varint(f.ts_unix_ns as u64, out);
    }
    field::message(10, out, |out| encode_flow(f, out));
}
