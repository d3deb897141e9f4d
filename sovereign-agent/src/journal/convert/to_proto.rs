//! Events to their protobuf messages: every kind but a flow's hot path (see [`super::wire`]),
//! and the API's stream, which sends messages.
use std::net::IpAddr;

use sovereign_agent_proto::agent::v1 as pb;

use crate::{
    event::{Event, EventKind, Family, FlowEvent, Lifecycle, Proto},
    policy::{Decision, Explanation, Severity},
};

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
                exe: d.exe.as_deref().map(str::to_string),
                cgroup: d.cgroup.as_deref().map(str::to_string),
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
                process_records: f.suppressed.process_records,
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
        agent_journal_id: String::new(),
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn flow_to_proto(f: &FlowEvent) -> pb::Flow {
    pb::Flow {
        kind: match f.kind {
            EventKind::Connect => pb::FlowKind::Connect,
            EventKind::Existing => pb::FlowKind::Existing,
            EventKind::Refused => pb::FlowKind::Refused,
            EventKind::Send => pb::FlowKind::Send,
            EventKind::Established => pb::FlowKind::Established,
            EventKind::Close | EventKind::Loss => pb::FlowKind::Close,
        } as i32,
        pid: f.pid,
        tid: f.tid,
        uid: f.uid,
        gid: f.gid,
        comm: f.comm.clone(),
        exe: f.exe.as_deref().map(str::to_string),
        cmdline: f.cmdline.as_deref().map(str::to_string),
        cgroup_id: f.cgroup_id,
        cgroup: f.cgroup.as_deref().map(str::to_string),
        container_id: f.container_id.as_deref().map(str::to_string),
        container_runtime: f.container_runtime.map(str::to_string),
        pod_uid: f.pod_uid.as_deref().map(str::to_string),
        systemd_unit: f.systemd_unit.as_deref().map(str::to_string),
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
        owner_evicted: f.owner_evicted,
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
        exec_path: f.exec_path.as_deref().map(str::to_string),
        interpreter: f.interpreter.as_deref().map(str::to_string),
        ppid: f.ppid,
        parent_exe: f.parent_exe.as_deref().map(str::to_string),
        ancestors: f.ancestors.iter().map(ToString::to_string).collect(),
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
        weak: v.weak.iter().map(ToString::to_string).collect(),
        policy: Some(pb::PolicyRef {
            name: v.policy.name.clone(),
            version: v.policy.version.clone(),
            hash: v.policy.hash.clone(),
        }),
    }
}

pub(super) fn severity_to_proto(s: Option<Severity>) -> pb::Severity {
    match s {
        None => pb::Severity::Unspecified,
        Some(Severity::Info) => pb::Severity::Info,
        Some(Severity::Low) => pb::Severity::Low,
        Some(Severity::Medium) => pb::Severity::Medium,
        Some(Severity::High) => pb::Severity::High,
        Some(Severity::Critical) => pb::Severity::Critical,
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
            not_reported,
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
            not_reported,
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
            last_head: crate::journal::format::unhex(&last_head).unwrap_or_default(),
            bytes,
            reason,
        }),
        Lifecycle::JournalRecovered {
            segment,
            offset,
            bytes_cut,
            reason,
            below_checkpoint,
            records_removed,
            set_aside,
            previous_journal_id,
        } => Kind::Recovered(pb::JournalRecovered {
            segment,
            offset,
            bytes_cut,
            reason,
            below_checkpoint,
            records_removed,
            set_aside: set_aside.unwrap_or_default(),
            previous_journal_id: previous_journal_id.unwrap_or_default(),
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
