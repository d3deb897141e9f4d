//! `sovereign-agent journal verify|export`, and the record filters `replay` shares.
use std::{
    io::{self, Write},
    path::{Path, PathBuf},
};

use clap::{Args, Subcommand};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use super::complain;
use crate::{
    event::{Event, FlowEvent},
    exit,
    journal::filter::{glob, Destination},
    journal::{reader, verify},
    policy::Decision,
};

#[derive(Subcommand)]
pub enum JournalCommand {
    /// Check every frame, checksum, sequence number, hash link, seal and the HEAD checkpoint
    /// (and signatures with --public-key). Exit 0 valid, 1 at the first problem.
    Verify {
        dir: PathBuf,
        /// Ed25519 public key (PEM) that must have signed every seal and the checkpoint.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print records as JSON lines (the live output's fields plus `seq`) or CSV.
    Export {
        dir: PathBuf,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
        format: String,
    },
}

impl JournalCommand {
    pub fn execute(self) -> u8 {
        match self {
            JournalCommand::Verify {
                dir,
                public_key,
                json,
            } => verify(&dir, public_key.as_deref(), json),
            JournalCommand::Export {
                dir,
                filter,
                format,
            } => match filter.compile() {
                Ok(filter) => export(
                    &dir,
                    &filter,
                    if format == "csv" {
                        ExportFormat::Csv
                    } else {
                        ExportFormat::Jsonl
                    },
                ),
                Err(e) => {
                    complain(e);
                    exit::USAGE
                }
            },
        }
    }
}

/// Which records a command looks at. Time bounds apply to every record; the flow filters
/// (pid, exe, dst, verdict) keep only flows that match all of them.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
    pub pids: Vec<u32>,
    pub exe: Option<globset::GlobMatcher>,
    pub dst: Option<Destination>,
    pub verdict: Option<VerdictFilter>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerdictFilter {
    Allow,
    Violation,
    /// Flows recorded without a verdict.
    None,
}

/// The record filters of `journal export` and `replay`, as given on the command line.
#[derive(Args, Clone, Debug, Default)]
pub struct FilterArgs {
    /// Records at or after this time (RFC 3339, a date, or Unix seconds).
    #[arg(long)]
    pub since: Option<String>,
    /// Records before this time.
    #[arg(long)]
    pub until: Option<String>,
    /// Flows of this process id; repeatable.
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// Flows whose executable matches this glob, e.g. `/usr/bin/python*`.
    #[arg(long)]
    pub exe: Option<String>,
    /// Flows to this address, CIDR, or name glob (`*.openai.com`).
    #[arg(long)]
    pub dst: Option<String>,
    /// Flows with this recorded verdict: allow, violation, none.
    #[arg(long)]
    pub verdict: Option<String>,
}

/// RFC 3339 (`2026-11-28T09:00:00Z`), a date (`2026-11-28`, midnight UTC), Unix seconds, or
/// a time that long ago (`90m`, `24h`, `7d`, `2w`: for scheduled reports).
pub fn parse_time(s: &str) -> Result<i64, String> {
    parse_time_at(s, crate::clock::unix_now_ns())
}

/// [`parse_time`] with "now" given.
pub fn parse_time_at(s: &str, now_ns: i64) -> Result<i64, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.unix_timestamp_nanos() as i64);
    }
    if let Ok(t) = OffsetDateTime::parse(&format!("{s}T00:00:00Z"), &Rfc3339) {
        return Ok(t.unix_timestamp_nanos() as i64);
    }
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs.saturating_mul(1_000_000_000));
    }
    let unit = match s.as_bytes().last() {
        Some(b's') => Some(1),
        Some(b'm') => Some(60),
        Some(b'h') => Some(3_600),
        Some(b'd') => Some(86_400),
        Some(b'w') => Some(604_800),
        _ => None,
    };
    if let (Some(unit), Ok(n)) = (unit, s[..s.len() - 1].parse::<i64>()) {
        if n >= 0 {
            return Ok(now_ns.saturating_sub(n.saturating_mul(unit).saturating_mul(1_000_000_000)));
        }
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339 (2026-11-28T09:00:00Z), a date (2026-11-28), Unix seconds, or a time ago (24h, 7d)"
    ))
}

impl FilterArgs {
    pub fn compile(&self) -> Result<Filter, String> {
        Ok(Filter {
            since_ns: self
                .since
                .as_deref()
                .map(|s| parse_time(s).map_err(|e| format!("--since: {e}")))
                .transpose()?,
            until_ns: self
                .until
                .as_deref()
                .map(|s| parse_time(s).map_err(|e| format!("--until: {e}")))
                .transpose()?,
            pids: self.pids.clone(),
            exe: self.exe.as_deref().map(|e| glob(e, "--exe")).transpose()?,
            dst: self
                .dst
                .as_deref()
                .map(|d| Destination::parse(d, "--dst"))
                .transpose()?,
            verdict: match self.verdict.as_deref() {
                None => None,
                Some("allow") => Some(VerdictFilter::Allow),
                Some("violation") => Some(VerdictFilter::Violation),
                Some("none") => Some(VerdictFilter::None),
                Some(v) => {
                    return Err(format!(
                        "--verdict {v:?}: expected allow, violation or none"
                    ))
                }
            },
        })
    }
}

impl Filter {
    fn flow_filters(&self) -> bool {
        !self.pids.is_empty() || self.exe.is_some() || self.dst.is_some() || self.verdict.is_some()
    }

    pub fn matches(&self, event: &Event) -> bool {
        let ts = event.ts_unix_ns();
        if self.since_ns.is_some_and(|s| ts < s) || self.until_ns.is_some_and(|u| ts >= u) {
            return false;
        }
        match event.as_flow() {
            Some(f) => self.matches_flow(f),
            None => !self.flow_filters(),
        }
    }

    /// [`Filter::matches`] for a flow read as a view (replay's fast path).
    pub fn matches_view(&self, f: &crate::journal::convert::FlowView<'_>) -> bool {
        let ts = f.ts_unix_ns;
        if self.since_ns.is_some_and(|s| ts < s) || self.until_ns.is_some_and(|u| ts >= u) {
            return false;
        }
        if !self.pids.is_empty() && !self.pids.contains(&f.pid) {
            return false;
        }
        if let Some(exe) = &self.exe {
            if !f.exe.is_some_and(|e| exe.is_match(e)) {
                return false;
            }
        }
        if let Some(d) = &self.dst {
            if !d.matches(f.dst_ip, &f.names) {
                return false;
            }
        }
        match (self.verdict, &f.verdict) {
            (None, _) => true,
            (Some(VerdictFilter::None), v) => v.is_none(),
            (Some(VerdictFilter::Allow), Some(v)) => !v.violation,
            (Some(VerdictFilter::Violation), Some(v)) => v.violation,
            (Some(_), None) => false,
        }
    }

    fn matches_flow(&self, f: &FlowEvent) -> bool {
        if !self.pids.is_empty() && !self.pids.contains(&f.pid) {
            return false;
        }
        if let Some(exe) = &self.exe {
            if !f.exe.as_deref().is_some_and(|e| exe.is_match(e)) {
                return false;
            }
        }
        if let Some(d) = &self.dst {
            if !d.matches(Some(f.dst_ip), &f.names) {
                return false;
            }
        }
        match (self.verdict, &f.verdict) {
            (None, _) => true,
            (Some(VerdictFilter::None), v) => v.is_none(),
            (Some(VerdictFilter::Allow), Some(v)) => v.decision == Decision::Allow,
            (Some(VerdictFilter::Violation), Some(v)) => v.decision == Decision::Violation,
            (Some(_), None) => false,
        }
    }
}

/// Checks everything; prints a summary or the first problem. Exit 0 valid, 1 a problem,
/// 64 bad arguments (key), 66 not a journal.
pub fn verify(dir: &Path, public_key: Option<&Path>, json: bool) -> u8 {
    let key = match public_key
        .map(crate::journal::keys::read_verifying_key)
        .transpose()
    {
        Ok(k) => k,
        Err(e) => {
            complain(format_args!("--public-key {e}"));
            return exit::USAGE;
        }
    };
    let started = std::time::Instant::now();
    let report = match verify::verify(dir, key.as_ref()) {
        Ok(r) => r,
        Err(e) => {
            complain(e);
            return exit::NOINPUT;
        }
    };
    let secs = started.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("plain struct")
        );
    } else if let Some(p) = &report.problem {
        println!(
            "{}: INVALID after {} good records",
            dir.display(),
            report.records
        );
        println!(
            "  {} at offset {}: {}",
            p.file.display(),
            p.offset,
            p.message
        );
    } else {
        println!(
            "{}: OK: {} records (seq {}..{}) in {} segments ({} to {}), {:.1} MiB, verified in {:.2} s",
            dir.display(),
            report.records,
            report.first_seq,
            report.next_seq.saturating_sub(1),
            report.segments,
            report.first_segment,
            report.first_segment + report.segments.saturating_sub(1),
            report.bytes as f64 / f64::from(1 << 20),
            secs
        );
        println!("  chain head {}", report.head);
        match (report.signed, key.is_some()) {
            (true, true) => println!("  {} signatures verified", report.signatures_checked),
            (true, false) => println!("  signed; signatures NOT checked (give --public-key)"),
            (false, _) => println!("  not signed"),
        }
        for d in &report.damage_recovered {
            println!(
                "  DAMAGE RECOVERED at {} (record {}): {} synced records of segment {} cut at offset {} ({}); kept in {}; journal id was {}",
                d.ts,
                d.seq,
                d.records_removed,
                d.segment,
                d.offset,
                d.reason,
                d.set_aside.as_deref().unwrap_or("(nowhere)"),
                d.previous_journal_id.as_deref().unwrap_or("(unknown)"),
            );
        }
    }
    if report.problem.is_some() {
        exit::FAILURE
    } else if !report.damage_recovered.is_empty() {
        exit::DAMAGE_RECOVERED
    } else {
        exit::OK
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

const CSV_COLUMNS: &[&str] = &[
    "seq",
    "ts",
    "kind",
    "pid",
    "tid",
    "uid",
    "comm",
    "exe",
    "cmdline",
    "cgroup",
    "container_id",
    "pod_uid",
    "systemd_unit",
    "cookie",
    "proto",
    "family",
    "dst_ip",
    "dst_port",
    "src_port",
    "names",
    "name_source",
    "bytes_sent",
    "bytes_received",
    "count",
    "was_established",
    "decision",
    "severity",
    "rule",
    "zones",
    "policy_hash",
    "detail",
];

/// Prints the matching records: JSON lines with the live output's field names plus `seq`,
/// or CSV. Exit 0, 1 when the journal is damaged (what was printed before stays valid), 66
/// not a journal.
pub fn export(dir: &Path, filter: &Filter, format: ExportFormat) -> u8 {
    let out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut json_out = None;
    let mut csv_out = None;
    match format {
        ExportFormat::Jsonl => json_out = Some(out),
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            let _ = w.write_record(CSV_COLUMNS);
            csv_out = Some(w);
        }
    }
    let mut line = Vec::with_capacity(1024);
    let result = reader::for_each_event(
        dir,
        |_| {},
        |seq, event| {
            if !filter.matches(&event) {
                return Ok(());
            }
            let written = if let Some(out) = &mut json_out {
                // `{"seq":N,` and then the event's own object without its opening brace.
                line.clear();
                line.extend_from_slice(format!("{{\"seq\":{seq},").as_bytes());
                let prefix = line.len();
                serde_json::to_writer(&mut line, &event).expect("serializable");
                line.remove(prefix);
                line.push(b'\n');
                out.write_all(&line)
            } else if let Some(w) = &mut csv_out {
                w.write_record(csv_row(seq, &event))
                    .map_err(|e| match e.into_kind() {
                        csv::ErrorKind::Io(e) => e,
                        other => io::Error::other(format!("{other:?}")),
                    })
            } else {
                Ok(())
            };
            written.map_err(|source| crate::journal::JournalError::Io {
                path: "standard output".into(),
                source,
            })
        },
    );
    let flushed = match (json_out, csv_out) {
        (Some(mut o), _) => o.flush(),
        (_, Some(mut w)) => w.flush(),
        _ => Ok(()),
    };
    match result {
        Err(crate::journal::JournalError::Io { source, .. })
            if source.kind() == io::ErrorKind::BrokenPipe =>
        {
            exit::OK
        }
        Err(e) => {
            complain(&e);
            if matches!(e, crate::journal::JournalError::Dir { .. }) {
                exit::NOINPUT
            } else {
                exit::FAILURE
            }
        }
        Ok(()) if flushed.is_err() => exit::FAILURE,
        Ok(()) => exit::OK,
    }
}

fn csv_row(seq: u64, event: &Event) -> Vec<String> {
    let mut row = vec![String::new(); CSV_COLUMNS.len()];
    let opt = |v: Option<String>| v.unwrap_or_default();
    let text = |v: Option<&str>| v.unwrap_or_default().to_string();
    row[0] = seq.to_string();
    match event {
        Event::Flow(f) => {
            let json = serde_json::to_value(f.kind).expect("enum");
            row[1] = f.ts.clone();
            row[2] = json.as_str().unwrap_or_default().to_string();
            row[3] = f.pid.to_string();
            row[4] = f.tid.to_string();
            row[5] = f.uid.to_string();
            row[6] = f.comm.clone();
            row[7] = text(f.exe.as_deref());
            row[8] = text(f.cmdline.as_deref());
            row[9] = text(f.cgroup.as_deref());
            row[10] = text(f.container_id.as_deref());
            row[11] = text(f.pod_uid.as_deref());
            row[12] = text(f.systemd_unit.as_deref());
            row[13] = f.cookie.to_string();
            row[14] = serde_json::to_value(f.proto)
                .expect("enum")
                .as_str()
                .unwrap_or_default()
                .into();
            row[15] = serde_json::to_value(f.family)
                .expect("enum")
                .as_str()
                .unwrap_or_default()
                .into();
            row[16] = f.dst_ip.to_string();
            row[17] = f.dst_port.to_string();
            row[18] = opt(f.src_port.map(|p| p.to_string()));
            row[19] = f.names.join(" ");
            row[20] = f.name_source.to_string();
            row[21] = opt(f.bytes_sent.map(|b| b.to_string()));
            row[22] = opt(f.bytes_received.map(|b| b.to_string()));
            row[23] = opt(f.count.map(|b| b.to_string()));
            row[24] = opt(f.was_established.map(|b| b.to_string()));
            if let Some(v) = &f.verdict {
                row[25] = v.decision.to_string();
                row[26] = opt(v.severity.map(|s| s.to_string()));
                row[27] = v.rule.clone();
                row[28] = v.zones.join(" ");
                row[29] = v.policy.hash.clone();
            }
        }
        Event::Loss(l) => {
            row[1] = l.ts.clone();
            row[2] = "loss".into();
            row[30] = format!("lost={}", l.lost);
        }
        Event::Alert(a) => {
            row[1] = a.ts.clone();
            row[2] = "alert".into();
            row[3] = a.flow.pid.to_string();
            row[6] = a.flow.comm.clone();
            row[7] = text(a.flow.exe.as_deref());
            row[16] = a.flow.dst_ip.to_string();
            row[17] = a.flow.dst_port.to_string();
            row[19] = a.flow.names.join(" ");
            row[25] = "violation".into();
            row[26] = opt(a.severity.map(|s| s.to_string()));
            row[27] = a.rule.clone();
            row[30] = format!(
                "count={} first={} last={} workload={} destination={}",
                a.count, a.first, a.last, a.workload, a.destination
            );
        }
        Event::Flood(f) => {
            row[1] = f.ts.clone();
            row[2] = "flood".into();
            row[3] = f.flow.pid.to_string();
            row[6] = f.flow.comm.clone();
            row[7] = text(f.flow.exe.as_deref());
            row[9] = text(f.flow.cgroup.as_deref());
            row[10] = text(f.flow.container_id.as_deref());
            row[12] = text(f.flow.systemd_unit.as_deref());
            row[16] = f.flow.dst_ip.to_string();
            row[17] = f.flow.dst_port.to_string();
            row[30] = format!(
                "scope={} tcp_connects={} udp={} dns_packets={} tls_segments={} process_records={} first={} last={}",
                f.scope,
                f.suppressed.tcp_connects,
                f.suppressed.udp,
                f.suppressed.dns_packets,
                f.suppressed.tls_segments,
                f.suppressed.process_records,
                f.first,
                f.last
            );
        }
        Event::DnsRefused(d) => {
            row[1] = d.ts.clone();
            row[2] = "dns_refused".into();
            row[3] = d.pid.to_string();
            row[6] = d.comm.clone();
            row[7] = text(d.exe.as_deref());
            row[9] = text(d.cgroup.as_deref());
            row[13] = d.cookie.to_string();
            row[19] = d.names.join(" ");
            row[30] = format!(
                "reason={} resolver={} count={} addresses={}",
                d.reason,
                d.resolver,
                d.count,
                d.addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        Event::Lifecycle(l) => {
            let mut json = serde_json::to_value(&l.body).expect("serializable");
            row[1] = l.ts.clone();
            row[2] = json["kind"].as_str().unwrap_or_default().to_string();
            if let Some(obj) = json.as_object_mut() {
                obj.remove("kind");
            }
            row[30] = json.to_string();
        }
    }
    // A cell a spreadsheet would run as a formula (an exe path or name the workload chose
    // beginning with `=`, say) is quoted (`crate::escape`).
    for cell in &mut row {
        if let std::borrow::Cow::Owned(quoted) = crate::escape::csv_cell(cell) {
            *cell = quoted;
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{convert, tests::sample_event};

    #[test]
    fn a_workload_chosen_formula_is_no_formula_in_the_csv_export() {
        // Issue 31, finding 6: an executable called `=HYPERLINK(...)` becomes a clickable
        // link (or worse) when the export is opened in a spreadsheet.
        let mut f = crate::journal::tests::sample_flow(1);
        f.exe = Some("=HYPERLINK(\"https://evil.example/\",\"open\")".into());
        f.comm = "@SUM(1)".into();
        let row = csv_row(7, &Event::Flow(Box::new(f)));
        let cell = |name: &str| &row[CSV_COLUMNS.iter().position(|c| *c == name).unwrap()];
        assert_eq!(
            cell("exe"),
            "'=HYPERLINK(\"https://evil.example/\",\"open\")"
        );
        assert_eq!(cell("comm"), "'@SUM(1)");
        assert_eq!(cell("seq"), "7");
    }

    fn compile(f: FilterArgs) -> Filter {
        f.compile().unwrap()
    }

    #[test]
    fn times_are_rfc3339_dates_or_unix_seconds() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1_000_000_000);
        assert_eq!(parse_time("1970-01-02").unwrap(), 86_400_000_000_000);
        assert_eq!(parse_time("90").unwrap(), 90_000_000_000);
        assert_eq!(
            parse_time("2026-11-28T10:00:00+01:00").unwrap(),
            parse_time("2026-11-28T09:00:00Z").unwrap()
        );
        let now = 1_795_824_000_000_000_000;
        assert_eq!(
            parse_time_at("7d", now).unwrap(),
            now - 7 * 86_400 * 1_000_000_000
        );
        assert_eq!(
            parse_time_at("90m", now).unwrap(),
            now - 5_400 * 1_000_000_000
        );
        assert!(parse_time_at("-3d", now).is_err());
        assert!(parse_time_at("d", now).is_err());
        let e = parse_time("yesterday").unwrap_err();
        assert!(e.contains("\"yesterday\" is not a time"), "{e}");
    }

    #[test]
    fn bad_arguments_name_their_flag() {
        let err = |f: FilterArgs| f.compile().unwrap_err();
        assert!(err(FilterArgs {
            since: Some("soon".into()),
            ..Default::default()
        })
        .starts_with("--since: "));
        assert!(err(FilterArgs {
            verdict: Some("deny".into()),
            ..Default::default()
        })
        .starts_with("--verdict \"deny\""));
        assert!(err(FilterArgs {
            exe: Some("[".into()),
            ..Default::default()
        })
        .starts_with("--exe \"[\""));
    }

    /// Export filters events, replay filters borrowed views of the same records: for every
    /// record and every filter, both must say the same.
    #[test]
    fn events_and_views_of_the_same_records_match_the_same_filters() {
        let filters = [
            FilterArgs::default(),
            FilterArgs {
                pids: vec![1003],
                ..Default::default()
            },
            FilterArgs {
                exe: Some("/usr/bin/python*".into()),
                ..Default::default()
            },
            FilterArgs {
                dst: Some("203.0.113.0/24".into()),
                ..Default::default()
            },
            FilterArgs {
                dst: Some("2001:db8::17".into()),
                ..Default::default()
            },
            FilterArgs {
                dst: Some("*.openai.com".into()),
                ..Default::default()
            },
            FilterArgs {
                verdict: Some("violation".into()),
                ..Default::default()
            },
            FilterArgs {
                verdict: Some("none".into()),
                ..Default::default()
            },
            // The sample's flows are 1 ms apart from 2026-11-28T00:00:00Z.
            FilterArgs {
                since: Some("1795824000".into()),
                until: Some("2026-11-28T00:00:00.05Z".into()),
                ..Default::default()
            },
        ];
        let mut matched = vec![0; filters.len()];
        for i in 0..200 {
            let event = sample_event(i);
            let mut bytes = Vec::new();
            convert::encode(&event, &mut bytes);
            let view = convert::flow_view(&bytes).unwrap();
            for (n, args) in filters.iter().enumerate() {
                let filter = args.compile().unwrap();
                let by_event = filter.matches(&event);
                if let Some(v) = &view {
                    assert_eq!(by_event, filter.matches_view(v), "record {i}, filter {n}");
                }
                matched[n] += usize::from(by_event);
            }
        }
        // Each filter keeps some records and drops others (the sample has both kinds).
        for (n, count) in matched.iter().enumerate().skip(1) {
            assert!(
                *count > 0 && *count < 200,
                "filter {n} matched {count} of 200"
            );
        }
        assert_eq!(matched[0], 200, "no filter keeps everything");
    }

    #[test]
    fn flow_filters_drop_records_that_are_not_flows_time_bounds_do_not() {
        let loss = sample_event(7);
        assert!(loss.as_flow().is_none());
        let ts = loss.ts_unix_ns();
        assert!(compile(FilterArgs::default()).matches(&loss));
        assert!(!compile(FilterArgs {
            pids: vec![1000],
            ..Default::default()
        })
        .matches(&loss));
        let mut around = compile(FilterArgs::default());
        around.since_ns = Some(ts);
        around.until_ns = Some(ts + 1);
        assert!(around.matches(&loss), "since is inclusive");
        around.until_ns = Some(ts);
        assert!(!around.matches(&loss), "until is exclusive");
    }
}
