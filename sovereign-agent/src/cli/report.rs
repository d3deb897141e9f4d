//! `sovereign-agent report DIR`: the residency report of a journal (an agent's, or a
//! collector's for the fleet) as HTML, JSON or CSV (docs/report.md). Exit 0; 1 when the
//! journal is damaged (the report is still written, and says so) unless `--allow-damaged`;
//! 64 bad arguments; 65 a dataset or policy that cannot be read; 66 not a journal.
use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
};

use clap::{Args, ValueEnum};

use super::{
    complain,
    journal::{parse_time, FilterArgs},
    replay,
};
use crate::{
    clock::rfc3339_from_unix_ns,
    exit,
    journal::reader,
    report::{self, model, Window},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One self-contained HTML file (printable to PDF).
    Html,
    /// Everything in the report, as one JSON document.
    Json,
    /// The egress inventory, one row per workload and destination.
    Csv,
}

#[derive(Args)]
pub struct ReportArgs {
    /// The journal directory: an agent's, or a collector's (a fleet report, with an agent
    /// column).
    pub dir: PathBuf,
    /// Start of the period: RFC 3339, a date, Unix seconds, or a time ago (`7d`, `24h`);
    /// default: the journal's start.
    #[arg(long)]
    pub since: Option<String>,
    /// End of the period (exclusive); default: the journal's end.
    #[arg(long)]
    pub until: Option<String>,
    /// A proposed policy: the report adds what it would change over the period (as `replay`).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Datasets (cloud IP-range files, MaxMind databases) to locate destinations with;
    /// default: those the agent recorded with its policy, where it read them.
    #[arg(long, env = "SOVEREIGN_DATASETS")]
    pub datasets: Option<PathBuf>,
    /// Ed25519 public key (PEM) that must have signed the journal's seals.
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Html)]
    pub format: Format,
    /// Write here instead of standard output (written whole, then renamed into place).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Countries the organisation treats as adequate beside the EEA: ISO codes, comma
    /// separated (e.g. CH,GB,JP).
    #[arg(long, value_delimiter = ',')]
    pub adequate: Vec<String>,
    /// Exit 0 even when the journal is damaged (the report says so on its first page).
    #[arg(long)]
    pub allow_damaged: bool,
}

pub fn run(args: &ReportArgs) -> u8 {
    match report(args) {
        Ok(code) => code,
        Err((code, message)) => {
            complain(message);
            code
        }
    }
}

fn report(args: &ReportArgs) -> Result<u8, (u8, String)> {
    let usage = |m: String| (exit::USAGE, m);
    let window = Window {
        since: args
            .since
            .as_deref()
            .map(|s| parse_time(s).map_err(|e| usage(format!("--since: {e}"))))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|s| parse_time(s).map_err(|e| usage(format!("--until: {e}"))))
            .transpose()?,
    };
    if let (Some(s), Some(u)) = (window.since, window.until) {
        if u <= s {
            return Err(usage("--until must be after --since".to_string()));
        }
    }
    let mut adequate = Vec::new();
    for code in &args.adequate {
        let code = code.trim().to_ascii_uppercase();
        if !crate::policy::countries::is_code(&code) {
            return Err(usage(format!(
                "--adequate {code:?}: not an ISO 3166 country code (e.g. CH, GB, JP)"
            )));
        }
        adequate.push(code);
    }
    let key = match &args.public_key {
        Some(path) => Some((
            path.as_path(),
            crate::journal::keys::read_verifying_key(path)
                .map_err(|e| usage(format!("--public-key {e}")))?,
        )),
        None => None,
    };
    let replay = args
        .policy
        .as_deref()
        .map(|policy| replay_diff(args, window, policy))
        .transpose()?;

    let bar = progress_bar(&args.dir);
    let opts = report::Options {
        dir: &args.dir,
        window,
        datasets: args.datasets.as_deref(),
        public_key: key,
        adequate,
    };
    let built = report::build(&opts, |bytes| {
        if let Some(b) = &bar {
            b.inc(bytes);
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut report = built.map_err(|e| match e {
        report::BuildError::NoJournal(m) => (exit::NOINPUT, m),
        report::BuildError::Datasets(m) => (exit::DATAERR, format!("--datasets: {m}")),
    })?;
    report.replay = replay;

    let mut out = Vec::new();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report).expect("plain structs");
            out.push(b'\n');
        }
        Format::Csv => report::csv::write(&report, &mut out).expect("writing to memory"),
        Format::Html => {
            out = report::html::render(&report)
                .map_err(|e| (exit::FAILURE, format!("rendering the report: {e:#}")))?
                .into_bytes();
        }
    }
    write_out(args.output.as_deref(), &out)?;
    if report.integrity.intact || args.allow_damaged {
        return Ok(exit::OK);
    }
    complain(format_args!(
        "{}: the journal is damaged ({}); the report says so on its first page (--allow-damaged to exit 0)",
        args.dir.display(),
        report
            .integrity
            .verify
            .problem
            .as_deref()
            .or(report.missing.last().map(String::as_str))
            .unwrap_or("it could not be read completely")
    ));
    Ok(exit::FAILURE)
}

fn progress_bar(dir: &Path) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let total = reader::segments(dir).map_or(0, |s| reader::total_bytes(&s));
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("reporting {bar:40} {bytes}/{total_bytes} ({eta})")
            .expect("valid template"),
    );
    Some(bar)
}

/// `replay` over the same period, summarised for the report.
fn replay_diff(
    args: &ReportArgs,
    window: Window,
    policy: &Path,
) -> Result<model::ReplayDiff, (u8, String)> {
    let r = replay::replay(&replay::ReplayArgs {
        dir: args.dir.clone(),
        policy: policy.to_path_buf(),
        datasets: args.datasets.clone(),
        // The bounds as parsed once (a relative time like `7d` means the same instant).
        filter: FilterArgs {
            since: window.since.map(|t| rfc3339_from_unix_ns(i128::from(t))),
            until: window.until.map(|t| rfc3339_from_unix_ns(i128::from(t))),
            ..Default::default()
        },
        json: true,
        limit: 0,
    })
    .map_err(|(code, m)| (code, format!("--policy: {m}")))?;
    Ok(model::ReplayDiff {
        policy_name: r.policy.name,
        policy_version: r.policy.version,
        policy_hash: r.policy.hash,
        flow_events: r.flow_events,
        new_violations: r.new_violations,
        newly_allowed: r.newly_allowed,
        unchanged: r.unchanged,
        changes: r
            .changes
            .into_iter()
            .map(|g| model::ReplayChange {
                change: match g.key.change {
                    replay::Change::NewViolation => "new_violation",
                    replay::Change::NewlyAllowed => "newly_allowed",
                }
                .to_string(),
                workload: g.key.workload,
                destination: g.key.destination,
                was: if g.key.was_rule.is_empty() {
                    g.key.was
                } else {
                    format!("{} ({})", g.key.was, g.key.was_rule)
                },
                now: if g.key.now_severity.is_empty() {
                    format!("allow ({})", g.key.now_rule)
                } else {
                    format!("violation {} ({})", g.key.now_severity, g.key.now_rule)
                },
                events: g.events,
            })
            .collect(),
    })
}

/// Standard output, or `path` written whole beside itself and renamed into place (a reader
/// never sees half a report).
fn write_out(path: Option<&Path>, bytes: &[u8]) -> Result<(), (u8, String)> {
    let Some(path) = path else {
        let mut stdout = std::io::stdout().lock();
        return stdout
            .write_all(bytes)
            .and_then(|()| stdout.flush())
            .map_err(|e| (exit::IOERR, format!("standard output: {e}")));
    };
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            (exit::CANTCREAT, format!("--output {}: {e}", path.display()))
        })
}
