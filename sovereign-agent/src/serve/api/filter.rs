//! `EventFilter` of StreamEvents, compiled once per subscriber and applied to each event.
use std::net::IpAddr;

use sovereign_agent_proto::agent::v1 as pb;

/// A compiled `EventFilter`. Every set condition must hold.
#[derive(Debug, Default)]
pub struct EventFilter {
    kinds: Vec<String>,
    verdict: Option<pb::Decision>,
    min_severity: i32,
    workload: Option<globset::GlobMatcher>,
    destination: Option<Destination>,
}

use crate::journal::filter::{glob, Destination};

/// The JSON `kind` of an event (docs/events.md, docs/journal.md).
pub fn kind_of(e: &pb::Event) -> &'static str {
    use pb::{event::Body, lifecycle::Kind};
    match &e.body {
        Some(Body::Flow(f)) => match pb::FlowKind::try_from(f.kind) {
            Ok(pb::FlowKind::Connect) => "connect",
            Ok(pb::FlowKind::Existing) => "existing",
            Ok(pb::FlowKind::Send) => "send",
            Ok(pb::FlowKind::Established) => "established",
            _ => "close",
        },
        Some(Body::Loss(_)) => "loss",
        Some(Body::Alert(_)) => "alert",
        Some(Body::DnsRefused(_)) => "dns_refused",
        Some(Body::Flood(_)) => "flood",
        Some(Body::Lifecycle(l)) => match &l.kind {
            Some(Kind::Start(_)) => "agent_start",
            Some(Kind::Stop(_)) => "agent_stop",
            Some(Kind::Policy(_)) => "policy",
            Some(Kind::Retention(_)) => "journal_retention",
            Some(Kind::Recovered(_)) => "journal_recovered",
            Some(Kind::Gap(_)) => "journal_gap",
            None => "unknown",
        },
        None => "unknown",
    }
}

/// Who made a flow: systemd unit, container id, executable, or comm.
pub fn workload_of(f: &pb::Flow) -> &str {
    f.systemd_unit
        .as_deref()
        .or(f.container_id.as_deref())
        .or(f.exe.as_deref())
        .unwrap_or(&f.comm)
}

pub fn dst_ip_of(f: &pb::Flow) -> Option<IpAddr> {
    match f.dst_ip.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(&f.dst_ip[..]).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(&f.dst_ip[..]).ok()?)),
        _ => None,
    }
}

impl EventFilter {
    pub fn compile(f: &pb::EventFilter) -> Result<Self, String> {
        const KINDS: &[&str] = &[
            "connect",
            "existing",
            "send",
            "established",
            "close",
            "alert",
            "dns_refused",
            "flood",
            "loss",
            "agent_start",
            "agent_stop",
            "policy",
            "journal_retention",
            "journal_recovered",
            "journal_gap",
        ];
        for k in &f.kinds {
            if !KINDS.contains(&k.as_str()) {
                return Err(format!(
                    "filter.kinds: unknown kind {k:?}; one of {}",
                    KINDS.join(", ")
                ));
            }
        }
        Ok(EventFilter {
            kinds: f.kinds.clone(),
            verdict: match f.verdict.as_str() {
                "" => None,
                "allow" => Some(pb::Decision::Allow),
                "violation" => Some(pb::Decision::Violation),
                v => return Err(format!("filter.verdict {v:?}: expected allow or violation")),
            },
            min_severity: f.min_severity,
            workload: (!f.workload.is_empty())
                .then(|| glob(&f.workload, "filter.workload"))
                .transpose()?,
            destination: (!f.destination.is_empty())
                .then(|| Destination::parse(&f.destination, "filter.destination"))
                .transpose()?,
        })
    }

    fn flow_conditions(&self) -> bool {
        self.verdict.is_some()
            || self.min_severity > 0
            || self.workload.is_some()
            || self.destination.is_some()
    }

    pub fn matches(&self, e: &pb::Event) -> bool {
        if !self.kinds.is_empty() && !self.kinds.iter().any(|k| k == kind_of(e)) {
            return false;
        }
        // Flow conditions apply to flows and to the flow of an alert or a flood.
        let f = match &e.body {
            Some(pb::event::Body::Flow(f)) => f.as_ref(),
            Some(pb::event::Body::Alert(a)) => match &a.flow {
                Some(f) => f,
                None => return false,
            },
            Some(pb::event::Body::Flood(fl)) => match &fl.flow {
                Some(f) => f,
                None => return false,
            },
            _ => return !self.flow_conditions(),
        };
        if let Some(want) = self.verdict {
            if f.verdict.as_ref().map(|v| v.decision) != Some(want as i32) {
                return false;
            }
        }
        if self.min_severity > 0 {
            let severity = f.verdict.as_ref().map_or(0, |v| v.severity);
            if severity < self.min_severity {
                return false;
            }
        }
        if let Some(w) = &self.workload {
            if !w.is_match(workload_of(f)) {
                return false;
            }
        }
        match &self.destination {
            Some(d) => d.matches(dst_ip_of(f), &f.names),
            None => true,
        }
    }
}
