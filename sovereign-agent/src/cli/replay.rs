//! `sovereign-agent replay DIR --policy NEW.toml`: every flow of the journal judged again under
//! a new policy, with the names it was recorded with, and the difference reported. Exit 2 when
//! the new policy produces violations the recorded verdicts did not have, so a policy change
//! or a deployment can be gated on "would yesterday's traffic pass under tomorrow's policy?".
use std::{
    collections::{BTreeMap, HashMap},
    io::IsTerminal,
    path::PathBuf,
    time::Instant,
};

use clap::Args;
use serde::Serialize;

use super::{complain, journal::FilterArgs};
use crate::{
    clock::rfc3339_from_unix_ns,
    event::{DatasetVersion, Event, Lifecycle},
    exit,
    journal::{
        convert::{self, FlowView},
        reader,
    },
    policy::{Decision, Flow, Policy},
};

#[derive(Args)]
pub struct ReplayArgs {
    /// The journal directory.
    pub dir: PathBuf,
    /// The policy to replay under.
    #[arg(long)]
    pub policy: PathBuf,
    /// A directory of datasets for the policy.
    #[arg(long, env = "SOVEREIGN_DATASETS")]
    pub datasets: Option<PathBuf>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print the full report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Rows of the change table to print (all go to JSON).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// A violation now, allowed (or unjudged) when recorded.
    NewViolation,
    /// Allowed now, a violation when recorded.
    NewlyAllowed,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GroupKey {
    pub change: Change,
    pub workload: String,
    pub destination: String,
    /// Recorded decision: allow, violation, or none (no policy then).
    pub was: String,
    pub was_rule: String,
    pub now_rule: String,
    pub now_severity: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Group {
    #[serde(flatten)]
    pub key: GroupKey,
    pub events: u64,
    pub first_seq: u64,
    pub first_ts: String,
    pub last_ts: String,
    #[serde(skip)]
    last_ts_ns: i64,
    pub now_zones: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplayReport {
    pub journal: String,
    pub policy: PolicyId,
    pub records: u64,
    /// Flow events judged again (after filters).
    pub flow_events: u64,
    pub unchanged: u64,
    pub unchanged_violations: u64,
    pub new_violations: u64,
    pub newly_allowed: u64,
    /// Policies the flows were recorded under (hash → events), and events with no verdict.
    pub recorded_under: Vec<RecordedPolicy>,
    pub recorded_without_policy: u64,
    /// Dataset versions recorded with the flows versus those of the new policy.
    pub recorded_datasets: Vec<DatasetVersion>,
    pub replay_datasets: Vec<DatasetVersion>,
    pub changes: Vec<Group>,
    pub seconds: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PolicyId {
    pub name: String,
    pub version: String,
    pub hash: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RecordedPolicy {
    pub name: String,
    pub version: String,
    pub hash: String,
    pub events: u64,
}

pub fn workload(f: &FlowView<'_>) -> String {
    crate::event::workload_label(
        f.systemd_unit,
        f.container_id,
        f.container_runtime,
        f.exe,
        f.comm,
    )
}

pub fn destination(f: &FlowView<'_>) -> String {
    let ip = f.dst_ip.expect("views have an address");
    crate::event::destination_label(f.names.first().map(String::as_str), ip, f.dst_port)
}

/// Judges every flow again; the report, or a message for the user (exit 64/66/1).
pub fn replay(args: &ReplayArgs) -> Result<ReplayReport, (u8, String)> {
    let started = Instant::now();
    let filter = args.filter.compile().map_err(|e| (exit::USAGE, e))?;
    let policy = Policy::load(&args.policy, args.datasets.as_deref()).map_err(|errors| {
        let text: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        (exit::USAGE, text.join("\n"))
    })?;
    let segments = reader::segments(&args.dir).map_err(|e| (exit::NOINPUT, e.to_string()))?;
    let total = reader::total_bytes(&segments);
    let bar = if std::io::stderr().is_terminal() && !args.json {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "replaying {bar:40} {bytes}/{total_bytes} ({eta})",
            )
            .expect("valid template"),
        );
        Some(bar)
    } else {
        None
    };
    let mut report = ReplayReport {
        journal: args.dir.display().to_string(),
        policy: PolicyId {
            name: policy.name.clone(),
            version: policy.version.clone(),
            hash: policy.hash.clone(),
        },
        replay_datasets: match Lifecycle::policy_in_force(&policy) {
            Lifecycle::Policy { datasets, .. } => datasets,
            _ => Vec::new(),
        },
        ..Default::default()
    };
    let mut groups: HashMap<GroupKey, Group> = HashMap::new();
    let mut recorded: BTreeMap<String, RecordedPolicy> = BTreeMap::new();
    let mut recorded_datasets: BTreeMap<(String, String), DatasetVersion> = BTreeMap::new();
    let mut decode_error = None;
    let result = reader::for_each_payload(
        &args.dir,
        true,
        |bytes| {
            if let Some(b) = &bar {
                b.inc(bytes);
            }
        },
        |seq, payload| {
            report.records += 1;
            let view = match convert::flow_view(payload) {
                Ok(Some(v)) => v,
                Ok(None) => {
                    // Loss or lifecycle: only policy records matter here (their datasets).
                    if convert::is_lifecycle(payload) {
                        if let Ok(Event::Lifecycle(l)) = convert::decode(payload) {
                            if let Lifecycle::Policy { datasets, .. } = &l.body {
                                for d in datasets {
                                    recorded_datasets
                                        .entry((d.kind.clone(), d.version.clone()))
                                        .or_insert_with(|| d.clone());
                                }
                            }
                        }
                    }
                    return Ok(());
                }
                Err(e) => {
                    decode_error = Some(format!("record {seq}: {e}"));
                    return Err(crate::journal::JournalError::Record {
                        seq,
                        message: e.to_string(),
                    });
                }
            };
            if !filter.matches_view(&view) {
                return Ok(());
            }
            report.flow_events += 1;
            match &view.verdict {
                Some(v) => {
                    let entry = match recorded.get_mut(v.policy_hash) {
                        Some(e) => e,
                        None => recorded
                            .entry(v.policy_hash.to_string())
                            .or_insert_with(|| RecordedPolicy {
                                name: v.policy_name.to_string(),
                                version: v.policy_version.to_string(),
                                hash: v.policy_hash.to_string(),
                                events: 0,
                            }),
                    };
                    entry.events += 1;
                }
                None => report.recorded_without_policy += 1,
            }
            let flow = Flow {
                ip: view.dst_ip.expect("views have an address"),
                port: view.dst_port,
                dns: &view.dns,
                sni: view.sni(),
                sni_unreadable: view.sni_unreadable,
                exe: view.exe,
                interpreter: view.interpreter,
                ancestors: &view.ancestors,
                comm: view.comm,
                cgroup: view.cgroup,
                container_id: view.container_id,
                uid: view.uid,
            };
            let verdict = policy.classify(&flow);
            let was_violation = view.verdict.as_ref().map(|v| v.violation);
            let change = match (was_violation, verdict.decision) {
                (Some(true), Decision::Violation) => {
                    report.unchanged += 1;
                    report.unchanged_violations += 1;
                    return Ok(());
                }
                (Some(true), Decision::Allow) => Change::NewlyAllowed,
                (_, Decision::Violation) => Change::NewViolation,
                (_, Decision::Allow) => {
                    report.unchanged += 1;
                    return Ok(());
                }
            };
            match change {
                Change::NewViolation => report.new_violations += 1,
                Change::NewlyAllowed => report.newly_allowed += 1,
            }
            let key = GroupKey {
                change,
                workload: workload(&view),
                destination: destination(&view),
                was: match was_violation {
                    Some(true) => "violation",
                    Some(false) => "allow",
                    None => "none",
                }
                .to_string(),
                was_rule: view
                    .verdict
                    .as_ref()
                    .map(|v| v.rule.to_string())
                    .unwrap_or_default(),
                now_rule: policy.rule_name(&verdict).to_string(),
                now_severity: verdict.severity.map(|s| s.to_string()).unwrap_or_default(),
            };
            let g = groups.entry(key).or_insert_with_key(|k| Group {
                key: k.clone(),
                events: 0,
                first_seq: seq,
                first_ts: rfc3339_from_unix_ns(i128::from(view.ts_unix_ns)),
                last_ts: String::new(),
                last_ts_ns: 0,
                now_zones: policy.explain(&flow, &verdict).zones,
            });
            g.events += 1;
            g.last_ts_ns = view.ts_unix_ns;
            Ok(())
        },
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(message) = decode_error {
        return Err((exit::FAILURE, message));
    }
    result.map_err(|e| (exit::FAILURE, e.to_string()))?;
    let mut changes: Vec<Group> = groups
        .into_values()
        .map(|mut g| {
            g.last_ts = rfc3339_from_unix_ns(i128::from(g.last_ts_ns));
            g
        })
        .collect();
    changes.sort_by(|a, b| {
        (a.key.change, std::cmp::Reverse(a.events), &a.key).cmp(&(
            b.key.change,
            std::cmp::Reverse(b.events),
            &b.key,
        ))
    });
    report.changes = changes;
    report.recorded_under = recorded.into_values().collect();
    report.recorded_datasets = recorded_datasets.into_values().collect();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Runs the replay and prints it. Exit 0: no new violations; 2: new violations; 1: the
/// journal is damaged; 64: bad policy or arguments; 66: not a journal.
pub fn run(args: &ReplayArgs) -> u8 {
    let report = match replay(args) {
        Ok(r) => r,
        Err((code, message)) => {
            complain(message);
            return code;
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("plain structs")
        );
    } else {
        print_table(&report, args.limit);
    }
    if report.new_violations > 0 {
        exit::VIOLATION
    } else {
        exit::OK
    }
}

fn print_table(r: &ReplayReport, limit: usize) {
    println!(
        "Replayed {} flow events ({} records) of {} under policy {} version {} ({}) in {:.2} s",
        r.flow_events,
        r.records,
        r.journal,
        r.policy.name,
        r.policy.version,
        r.policy.hash,
        r.seconds
    );
    for p in &r.recorded_under {
        println!(
            "  recorded under {} version {} ({}): {} events",
            p.name, p.version, p.hash, p.events
        );
    }
    if r.recorded_without_policy > 0 {
        println!(
            "  recorded without a policy: {} events",
            r.recorded_without_policy
        );
    }
    let rec: Vec<String> = r
        .recorded_datasets
        .iter()
        .map(|d| format!("{} {}", d.kind, d.version))
        .collect();
    let now: Vec<String> = r
        .replay_datasets
        .iter()
        .map(|d| format!("{} {}", d.kind, d.version))
        .collect();
    if rec != now {
        println!(
            "  datasets recorded: [{}]; replayed with: [{}] (addresses are located with the replay's datasets)",
            rec.join(", "),
            now.join(", ")
        );
    }
    println!();
    println!("  new violations   {}", r.new_violations);
    println!("  newly allowed    {}", r.newly_allowed);
    println!(
        "  unchanged        {} ({} of them violations)",
        r.unchanged, r.unchanged_violations
    );
    if r.changes.is_empty() {
        return;
    }
    println!();
    let rows: Vec<[String; 6]> = r
        .changes
        .iter()
        .take(limit)
        .map(|g| {
            [
                match g.key.change {
                    Change::NewViolation => "NEW VIOLATION".to_string(),
                    Change::NewlyAllowed => "newly allowed".to_string(),
                },
                g.events.to_string(),
                g.key.workload.clone(),
                g.key.destination.clone(),
                if g.key.was_rule.is_empty() {
                    g.key.was.clone()
                } else {
                    format!("{} ({})", g.key.was, g.key.was_rule)
                },
                match g.key.change {
                    Change::NewViolation => format!(
                        "violation {} ({}; {})",
                        g.key.now_severity,
                        g.key.now_rule,
                        g.now_zones.join(",")
                    ),
                    Change::NewlyAllowed => format!("allow ({})", g.key.now_rule),
                },
            ]
        })
        .collect();
    let header = ["CHANGE", "EVENTS", "WORKLOAD", "DESTINATION", "WAS", "NOW"];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    if r.changes.len() > limit {
        println!(
            "... {} more groups (--limit, or --json for all)",
            r.changes.len() - limit
        );
    }
}
