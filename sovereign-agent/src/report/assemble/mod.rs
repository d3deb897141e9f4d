//! From what the scan gathered to the report: addresses located, rows grouped by country,
//! region and AI provider, coverage clipped to the period, times formatted.
use std::collections::{BTreeMap, BTreeSet};

mod coverage;
mod tables;
mod time;
mod verdicts;

use super::{
    locate::{is_eea, Locator},
    model::*,
    scan::Scan,
};
use crate::event::Lifecycle;
use coverage::coverage;
use tables::{ai_apis, by_country, by_region, outside};
use time::ts;
use verdicts::verdicts;

/// What assembling needs beside the scan.
pub struct Context<'a> {
    pub journal: String,
    pub verify: VerifySummary,
    pub recheck_command: String,
    pub adequate: &'a [String],
    pub generated_at_ns: i64,
    pub missing: Vec<String>,
}

/// How the agent of a record is shown: its collector id, else the host name it started on.
fn agent_names(scan: &Scan) -> Vec<String> {
    scan.agents
        .names
        .iter()
        .enumerate()
        .map(|(i, id)| {
            if !id.is_empty() {
                return id.clone();
            }
            scan.tracks
                .get(&(i as u32))
                .and_then(|t| t.hostnames.last().cloned())
                .unwrap_or_else(|| "this host".to_string())
        })
        .collect()
}

pub fn assemble(scan: Scan, locator: &mut Locator, cx: Context<'_>) -> Report {
    let agents = agent_names(&scan);
    let mut missing = cx.missing;
    let (p0, p1) = (
        scan.window
            .since
            .or(scan.journal_span.map(|s| s.0))
            .unwrap_or_default(),
        scan.window
            .until
            .or(scan.journal_span.map(|s| s.1))
            .unwrap_or_default(),
    );
    if scan.records == 0 {
        missing.push("the journal has no records in this period".to_string());
    }

    let mut scope = Scope {
        catalogue_version: locator.catalogue_version.to_string(),
        adequate: cx.adequate.to_vec(),
        datasets_used: locator
            .datasets
            .iter()
            .map(|d| DatasetUsed {
                kind: d.kind.key().to_string(),
                version: d.version.clone(),
                path: d.path.display().to_string(),
            })
            .collect(),
        ..Default::default()
    };
    let mut integrity = Integrity {
        verify: cx.verify,
        recheck_command: cx.recheck_command,
        kernel_losses: scan.kernel_losses,
        loss_events: scan.loss_events,
        dns_refused: scan.dns_refused,
        ..Default::default()
    };
    integrity.intact = integrity.verify.problem.is_none() && scan.unreadable.is_none();
    let mut datasets_recorded = BTreeMap::new();
    for (&agent, track) in &scan.tracks {
        let name = agents[agent as usize].clone();
        // Coverage is stated up to the journal's last record: after it nothing is known.
        let journal_end = scan.journal_span.map_or(p1, |s| s.1);
        let coverage = coverage(track, p0, p1.min(journal_end).max(p0), journal_end);
        if coverage.sessions.is_empty() && track.records_in_period == 0 {
            continue;
        }
        scope.agents.push(AgentRow {
            agent: scan.agents.names[agent as usize].clone(),
            hostnames: track.hostnames.clone(),
            versions: track.versions.clone(),
            binary_hashes: track.binary_hashes.clone(),
            starts: track.starts_in_period,
        });
        if track.sessions.is_empty() {
            missing.push(format!(
                "{name}: no start or stop record, so its time on watch cannot be stated"
            ));
        }
        integrity.coverage.push(Coverage {
            agent: name.clone(),
            hostname: track.hostnames.last().cloned().unwrap_or_default(),
            ..coverage
        });
        for (at, l) in &track.policies {
            if let Lifecycle::Policy {
                name: policy,
                version,
                hash,
                datasets,
                catalogue_version,
                ..
            } = &l.body
            {
                scope.policies.push(PolicyRow {
                    agent: name.clone(),
                    name: policy.clone(),
                    version: version.clone(),
                    hash: hash.clone(),
                    in_force_from: ts(*at),
                    catalogue_version: catalogue_version.clone(),
                });
                for d in datasets {
                    datasets_recorded
                        .entry((d.kind.clone(), d.version.clone()))
                        .or_insert_with(|| d.clone());
                }
            }
        }
        for (at, hooks, not_reported) in &track.hooks {
            for hook in hooks {
                // Listed once, from the first start (in or before the period) it failed at.
                if integrity
                    .hooks_not_attached
                    .iter()
                    .any(|h| h.agent == name && h.hook == *hook)
                {
                    continue;
                }
                let what = not_reported
                    .iter()
                    .find(|w| w.starts_with(&format!("{hook}:")))
                    .cloned()
                    .unwrap_or_default();
                integrity.hooks_not_attached.push(HookRow {
                    agent: name.clone(),
                    hook: hook.clone(),
                    not_reported: what,
                    since: ts(*at),
                });
            }
        }
    }
    scope.datasets_recorded = datasets_recorded.into_values().collect();
    if scope.policies.is_empty() && scan.verdict_policies.is_empty() {
        missing.push(
            "no policy was in force: flows were recorded without verdicts (section 6 is empty)"
                .to_string(),
        );
    } else if scope.policies.is_empty() {
        // The policy records are gone (retention) or were not forwarded (a collector): the
        // verdicts still name the policy that made them.
        missing.push("the journal holds no policy record for this period: policies are listed as the verdicts name them, from the first verdict each made".to_string());
        for (agent, name, version, hash, first) in &scan.verdict_policies {
            scope.policies.push(PolicyRow {
                agent: agents[*agent as usize].clone(),
                name: name.clone(),
                version: version.clone(),
                hash: hash.clone(),
                in_force_from: ts(*first),
                catalogue_version: None,
            });
        }
    }
    if !locator.has(crate::policy::datasets::DatasetKind::Country) {
        missing.push("no country database: countries are unknown (give --datasets DIR with a MaxMind-format country database)".to_string());
    }
    if !locator.has_cloud() {
        missing.push("no cloud provider IP-range file: cloud regions are unknown (give --datasets DIR with the providers' files, see `sovereign-agent datasets`)".to_string());
    }

    for (agent, l) in &scan.journal_events {
        let agent = agents[*agent as usize].clone();
        match &l.body {
            Lifecycle::JournalGap {
                events,
                reason,
                from,
                until,
                ..
            } => integrity.journal_gaps.push(JournalGapRow {
                agent,
                events: *events,
                reason: reason.clone(),
                from: from.clone(),
                until: until.clone(),
            }),
            Lifecycle::JournalRecovered {
                segment,
                bytes_cut,
                reason,
                below_checkpoint,
                records_removed,
                set_aside,
                previous_journal_id,
                ..
            } => integrity.recovered.push(RecoveredRow {
                agent,
                ts: l.ts.clone(),
                segment: *segment,
                bytes_cut: *bytes_cut,
                reason: reason.clone(),
                below_checkpoint: *below_checkpoint,
                records_removed: *records_removed,
                set_aside: set_aside.clone(),
                previous_journal_id: previous_journal_id.clone(),
            }),
            Lifecycle::JournalRetention {
                last_seq,
                bytes,
                reason,
                ..
            } => integrity.retention.push(RetentionRow {
                agent,
                ts: l.ts.clone(),
                last_seq: *last_seq,
                bytes: *bytes,
                reason: reason.clone(),
            }),
            _ => {}
        }
    }
    integrity.floods = scan
        .floods
        .iter()
        .map(|((agent, workload), f)| FloodRow {
            agent: agents[*agent as usize].clone(),
            workload: workload.clone(),
            tcp_connects: f.suppressed.tcp_connects,
            udp: f.suppressed.udp,
            dns_packets: f.suppressed.dns_packets,
            tls_segments: f.suppressed.tls_segments,
            process_records: f.suppressed.process_records,
            total: f.suppressed.total(),
            first: ts(f.first_ns),
            last: ts(f.last_ns),
        })
        .collect();
    integrity.floods.sort_by_key(|f| std::cmp::Reverse(f.total));

    // The inventory: one row per (agent, workload, address, port, protocol).
    let mut inventory: Vec<InventoryRow> = scan
        .flows
        .iter()
        .map(|(k, acc)| {
            let location = locator.locate(k.ip);
            let country = location.country.as_deref();
            let info = &scan.workload_info[k.workload as usize];
            let ai = acc
                .names
                .iter()
                .find_map(|n| locator.ai_endpoint(n))
                .map(|e| format!("{} ({}, region {})", e.provider_name, e.host, e.region));
            InventoryRow {
                agent: agents[k.agent as usize].clone(),
                workload: scan.workloads.names[k.workload as usize].clone(),
                exe: info.exe.clone(),
                systemd_unit: info.systemd_unit.clone(),
                container_id: info.container_id.clone(),
                pod_uid: info.pod_uid.clone(),
                cgroup: info.cgroup.clone(),
                destination: crate::event::destination_label(
                    acc.names.first().map(String::as_str),
                    k.ip,
                    k.port,
                ),
                names: acc.names.clone(),
                name_sources: acc.sources.clone(),
                address: k.ip.to_string(),
                port: k.port,
                proto: if k.proto == 2 { "udp" } else { "tcp" },
                eea: country.is_some_and(is_eea),
                adequate: country.is_some_and(|c| cx.adequate.iter().any(|a| a == c)),
                location: (*location).clone(),
                ai,
                first_seen: ts(acc.first_ns),
                last_seen: ts(acc.last_ns),
                flows: acc.flows,
                bytes_out: acc.bytes_out,
                bytes_in: acc.bytes_in,
                violations: acc.violations,
                rules: acc.rules.clone(),
                zones: acc.zones.clone(),
            }
        })
        .collect();
    inventory.sort_by(|a, b| {
        (b.bytes_out, b.flows, &a.workload, &a.destination).cmp(&(
            a.bytes_out,
            a.flows,
            &b.workload,
            &b.destination,
        ))
    });

    let totals = Totals {
        records: scan.records,
        flow_events: scan.flow_events,
        flows: inventory.iter().map(|r| r.flows).sum(),
        bytes_out: inventory.iter().map(|r| r.bytes_out).sum(),
        bytes_in: inventory.iter().map(|r| r.bytes_in).sum(),
        workloads: inventory
            .iter()
            .map(|r| (&r.agent, &r.workload))
            .collect::<BTreeSet<_>>()
            .len() as u64,
        destinations: inventory
            .iter()
            .map(|r| (&r.address, r.port, r.proto))
            .collect::<BTreeSet<_>>()
            .len() as u64,
        violations: scan.violations,
        alerts: scan.alerts,
    };

    let by_country = by_country(&inventory);
    let by_cloud_region = by_region(&inventory);
    let outside = outside(&inventory);
    let ai_apis = ai_apis(&inventory, locator);
    let verdicts = verdicts(&scan, &agents, &inventory, p0, p1);

    let mut limitations = vec![
        "Metadata only: the agent records who connected where, when and how much, never the payload. Whether personal data was in a flow is not known from this report.".to_string(),
        "IP location is not data location: an address's country and cloud region come from the providers' published ranges and a GeoIP database; CDNs, anycast and shared ranges can serve from elsewhere (such flows are marked `shared`).".to_string(),
        "Names can be ambiguous: many names share one address, and a TLS server name is the client's own claim; each destination shows how its name was learned.".to_string(),
        "Proxies, VPNs and tunnels hide the final destination: a flow to a proxy is reported as a flow to the proxy.".to_string(),
        "UDP payload sizes are not measured: bytes are TCP payload bytes counted by the kernel at close.".to_string(),
    ];
    let shared = inventory
        .iter()
        .filter(|r| r.location.cloud.as_ref().is_some_and(|c| c.shared))
        .count();
    if shared > 0 {
        limitations.push(format!(
            "{shared} destination rows are in shared or CDN ranges: their region says little about where data goes."
        ));
    }
    let claimed_only = inventory
        .iter()
        .filter(|r| {
            !r.name_sources.is_empty()
                && r.name_sources
                    .iter()
                    .all(|s| s == "sni" || s.starts_with("dns_untrusted"))
        })
        .count();
    if claimed_only > 0 {
        limitations.push(format!(
            "{claimed_only} destination rows are named only by the workload's own claim (TLS server name or an untrusted resolver's answer)."
        ));
    }
    if let Some(e) = &scan.unreadable {
        missing.push(format!(
            "the journal could not be read past {e}: later records are not in this report"
        ));
    }

    Report {
        format_version: FORMAT_VERSION,
        generator: format!("sovereign-agent {}", env!("CARGO_PKG_VERSION")),
        generated_at: ts(cx.generated_at_ns),
        journal: cx.journal,
        period: Period {
            since: scan.window.since.map(ts),
            until: scan.window.until.map(ts),
            first_record: scan.span.map(|s| ts(s.0)),
            last_record: scan.span.map(|s| ts(s.1)),
            journal_first_record: scan.journal_span.map(|s| ts(s.0)),
        },
        scope,
        integrity,
        totals,
        inventory,
        by_country,
        by_cloud_region,
        outside,
        ai_apis,
        verdicts,
        replay: None,
        limitations,
        missing,
    }
}
