//! `sovereign-agent tail`: the API's event stream ([`super::client`] finds the API). It prints the event stream as readable, coloured lines on a terminal and
//! as JSON lines (the live output's fields plus `seq`) otherwise.
use std::io::{IsTerminal, Write};

use clap::Args;
use sovereign_agent_proto::agent::v1::{self as pb, stream_events_response::Item};

use super::{
    client::{client_runtime, connect_to, TargetFlags},
    complain,
};
use crate::{event::Event, exit, journal::convert, journal::feed::filter};

#[derive(Args)]
pub struct TailArgs {
    #[command(flatten)]
    target: TargetFlags,
    /// Start from this journal sequence number (history first, then live).
    #[arg(long)]
    since_seq: Option<u64>,
    /// Only these kinds (connect, send, close, policy, ...); repeatable.
    #[arg(long = "kind")]
    kinds: Vec<String>,
    /// Only flows with this verdict: allow or violation.
    #[arg(long)]
    verdict: Option<String>,
    /// Only violations at least this severe: info, low, medium, high, critical.
    #[arg(long, value_parser = ["info", "low", "medium", "high", "critical"])]
    min_severity: Option<String>,
    /// Only flows whose workload (unit, container, executable) matches this glob.
    #[arg(long)]
    workload: Option<String>,
    /// Only flows to this address, CIDR or name glob.
    #[arg(long)]
    dst: Option<String>,
    /// JSON lines even on a terminal.
    #[arg(long)]
    json: bool,
    /// Exit after this many events.
    #[arg(long)]
    count: Option<u64>,
}

impl TailArgs {
    /// The stream filter, as the API takes it (the agent validates it).
    fn filter(&self) -> pb::EventFilter {
        pb::EventFilter {
            kinds: self.kinds.clone(),
            verdict: self.verdict.clone().unwrap_or_default(),
            min_severity: self
                .min_severity
                .as_deref()
                .and_then(|s| {
                    pb::Severity::from_str_name(&format!("SEVERITY_{}", s.to_uppercase()))
                })
                .map_or(0, |s| s as i32),
            workload: self.workload.clone().unwrap_or_default(),
            destination: self.dst.clone().unwrap_or_default(),
        }
    }
}

pub fn execute_tail(args: TailArgs) -> u8 {
    client_runtime().block_on(tail(args))
}

/// Exit 0 when `count` events were printed or the agent ended the stream; 1 when the stream
/// broke; 64 for a bad filter; 69 when the agent cannot be reached.
pub async fn tail(args: TailArgs) -> u8 {
    let mut client = match connect_to(&args.target.target()).await {
        Ok(c) => c,
        Err(e) => {
            complain(e);
            return exit::UNAVAILABLE;
        }
    };
    let request = pb::StreamEventsRequest {
        since_seq: args.since_seq,
        filter: Some(args.filter()),
    };
    let mut stream = match client.stream_events(request).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            complain(s.message());
            return exit::USAGE;
        }
        Err(s) => {
            eprintln!(
                "sovereign-agent: the agent refused the stream: {}",
                s.message()
            );
            return exit::FAILURE;
        }
    };
    let pretty = std::io::stdout().is_terminal() && !args.json;
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    loop {
        let message = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return exit::OK,
            Err(s) => {
                eprintln!("sovereign-agent: the stream broke: {}", s.message());
                return exit::FAILURE;
            }
        };
        let line = match message.item {
            Some(Item::Event(e)) => {
                let seq = e.seq;
                let agent = (!e.agent_id.is_empty()).then(|| Origin {
                    id: e.agent_id.clone(),
                    journal: e.agent_journal_id.clone(),
                    seq: e.agent_seq,
                });
                let text = if pretty {
                    pretty_line(&e)
                } else {
                    match convert::from_proto(e) {
                        Ok(event) => json_line(seq, agent, &event),
                        Err(err) => format!("{{\"seq\":{seq},\"error\":{:?}}}", err.to_string()),
                    }
                };
                printed += 1;
                text
            }
            Some(Item::Missed(m)) => {
                if pretty {
                    format!("\x1b[33m--- missed {} events (no longer in the journal); resuming at {}\x1b[0m", m.events, m.resumed_at_seq)
                } else {
                    format!(
                        "{{\"kind\":\"missed\",\"events\":{},\"resumed_at_seq\":{}}}",
                        m.events, m.resumed_at_seq
                    )
                }
            }
            None => continue,
        };
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            return exit::OK; // stdout closed (e.g. `| head`)
        }
        if args.count.is_some_and(|n| printed >= n) {
            return exit::OK;
        }
    }
}

/// Where a collector's event came from: the agent, its journal, its sequence number there.
struct Origin {
    id: String,
    journal: String,
    seq: u64,
}

/// `{"seq":N,` (and, from a collector, the agent's id, journal identity and sequence number)
/// + the event's JSON.
fn json_line(seq: u64, agent: Option<Origin>, event: &Event) -> String {
    let mut json = serde_json::to_string(event).expect("serializable");
    let prefix = match agent {
        Some(o) => format!(
            "{{\"seq\":{seq},\"agent_id\":{},\"agent_journal_id\":{},\"agent_seq\":{},",
            serde_json::to_string(&o.id).expect("a string"),
            serde_json::to_string(&o.journal).expect("a string"),
            o.seq
        ),
        None => format!("{{\"seq\":{seq},"),
    };
    json.replace_range(..1, &prefix);
    json
}

/// One event as a coloured line for a terminal. Every string a workload chooses (its
/// executable, names, cgroup, the resolver's claims) goes through [`crate::escape::terminal`]: an
/// escape sequence in an exe path must not rewrite the operator's screen.
fn pretty_line(e: &pb::Event) -> String {
    use crate::escape::terminal as t;
    let ts = crate::clock::rfc3339_from_unix_ns(i128::from(e.ts_unix_ns));
    let kind = filter::kind_of(e);
    match &e.body {
        Some(pb::event::Body::Flow(f)) => {
            let ip = filter::dst_ip_of(f)
                .map(|i| i.to_string())
                .unwrap_or_default();
            let dest = match f.names.first() {
                Some(n) => format!("{} ({ip}):{}", t(n), f.dst_port),
                None => format!("{ip}:{}", f.dst_port),
            };
            let verdict = match &f.verdict {
                Some(v) if v.decision == pb::Decision::Violation as i32 => format!(
                    "\x1b[1;31mVIOLATION {} rule {} zones {}\x1b[0m",
                    pb::Severity::try_from(v.severity)
                        .map(|s| s
                            .as_str_name()
                            .trim_start_matches("SEVERITY_")
                            .to_lowercase())
                        .unwrap_or_default(),
                    t(&v.rule),
                    t(&v.zones.join(","))
                ),
                Some(v) => format!("\x1b[32mallow\x1b[0m ({})", t(&v.rule)),
                None => String::new(),
            };
            format!(
                "\x1b[2m{}{} #{}\x1b[0m {:<11} {:<20} pid {:<7} \x1b[1m→ {}\x1b[0m {}",
                if e.agent_id.is_empty() {
                    String::new()
                } else {
                    format!("[{}] ", t(&e.agent_id))
                },
                ts,
                e.seq,
                kind,
                t(filter::workload_of(f)),
                f.pid,
                dest,
                verdict
            )
        }
        Some(pb::event::Body::Alert(a)) => {
            format!(
            "\x1b[2m{ts} #{}\x1b[0m \x1b[1;41;37m ALERT \x1b[0m \x1b[1;31m{} {}\x1b[0m {} → {} ×{}",
            e.seq,
            pb::Severity::try_from(a.severity)
                .map(|s| s.as_str_name().trim_start_matches("SEVERITY_").to_lowercase())
                .unwrap_or_default(),
            t(&a.rule),
            t(&a.workload),
            t(&a.destination),
            a.count
        )
        }
        Some(pb::event::Body::Loss(l)) => {
            format!(
                "\x1b[2m{ts} #{}\x1b[0m \x1b[33mloss: the kernel dropped {} records\x1b[0m",
                e.seq, l.lost
            )
        }
        Some(pb::event::Body::DnsRefused(d)) => {
            format!(
                "\x1b[2m{ts} #{}\x1b[0m \x1b[1;33mDNS answer refused ({})\x1b[0m {} from {} claims {} ×{}",
                e.seq,
                t(&d.reason),
                t(d.cgroup.as_deref().unwrap_or(&d.comm)),
                t(&d.resolver),
                t(&d.names.join(", ")),
                d.count
            )
        }
        Some(pb::event::Body::Flood(f)) => {
            let who = t(f.flow.as_ref().map_or("?", filter::workload_of));
            let pid = f.flow.as_ref().map_or(0, |f| f.pid);
            format!(
                "\x1b[2m{ts} #{}\x1b[0m \x1b[1;31mFLOOD\x1b[0m {who} (pid {pid}, {}) suppressed tcp_connects={} udp={} dns={} tls={} process_records={}",
                e.seq, t(&f.scope), f.tcp_connects, f.udp, f.dns_packets, f.tls_segments, f.process_records
            )
        }
        _ => format!("\x1b[2m{ts} #{}\x1b[0m \x1b[36m{kind}\x1b[0m", e.seq),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{event::Event, journal::convert::to_proto};

    #[test]
    fn a_workload_chosen_escape_sequence_reaches_the_terminal_as_text() {
        // Issue 31, finding 6: an executable whose path holds an escape sequence (here: set
        // the window title, clear the screen) must not act on the operator's terminal.
        let mut f = crate::journal::tests::sample_flow(1);
        f.systemd_unit = None;
        f.exe = Some("/tmp/\x1b]0;owned\x07\x1b[2J".into());
        f.names = vec!["evil\x1b[8m.example".into()];
        let line = pretty_line(&to_proto(&Event::Flow(Box::new(f)), 3));
        assert!(line.contains("/tmp/\\x1b]0;owned\\x07\\x1b[2J"), "{line:?}");
        assert!(line.contains("evil\\x1b[8m.example"), "{line:?}");
        // The line's own colours are the only escape sequences left in it.
        let without_ours = line
            .replace("\x1b[0m", "")
            .replace("\x1b[2m", "")
            .replace("\x1b[1m", "")
            .replace("\x1b[1;31m", "")
            .replace("\x1b[32m", "");
        assert!(!without_ours.contains('\x1b'), "{without_ours:?}");
    }
}
