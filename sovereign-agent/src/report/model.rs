//! The residency report's content: what the JSON form is, field for field (docs/report.md),
//! and what the HTML and CSV forms are rendered from.
use serde::Serialize;

use super::locate::{Cloud, Location};
use crate::{event::DatasetVersion, journal::verify};

/// Bumped when a field changes meaning or goes away (adding fields does not bump it).
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub format_version: u32,
    /// `sovereign-agent VERSION`.
    pub generator: String,
    pub generated_at: String,
    pub journal: String,
    pub period: Period,
    pub scope: Scope,
    pub integrity: Integrity,
    pub totals: Totals,
    pub inventory: Vec<InventoryRow>,
    pub by_country: Vec<CountryRow>,
    pub by_cloud_region: Vec<RegionRow>,
    /// Destinations outside the EEA and the countries treated as adequate, or not located.
    pub outside: Vec<OutsideRow>,
    pub ai_apis: Vec<AiRow>,
    pub verdicts: Verdicts,
    /// With `--policy`: what the proposed policy would change in this period.
    pub replay: Option<ReplayDiff>,
    pub limitations: Vec<String>,
    /// What this report could not tell, and why (no policy recorded, no datasets, ...).
    pub missing: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Period {
    /// The bounds asked for (`--since`, `--until`), if any.
    pub since: Option<String>,
    pub until: Option<String>,
    /// The first and last record in the period.
    pub first_record: Option<String>,
    pub last_record: Option<String>,
    /// The journal's first record (older ones may have been deleted by retention).
    pub journal_first_record: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Scope {
    pub agents: Vec<AgentRow>,
    pub policies: Vec<PolicyRow>,
    /// Datasets the agent judged with, as recorded with each policy.
    pub datasets_recorded: Vec<DatasetVersion>,
    /// Datasets this report located addresses with.
    pub datasets_used: Vec<DatasetUsed>,
    /// The AI catalogue this report matched names against (built into this binary).
    pub catalogue_version: String,
    /// Countries the organisation treats as adequate (`--adequate`), beside the EEA.
    pub adequate: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AgentRow {
    /// The agent's id at a collector (its certificate name); empty in an agent's own journal.
    pub agent: String,
    pub hostnames: Vec<String>,
    pub versions: Vec<String>,
    pub binary_hashes: Vec<String>,
    pub starts: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PolicyRow {
    pub agent: String,
    pub name: String,
    pub version: String,
    pub hash: String,
    /// When it took effect (the agent's start or the reload).
    pub in_force_from: String,
    pub catalogue_version: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DatasetUsed {
    pub kind: String,
    pub version: String,
    pub path: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Integrity {
    /// The journal verified end to end (chain, seals, checkpoint, signatures if a key was
    /// given) and could be read completely.
    pub intact: bool,
    pub verify: VerifySummary,
    /// The command an auditor runs to check the journal independently.
    pub recheck_command: String,
    pub coverage: Vec<Coverage>,
    pub kernel_losses: u64,
    pub loss_events: u64,
    pub journal_gaps: Vec<JournalGapRow>,
    pub recovered: Vec<RecoveredRow>,
    pub retention: Vec<RetentionRow>,
    pub hooks_not_attached: Vec<HookRow>,
    pub floods: Vec<FloodRow>,
    /// DNS answers refused for naming (forged or unsolicited): an attack signal.
    pub dns_refused: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifySummary {
    pub records: u64,
    pub segments: u64,
    pub first_seq: u64,
    pub next_seq: u64,
    /// Hex BLAKE3 chain head at the end of the journal.
    pub head: String,
    /// `verified` (every seal signed by the key given), `unsigned`, `signed, not checked` (no
    /// key given), or `invalid`.
    pub signatures: String,
    pub signatures_checked: u64,
    /// The first problem found, if any: file, offset and what is wrong.
    pub problem: Option<String>,
}

/// One agent's time on watch during the period.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Coverage {
    pub agent: String,
    pub hostname: String,
    pub sessions: Vec<Session>,
    pub gaps: Vec<Gap>,
    pub period_seconds: f64,
    pub watched_seconds: f64,
    /// watched / period, in percent.
    pub watched_percent: f64,
    pub starts: u64,
    /// Starts not preceded by a stop record: the agent was killed, crashed or lost power.
    pub unclean_stops: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Session {
    pub from: String,
    pub until: String,
    /// How it ended: `stop: REASON`, `no stop recorded (killed, crashed or power lost)`,
    /// `running at the end of the period`.
    pub end: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Gap {
    pub from: String,
    pub until: String,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct JournalGapRow {
    pub agent: String,
    pub events: u64,
    pub reason: String,
    pub from: String,
    pub until: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RecoveredRow {
    pub agent: String,
    pub ts: String,
    pub segment: u64,
    pub bytes_cut: u64,
    pub reason: String,
    /// Damage among synced records, not a crash's torn tail.
    pub below_checkpoint: bool,
    pub records_removed: u64,
    pub set_aside: Option<String>,
    pub previous_journal_id: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RetentionRow {
    pub agent: String,
    pub ts: String,
    pub last_seq: u64,
    pub bytes: u64,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct HookRow {
    pub agent: String,
    pub hook: String,
    /// What the hook would have reported, as the agent recorded it.
    pub not_reported: String,
    pub since: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct FloodRow {
    pub agent: String,
    pub workload: String,
    pub tcp_connects: u64,
    pub udp: u64,
    pub dns_packets: u64,
    pub tls_segments: u64,
    pub process_records: u64,
    pub total: u64,
    pub first: String,
    pub last: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub records: u64,
    pub flow_events: u64,
    /// Connections and first datagrams (connect, send and existing events; aggregated
    /// records count every flow they stand for).
    pub flows: u64,
    /// TCP payload bytes, from the close events (UDP payload is not measured).
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub workloads: u64,
    pub destinations: u64,
    /// Flows whose recorded verdict was a violation.
    pub violations: u64,
    pub alerts: u64,
}

/// One workload's traffic to one address and port.
#[derive(Clone, Debug, Serialize)]
pub struct InventoryRow {
    pub agent: String,
    pub workload: String,
    pub exe: Option<String>,
    pub systemd_unit: Option<String>,
    pub container_id: Option<String>,
    /// The Kubernetes pod the container belongs to.
    pub pod_uid: Option<String>,
    pub cgroup: Option<String>,
    /// The first name (or the address) and the port.
    pub destination: String,
    pub names: Vec<String>,
    /// How the names were learned (`dns`, `dns_untrusted`, `sni`, `dns+sni`, `none`, ...).
    pub name_sources: Vec<String>,
    pub address: String,
    pub port: u16,
    pub proto: &'static str,
    pub location: Location,
    pub eea: bool,
    pub adequate: bool,
    pub ai: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub flows: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub violations: u64,
    pub rules: Vec<String>,
    /// The policy zones the destination was in, as recorded with its verdicts.
    pub zones: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CountryRow {
    /// ISO code, or `unknown` (public, not in the country database), or the address scope
    /// (`private`, `loopback`, ...) for addresses that are not on the Internet.
    pub country: String,
    pub eea: bool,
    pub adequate: bool,
    pub flows: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub destinations: u64,
    pub workloads: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RegionRow {
    pub cloud: Cloud,
    pub flows: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub destinations: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct OutsideRow {
    pub country: String,
    pub destination: String,
    pub address: String,
    pub workloads: Vec<String>,
    pub flows: u64,
    pub bytes_out: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct AiRow {
    pub provider: String,
    pub provider_name: String,
    pub endpoint: String,
    /// Where the endpoint serves from, as the catalogue says.
    pub region: String,
    pub workload: String,
    pub destinations: Vec<String>,
    pub name_sources: Vec<String>,
    pub flows: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub first_seen: String,
    pub last_seen: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdicts {
    /// Flow events judged when recorded, and those recorded without a policy.
    pub judged: u64,
    pub unjudged: u64,
    pub violations: u64,
    /// Violations per time bucket (`bucket`: `hour` or `day`).
    pub bucket: String,
    pub over_time: Vec<TimeCount>,
    pub by_rule: Vec<NamedCount>,
    pub by_workload: Vec<NamedCount>,
    pub groups: Vec<ViolationGroup>,
    pub alerts_by_severity: Vec<NamedCount>,
    /// Alerts per agent, rule, workload and destination (a collector's journal holds these
    /// even when it holds no flows).
    pub alerts: Vec<AlertRow>,
    /// Destinations first seen in the period (not in the journal before it).
    pub new_destinations: Vec<NewDestination>,
    /// False when the journal starts inside the period: "new" then only means "first seen
    /// since the journal began".
    pub history_before_period: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct TimeCount {
    pub start: String,
    pub count: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct NamedCount {
    pub name: String,
    pub count: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ViolationGroup {
    pub agent: String,
    pub rule: String,
    pub severity: String,
    pub workload: String,
    pub destination: String,
    pub flows: u64,
    pub first: String,
    pub last: String,
    /// The journal sequence number of the first one (`journal export` shows it whole).
    pub first_seq: u64,
    /// The zones the verdict rests on, its evidence and weak ground, as recorded.
    pub zones: Vec<String>,
    pub evidence: Vec<String>,
    pub weak: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AlertRow {
    pub agent: String,
    pub rule: String,
    pub severity: String,
    pub workload: String,
    pub destination: String,
    pub alerts: u64,
    pub violations: u64,
    pub first: String,
    pub last: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct NewDestination {
    pub destination: String,
    pub first_seen: String,
    pub workloads: Vec<String>,
}

impl VerifySummary {
    pub fn of(r: &verify::Report, key_given: bool) -> Self {
        VerifySummary {
            records: r.records,
            segments: r.segments,
            first_seq: r.first_seq,
            next_seq: r.next_seq,
            head: r.head.clone(),
            signatures: match (r.problem.is_some(), r.signed, key_given) {
                (true, _, true) => "not verified (the journal is damaged)",
                (false, true, true) => "verified",
                (_, true, false) => "signed, not checked (no --public-key given)",
                (_, false, _) => "unsigned",
            }
            .to_string(),
            signatures_checked: r.signatures_checked,
            problem: r
                .problem
                .as_ref()
                .map(|p| format!("{} at offset {}: {}", p.file.display(), p.offset, p.message)),
        }
    }
}

/// What a proposed policy (`--policy`) would change, from `replay` over the same period.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplayDiff {
    pub policy_name: String,
    pub policy_version: String,
    pub policy_hash: String,
    pub flow_events: u64,
    pub new_violations: u64,
    pub newly_allowed: u64,
    pub unchanged: u64,
    pub changes: Vec<ReplayChange>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReplayChange {
    /// `new_violation` or `newly_allowed`.
    pub change: String,
    pub workload: String,
    pub destination: String,
    pub was: String,
    pub now: String,
    pub events: u64,
}
