//! `sovereign-agent tail` and `sovereign-agent status`: clients of the agent's gRPC API on its
//! Unix socket. `tail` prints the event stream as readable, coloured lines on a terminal and
//! as JSON lines (the live output's fields plus `seq`) otherwise.
use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
};

use clap::Args;
use hyper_util::rt::TokioIo;
use sovereign_agent_proto::agent::v1::{
    self as pb, agent_service_client::AgentServiceClient, stream_events_response::Item,
};
use tonic::transport::{Channel, Endpoint, Uri};

use super::complain;
use crate::{event::Event, exit, journal::convert, journal::feed::filter};

/// Where `tail` and `status` find the API.
#[derive(Args)]
pub struct TargetFlags {
    /// The API's Unix socket (an agent's, or a collector's --api-socket).
    #[arg(
        long,
        env = "SOVEREIGN_API_SOCKET",
        default_value = "/run/sovereign-agent/agent.sock"
    )]
    socket: PathBuf,
    /// A collector (or an agent's TCP API) instead: https://HOST:PORT, with mutual TLS.
    #[arg(long, requires_all = ["ca", "cert", "key"])]
    collector: Option<String>,
    /// CA the server's certificate chains to (PEM), with --collector.
    #[arg(long, env = "SOVEREIGN_TLS_CA")]
    ca: Option<PathBuf>,
    /// This client's certificate (PEM), with --collector.
    #[arg(long, env = "SOVEREIGN_TLS_CERT")]
    cert: Option<PathBuf>,
    /// This client's key (PEM), with --collector.
    #[arg(long, env = "SOVEREIGN_TLS_KEY")]
    key: Option<PathBuf>,
}

impl TargetFlags {
    fn target(&self) -> Target {
        match (&self.collector, &self.ca, &self.cert, &self.key) {
            (Some(url), Some(ca), Some(cert), Some(key)) => Target::Tls {
                url: url.clone(),
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => Target::Socket(self.socket.clone()),
        }
    }
}

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

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: TargetFlags,
    #[arg(long)]
    json: bool,
}

pub fn execute_tail(args: TailArgs) -> u8 {
    client_runtime().block_on(tail(args))
}

pub fn execute_status(args: &StatusArgs) -> u8 {
    client_runtime().block_on(status(&args.target.target(), args.json))
}

/// A small runtime for the API clients.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// Where the API is: a local Unix socket, or a collector (or agent) on TCP with mutual TLS.
#[derive(Clone, Debug)]
pub enum Target {
    Socket(PathBuf),
    Tls {
        /// `https://host:port`
        url: String,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
}

/// Connects to the API at `target`.
pub async fn connect_to(target: &Target) -> Result<AgentServiceClient<Channel>, String> {
    match target {
        Target::Socket(path) => connect(path).await,
        Target::Tls { url, ca, cert, key } => Ok(AgentServiceClient::new(
            crate::serve::tls::tls_channel(url, ca, cert, key).await?,
        )),
    }
}

/// Connects to the agent's API on `socket`.
pub async fn connect(socket: &Path) -> Result<AgentServiceClient<Channel>, String> {
    let path: PathBuf = socket.to_path_buf();
    // The URI is required by the API but unused: the connector dials the socket.
    let channel = Endpoint::from_static("http://agent.local")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| {
            format!(
                "cannot connect to the agent's API at {}: {} (is the agent running, and are you root?)",
                socket.display(),
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string)
            )
        })?;
    Ok(AgentServiceClient::new(channel))
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

/// `sovereign-agent status`: the agent's `GetStatus`, as text or JSON.
pub async fn status(target: &Target, json: bool) -> u8 {
    let mut client = match connect_to(target).await {
        Ok(c) => c,
        Err(e) => {
            complain(e);
            return exit::UNAVAILABLE;
        }
    };
    let s = match client.get_status(pb::GetStatusRequest {}).await {
        Ok(r) => r.into_inner(),
        Err(e) => {
            eprintln!("sovereign-agent: GetStatus failed: {}", e.message());
            return exit::FAILURE;
        }
    };
    if json {
        let policy = s
            .policy
            .as_ref()
            .map(|p| serde_json::json!({"name": p.name, "version": p.version, "hash": p.hash}));
        let v = serde_json::json!({
            "version": s.version, "hostname": s.hostname, "cgroup": s.cgroup,
            "hooks": s.hooks, "hooks_failed": s.hooks_failed, "policy": policy,
            "started": crate::clock::rfc3339_from_unix_ns(i128::from(s.started_unix_ns)),
            "events": s.events, "kernel_losses": s.kernel_losses,
            "decode_errors": s.decode_errors, "subscribers": s.subscribers,
            "journal_dir": s.journal_dir, "journal_next_seq": s.journal_next_seq,
            "not_journaled": s.not_journaled,
            "sinks": s.sinks.iter().map(|k| serde_json::json!({
                "name": k.name, "type": k.r#type, "delivered": k.delivered,
                "backlog": k.backlog, "lag_seconds": k.lag_seconds, "errors": k.errors,
                "connected": k.connected, "last_error": k.last_error,
            })).collect::<Vec<_>>(),
            "agents": s.agents.iter().map(|a| serde_json::json!({
                "agent_id": a.agent_id, "journal_id": a.journal_id, "last_seq": a.last_seq,
                "last_seen": (a.last_seen_unix_ns != 0)
                    .then(|| crate::clock::rfc3339_from_unix_ns(i128::from(a.last_seen_unix_ns))),
                "journal_next_seq": a.journal_next_seq, "backlog": a.backlog,
                "connected": a.connected,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        println!("sovereign-agent {} on {}", s.version, s.hostname);
        println!("  watching      {}", s.cgroup);
        println!("  hooks         {}", s.hooks.join(", "));
        if !s.hooks_failed.is_empty() {
            println!("  NOT attached  {}", s.hooks_failed.join(", "));
        }
        match &s.policy {
            Some(p) => println!(
                "  policy        {} version {} ({})",
                p.name, p.version, p.hash
            ),
            None => println!("  policy        none"),
        }
        println!(
            "  events        {} (kernel losses {}, decode errors {})",
            s.events, s.kernel_losses, s.decode_errors
        );
        println!(
            "  journal       {} next seq {} (not journaled {})",
            s.journal_dir, s.journal_next_seq, s.not_journaled
        );
        println!("  subscribers   {}", s.subscribers);
        for k in &s.sinks {
            let state = if k.connected {
                "connected".to_string()
            } else if k.last_error.is_empty() {
                "not connected".to_string()
            } else {
                format!("NOT connected: {}", k.last_error)
            };
            println!(
                "  sink          {} ({}) delivered {} backlog {} lag {:.3}s errors {}, {state}",
                k.name, k.r#type, k.delivered, k.backlog, k.lag_seconds, k.errors
            );
        }
        for a in &s.agents {
            let seen = if a.last_seen_unix_ns == 0 {
                "not since start".to_string()
            } else {
                crate::clock::rfc3339_from_unix_ns(i128::from(a.last_seen_unix_ns))
            };
            println!(
                "  agent         {} journal {} last seq {} head {} backlog {} seen {seen}{}",
                a.agent_id,
                a.journal_id,
                a.last_seq,
                a.journal_next_seq,
                a.backlog,
                if a.connected { ", connected" } else { "" }
            );
        }
    }
    exit::OK
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
