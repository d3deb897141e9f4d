//! The pipeline's counters: events by kind, verdicts by rule and severity, flows folded by
//! the ceiling, alerts, owner evictions.
use std::sync::atomic::Ordering::Relaxed;

use super::exposition::Exposition;
use crate::{
    event::EventKind,
    telemetry::counters::{Counters, KINDS},
};

pub(super) fn render(out: &mut Exposition, c: &Counters) {
    let kinds: Vec<(String, f64)> = KINDS
        .iter()
        .zip(&c.events_by_kind)
        .map(|(k, n)| (kind_name(*k).to_string(), n.load(Relaxed) as f64))
        .collect();
    out.counter(
        "sovereign_agent_events_total",
        "Flow events observed, by kind.",
        &kinds
            .iter()
            .map(|(k, n)| (vec![("kind", k.as_str())], *n))
            .collect::<Vec<_>>(),
    );
    {
        let verdicts = c
            .verdicts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut rows: Vec<(String, String, String, u64)> = verdicts
            .iter()
            .flat_map(|((d, sev), rules)| {
                rules.iter().map(move |(rule, n)| {
                    (
                        d.to_string(),
                        rule.clone(),
                        sev.map_or_else(|| "none".into(), |s| s.to_string()),
                        *n,
                    )
                })
            })
            .collect();
        drop(verdicts);
        rows.sort();
        out.counter(
            "sovereign_agent_verdicts_total",
            "Flows judged by the policy, by decision, deciding rule and severity \
             (severity \"none\" for allowed flows).",
            &rows
                .iter()
                .map(|(d, r, sev, n)| {
                    (
                        vec![("decision", d.as_str()), ("rule", r), ("severity", sev)],
                        *n as f64,
                    )
                })
                .collect::<Vec<_>>(),
        );
    }
    out.counter(
        "sovereign_agent_flows_folded_total",
        "Flows over the flow ceiling (journal.max_flows_per_sec), written folded into aggregated events.",
        &[(vec![], c.flows_folded.load(Relaxed) as f64)],
    );
    out.counter(
        "sovereign_agent_alerts_total",
        "Alerts raised (repeats within the alert window are one alert).",
        &[(vec![], c.alerts_raised.load(Relaxed) as f64)],
    );
    out.counter(
        "sovereign_agent_late_alerts_total",
        "Alerts raised after a flow's first event: its verdict changed when its TLS server name was read.",
        &[(vec![], c.late_alerts.load(Relaxed) as f64)],
    );
    out.counter(
        "sovereign_agent_tcp_owner_evictions_total",
        "TCP closes whose socket's owner entry in the kernel had been evicted (more open \
         connections than tcp_socket_entries): written, flagged owner_evicted.",
        &[(vec![], c.owner_evictions.load(Relaxed) as f64)],
    );
}

fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Connect => "connect",
        EventKind::Existing => "existing",
        EventKind::Refused => "refused",
        EventKind::Send => "send",
        EventKind::Established => "established",
        EventKind::Close => "close",
        EventKind::Loss => "loss",
    }
}
