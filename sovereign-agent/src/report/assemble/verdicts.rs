//! The verdicts section: flows by decision and severity over time, the violations grouped by
//! rule and destination, and the alerts.
use std::collections::{BTreeMap, HashMap};

use super::time::ts;
use crate::policy::Severity;
use crate::report::{model::*, scan::Scan};

fn severity_name(n: u64) -> String {
    match n {
        1 => Severity::Info,
        2 => Severity::Low,
        3 => Severity::Medium,
        4 => Severity::High,
        5 => Severity::Critical,
        _ => return String::new(),
    }
    .to_string()
}

pub(super) fn verdicts(
    scan: &Scan,
    agents: &[String],
    inventory: &[InventoryRow],
    p0: i64,
    p1: i64,
) -> Verdicts {
    let mut v = Verdicts {
        judged: scan.judged,
        unjudged: scan.unjudged,
        violations: scan.violations,
        history_before_period: scan.journal_span.map(|s| s.0).is_some_and(|f| f < p0),
        ..Default::default()
    };
    // Hours over three days or less, days beyond; empty buckets shown (a chart's gaps mean
    // something), at most 400 of them.
    let hours = &scan.violations_by_hour;
    if let (Some((&first, _)), Some((&last, _))) = (hours.first_key_value(), hours.last_key_value())
    {
        let daily = last - first > 72;
        let per = if daily { 24 } else { 1 };
        v.bucket = if daily { "day" } else { "hour" }.to_string();
        let mut buckets: BTreeMap<i64, u64> = BTreeMap::new();
        for (h, n) in hours {
            *buckets.entry(h.div_euclid(per)).or_default() += n;
        }
        let (b0, b1) = (first.div_euclid(per), last.div_euclid(per));
        let fill = b1 - b0 < 400;
        for b in b0..=b1 {
            let count = buckets.get(&b).copied().unwrap_or(0);
            if fill || count > 0 {
                v.over_time.push(TimeCount {
                    start: ts(b * per * 3_600_000_000_000),
                    count,
                });
            }
        }
    }
    let mut by_rule: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_workload: BTreeMap<&str, u64> = BTreeMap::new();
    for (k, g) in &scan.groups {
        let rule = &scan.rules.names[k.rule as usize];
        *by_rule.entry(rule).or_default() += g.flows;
        *by_workload
            .entry(&scan.workloads.names[k.workload as usize])
            .or_default() += g.flows;
        v.groups.push(ViolationGroup {
            agent: agents[k.agent as usize].clone(),
            rule: rule.clone(),
            severity: severity_name(g.severity),
            workload: scan.workloads.names[k.workload as usize].clone(),
            destination: g.destination.clone(),
            flows: g.flows,
            first: ts(g.first_ns),
            last: ts(g.last_ns),
            first_seq: g.first_seq,
            zones: g.zones.clone(),
            evidence: g.evidence.clone(),
            weak: g.weak.clone(),
        });
    }
    v.groups.sort_by(|a, b| {
        (b.flows, &a.rule, &a.workload, &a.destination).cmp(&(
            a.flows,
            &b.rule,
            &b.workload,
            &b.destination,
        ))
    });
    let counted = |m: BTreeMap<&str, u64>| {
        let mut v: Vec<NamedCount> = m
            .into_iter()
            .map(|(name, count)| NamedCount {
                name: name.to_string(),
                count,
            })
            .collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.count));
        v
    };
    v.by_rule = counted(by_rule);
    v.by_workload = counted(by_workload);
    v.alerts_by_severity = scan
        .alerts_by_severity
        .iter()
        .map(|(name, &count)| NamedCount {
            name: name.clone(),
            count,
        })
        .collect();
    v.alerts = scan
        .alert_groups
        .iter()
        .map(|((agent, rule, workload, destination), a)| AlertRow {
            agent: agents[*agent as usize].clone(),
            rule: rule.clone(),
            severity: a.severity.clone(),
            workload: workload.clone(),
            destination: destination.clone(),
            alerts: a.alerts,
            violations: a.violations,
            first: ts(a.first_ns),
            last: ts(a.last_ns),
        })
        .collect();
    v.alerts.sort_by_key(|a| std::cmp::Reverse(a.violations));
    // New destinations: first seen in the whole journal inside the period.
    let mut rows_of: HashMap<(&str, u16, &str), Vec<&InventoryRow>> = HashMap::new();
    for r in inventory {
        rows_of
            .entry((&r.address, r.port, r.proto))
            .or_default()
            .push(r);
    }
    let mut new: Vec<(i64, NewDestination)> = scan
        .dest_first
        .iter()
        .filter(|(_, &first)| first >= p0 && first <= p1)
        .filter_map(|((ip, port, proto), &first)| {
            let ip = ip.to_string();
            let rows =
                rows_of.get(&(ip.as_str(), *port, if *proto == 2 { "udp" } else { "tcp" }))?;
            let mut workloads: Vec<String> = rows.iter().map(|r| r.workload.clone()).collect();
            workloads.sort();
            workloads.dedup();
            Some((
                first,
                NewDestination {
                    destination: rows[0].destination.clone(),
                    first_seen: ts(first),
                    workloads,
                },
            ))
        })
        .collect();
    new.sort_by(|a, b| (a.0, &a.1.destination).cmp(&(b.0, &b.1.destination)));
    v.new_destinations = new.into_iter().map(|(_, d)| d).collect();
    v
}
