//! Which records `journal export`, `replay` and `report` look at: the flags, and the filter
//! they compile to (times, pid, exe, destination, verdict).
use clap::Args;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use crate::{
    event::{Event, FlowEvent},
    journal::filter::{glob, Destination},
    policy::Decision,
};

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
