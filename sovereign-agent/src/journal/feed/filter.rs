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
        Some(Body::Flow(f)) => flow_kind_name(f.kind),
        Some(Body::Loss(_)) => "loss",
        Some(Body::Alert(_)) => "alert",
        Some(Body::DnsRefused(_)) => "dns_refused",
        Some(Body::Flood(_)) => "flood",
        Some(Body::Lifecycle(l)) => match &l.kind {
            Some(Kind::Start(_)) => lifecycle_kind_name(1),
            Some(Kind::Stop(_)) => lifecycle_kind_name(2),
            Some(Kind::Policy(_)) => lifecycle_kind_name(3),
            Some(Kind::Retention(_)) => lifecycle_kind_name(4),
            Some(Kind::Recovered(_)) => lifecycle_kind_name(5),
            Some(Kind::Gap(_)) => lifecycle_kind_name(6),
            None => "unknown",
        },
        None => "unknown",
    }
}

/// The kind of a flow by its `FlowKind` number (any other number is named a close).
pub fn flow_kind_name(kind: i32) -> &'static str {
    match pb::FlowKind::try_from(kind) {
        Ok(pb::FlowKind::Connect) => "connect",
        Ok(pb::FlowKind::Existing) => "existing",
        Ok(pb::FlowKind::Refused) => "refused",
        Ok(pb::FlowKind::Send) => "send",
        Ok(pb::FlowKind::Established) => "established",
        _ => "close",
    }
}

/// The kind of a lifecycle event by the field number of its `kind` member.
pub fn lifecycle_kind_name(field: u32) -> &'static str {
    match field {
        1 => "agent_start",
        2 => "agent_stop",
        3 => "policy",
        4 => "journal_retention",
        5 => "journal_recovered",
        6 => "journal_gap",
        _ => "unknown",
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
            "refused",
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

    /// Whether a condition looks inside the flow (the kind alone does not decide).
    pub fn flow_conditions(&self) -> bool {
        self.verdict.is_some()
            || self.min_severity > 0
            || self.workload.is_some()
            || self.destination.is_some()
    }

    /// Whether only some kinds are wanted.
    pub fn selects_kinds(&self) -> bool {
        !self.kinds.is_empty()
    }

    /// Whether events of `kind` can match (the other conditions are judged on the event).
    pub fn kind_matches(&self, kind: &str) -> bool {
        self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind)
    }

    pub fn matches(&self, e: &pb::Event) -> bool {
        if !self.kind_matches(kind_of(e)) {
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

#[cfg(test)]
mod tests {
    use pb::event::Body;

    use super::*;

    fn filter(f: pb::EventFilter) -> EventFilter {
        EventFilter::compile(&f).unwrap()
    }

    /// A flow from `exe` to `ip` with `names`, judged `decision` at `severity` (or unjudged).
    fn flow(
        exe: &str,
        ip: [u8; 4],
        names: &[&str],
        verdict: Option<(pb::Decision, pb::Severity)>,
    ) -> pb::Flow {
        pb::Flow {
            kind: pb::FlowKind::Connect as i32,
            comm: "python3".into(),
            exe: Some(exe.into()),
            dst_ip: ip.to_vec(),
            names: names.iter().map(ToString::to_string).collect(),
            verdict: verdict.map(|(d, s)| pb::Verdict {
                decision: d as i32,
                severity: s as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn event(body: Body) -> pb::Event {
        pb::Event {
            body: Some(body),
            ..Default::default()
        }
    }

    #[test]
    fn each_condition_must_hold_on_a_flow() {
        let openai = event(Body::Flow(Box::new(flow(
            "/opt/llm/bin/serve",
            [104, 18, 6, 192],
            &["api.openai.com"],
            Some((pb::Decision::Violation, pb::Severity::Critical)),
        ))));
        let internal = event(Body::Flow(Box::new(flow(
            "/usr/bin/crm-sync",
            [10, 1, 2, 3],
            &[],
            Some((pb::Decision::Allow, pb::Severity::Unspecified)),
        ))));
        let all = filter(pb::EventFilter::default());
        assert!(all.matches(&openai) && all.matches(&internal));

        let violations = filter(pb::EventFilter {
            verdict: "violation".into(),
            ..Default::default()
        });
        assert!(violations.matches(&openai) && !violations.matches(&internal));

        let high = filter(pb::EventFilter {
            min_severity: pb::Severity::High as i32,
            ..Default::default()
        });
        assert!(high.matches(&openai) && !high.matches(&internal));

        let llm = filter(pb::EventFilter {
            workload: "/opt/llm/*".into(),
            ..Default::default()
        });
        assert!(llm.matches(&openai) && !llm.matches(&internal));

        let by_name = filter(pb::EventFilter {
            destination: "*.OpenAI.com".into(),
            ..Default::default()
        });
        assert!(by_name.matches(&openai) && !by_name.matches(&internal));
        let by_net = filter(pb::EventFilter {
            destination: "10.0.0.0/8".into(),
            ..Default::default()
        });
        assert!(!by_net.matches(&openai) && by_net.matches(&internal));

        let both = filter(pb::EventFilter {
            verdict: "violation".into(),
            destination: "10.0.0.0/8".into(),
            ..Default::default()
        });
        assert!(!both.matches(&openai) && !both.matches(&internal));
    }

    #[test]
    fn kinds_select_and_flow_conditions_reach_into_alerts_but_not_other_records() {
        let f = flow(
            "/opt/llm/bin/serve",
            [104, 18, 6, 192],
            &["api.openai.com"],
            Some((pb::Decision::Violation, pb::Severity::High)),
        );
        let alert = event(Body::Alert(Box::new(pb::Alert {
            flow: Some(f),
            count: 3,
            ..Default::default()
        })));
        let loss = event(Body::Loss(pb::Loss { lost: 7 }));
        assert_eq!(kind_of(&alert), "alert");
        assert_eq!(kind_of(&loss), "loss");

        let alerts = filter(pb::EventFilter {
            kinds: vec!["alert".into()],
            ..Default::default()
        });
        assert!(alerts.matches(&alert) && !alerts.matches(&loss));
        let openai = filter(pb::EventFilter {
            destination: "api.openai.com".into(),
            ..Default::default()
        });
        assert!(openai.matches(&alert), "the alert's flow is judged");
        assert!(!openai.matches(&loss), "a loss has no flow to match");
        assert!(filter(pb::EventFilter::default()).matches(&loss));
    }

    #[test]
    fn a_bad_filter_is_refused_with_the_field_named() {
        let err = |f: pb::EventFilter| EventFilter::compile(&f).unwrap_err();
        let e = err(pb::EventFilter {
            kinds: vec!["conect".into()],
            ..Default::default()
        });
        assert!(
            e.starts_with("filter.kinds: unknown kind \"conect\""),
            "{e}"
        );
        let e = err(pb::EventFilter {
            verdict: "deny".into(),
            ..Default::default()
        });
        assert!(e.starts_with("filter.verdict \"deny\""), "{e}");
        let e = err(pb::EventFilter {
            workload: "[".into(),
            ..Default::default()
        });
        assert!(e.starts_with("filter.workload \"[\""), "{e}");
    }

    #[test]
    fn the_workload_is_unit_then_container_then_exe_then_comm() {
        let mut f = flow("/usr/bin/python3", [10, 0, 0, 1], &[], None);
        assert_eq!(workload_of(&f), "/usr/bin/python3");
        f.container_id = Some("abc".into());
        assert_eq!(workload_of(&f), "abc");
        f.systemd_unit = Some("crm.service".into());
        assert_eq!(workload_of(&f), "crm.service");
        f.exe = None;
        f.container_id = None;
        f.systemd_unit = None;
        assert_eq!(workload_of(&f), "python3");
        f.dst_ip = vec![1, 2, 3];
        assert_eq!(dst_ip_of(&f), None, "a malformed address is no address");
    }
}
