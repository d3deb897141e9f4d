//! `sovereign-agent policy check|explain`.
use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Instant,
};

use clap::{Args, Subcommand};

use super::complain;
use crate::{
    exit,
    policy::{verdict::Decision, DnsChain, Flow, Policy},
};

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate FILE and its datasets; print every error with file, line and column (exit 1).
    Check {
        file: PathBuf,
        /// A directory of datasets (provider IP-range files, .mmdb), recognised by content.
        #[arg(long, env = "SOVEREIGN_DATASETS")]
        datasets: Option<PathBuf>,
    },
    /// Print the verdict and its reasoning for one hypothetical flow (exit 0 allow, 2 violation).
    Explain(ExplainArgs),
}

impl PolicyCommand {
    pub fn execute(self) -> u8 {
        match self {
            PolicyCommand::Check { file, datasets } => check(&file, datasets.as_deref()),
            PolicyCommand::Explain(args) => explain(&args),
        }
    }
}

/// Validates a policy and its datasets. Prints a summary (exit 0) or every error with its
/// file, line and column (exit 1).
pub fn check(file: &Path, datasets: Option<&Path>) -> u8 {
    let started = Instant::now();
    match Policy::load(file, datasets) {
        Ok(p) => {
            println!("{}: valid", file.display());
            println!("policy   {} version {} ({})", p.name, p.version, p.hash);
            println!("zones    {}    rules {}", p.zone_count(), p.rule_count());
            for d in &p.datasets {
                println!(
                    "dataset  {:<7} {} ({} prefixes) {}",
                    d.kind.key(),
                    d.version,
                    d.prefixes,
                    d.path.display()
                );
            }
            if !p.catalogue_version.is_empty() {
                println!("ai catalogue version {}", p.catalogue_version);
            }
            for w in &p.warnings {
                eprintln!("{}: warning: {w}", file.display());
            }
            println!(
                "compiled in {:.0} ms, tables {:.1} MiB",
                started.elapsed().as_secs_f64() * 1000.0,
                p.heap_bytes() as f64 / f64::from(1 << 20)
            );
            exit::OK
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!("{}: {} error(s)", file.display(), errors.0.len());
            exit::FAILURE
        }
    }
}

/// A hypothetical flow to explain: the facts of a [`Flow`] as flags.
#[derive(Args)]
pub struct ExplainArgs {
    file: PathBuf,
    #[arg(long, env = "SOVEREIGN_DATASETS")]
    datasets: Option<PathBuf>,
    /// Destination: IP or IP:PORT (\[IPv6\]:PORT).
    #[arg(long)]
    dst: String,
    /// A DNS name of the destination, verified (an answer to the workload's own query from a
    /// trusted resolver); repeat it for a CNAME chain, in order: the name asked first, the
    /// owner of the address record last.
    #[arg(long = "name")]
    names: Vec<String>,
    /// The DNS names came from a resolver that is not trusted: claims, not verified.
    #[arg(long, requires = "names")]
    dns_untrusted: bool,
    /// The TLS server name (SNI) the client sent: a claim.
    #[arg(long)]
    sni: Option<String>,
    /// Explain as for a process that exited before the agent read it: its executable and
    /// cgroup are unknown (`[policy] unknown_workload` applies).
    #[arg(long, conflicts_with_all = ["exe", "cgroup", "container_id"])]
    exited: bool,
    /// Executable path of the process (a script's own path when it is one).
    #[arg(long)]
    exe: Option<String>,
    /// The interpreter running the script given as --exe.
    #[arg(long, requires = "exe")]
    interpreter: Option<String>,
    /// Executable of an ancestor of the process, parent first; repeatable.
    #[arg(long = "ancestor")]
    ancestors: Vec<String>,
    /// Task name (comm) of the process.
    #[arg(long, default_value = "")]
    comm: String,
    /// cgroup v2 path of the process.
    #[arg(long)]
    cgroup: Option<String>,
    #[arg(long)]
    container_id: Option<String>,
    #[arg(long, default_value_t = 0)]
    uid: u32,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Prints the verdict for one flow and every reason behind it. Exit 0 for allow, 2 for a
/// violation (so scripts can test a destination), 1 for a bad policy or argument.
pub fn explain(a: &ExplainArgs) -> u8 {
    let Some((ip, port)) = parse_dst(&a.dst) else {
        complain(format_args!(
            "--dst {:?}: expected IP or IP:PORT ([IPv6]:PORT)",
            a.dst
        ));
        return exit::FAILURE;
    };
    let policy = match Policy::load(&a.file, a.datasets.as_deref()) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!("{errors}");
            return exit::FAILURE;
        }
    };
    let dns: Vec<DnsChain> = if a.names.is_empty() {
        Vec::new()
    } else {
        vec![DnsChain {
            names: a.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            resolver: "(policy explain)".into(),
            verified: !a.dns_untrusted,
        }]
    };
    let sni = a.sni.as_deref().map(str::to_ascii_lowercase);
    let ancestors: Vec<std::sync::Arc<str>> =
        a.ancestors.iter().map(|s| s.as_str().into()).collect();
    let flow = Flow {
        ip,
        port,
        dns: &dns,
        sni: sni.as_deref(),
        sni_unreadable: false,
        // A fact not given is one the process has but no pattern names (""), unless the
        // process is explained as gone before it was read (unknown: None).
        exe: if a.exited {
            None
        } else {
            Some(a.exe.as_deref().unwrap_or(""))
        },
        interpreter: a.interpreter.as_deref(),
        ancestors: if a.exited { &[] } else { &ancestors },
        comm: &a.comm,
        cgroup: if a.exited {
            None
        } else {
            Some(a.cgroup.as_deref().unwrap_or(""))
        },
        container_id: a.container_id.as_deref(),
        uid: a.uid,
    };
    let verdict = policy.classify(&flow);
    let e = policy.explain(&flow, &verdict);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&e).expect("serialisable")
        );
    } else {
        let mut known = Vec::new();
        if !a.names.is_empty() {
            known.push(format!(
                "DNS{} {}",
                if a.dns_untrusted { " (untrusted)" } else { "" },
                a.names.join(" -> ")
            ));
        }
        if let Some(s) = &a.sni {
            known.push(format!("SNI {s}"));
        }
        let names = if known.is_empty() {
            "no name known".to_string()
        } else {
            known.join("; ")
        };
        let process = match a.exe.as_deref().unwrap_or(&a.comm) {
            _ if a.exited => "a process that exited before it was read",
            "" => "any process",
            p => p,
        };
        println!("flow      {ip} port {port} ({names}) from {process}");
        match e.severity {
            Some(s) => println!("verdict   {} (severity {s})", e.decision),
            None => println!("verdict   {}", e.decision),
        }
        println!("rule      {}", e.rule);
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        println!("decided by zones   {}", list(&e.zones));
        println!("in zones           {}", list(&e.matched_zones));
        for ev in &e.evidence {
            let via = match &ev.name {
                Some(n) => format!("{} {n}", ev.via),
                None => ev.via.to_string(),
            };
            println!(
                "  {} {:<16} {:<7} {:<28} {}",
                if ev.decisive { "*" } else { " " },
                ev.zone,
                ev.source,
                via,
                ev.detail
            );
        }
        println!("the datasets say");
        if e.destination.is_empty() {
            println!("  nothing: the address is in no loaded dataset");
        }
        for d in &e.destination {
            println!("  {d}");
        }
        if !e.weak.is_empty() {
            println!("weak ground");
            for w in &e.weak {
                println!("  {w}: {}", weak_text(w));
            }
        }
        println!(
            "policy    {} version {} ({})",
            e.policy.name, e.policy.version, e.policy.hash
        );
    }
    match e.decision {
        Decision::Allow => exit::OK,
        Decision::Violation => exit::VIOLATION,
    }
}

fn weak_text(w: &str) -> &'static str {
    match w {
        "no_name" => "no DNS or TLS name is known for the destination; the rule's domain zones could not be checked",
        "shared_range" => "the address is in a shared or CDN range; its region says little about where data goes",
        "conflicting_zones" => "the destination is in both an allowed and a denied zone of the rule",
        "sni_unverified" => "the TLS server name is the client's own claim: it puts the destination in an allowed zone but cannot allow it",
        "dns_untrusted" => "a name from a resolver that is not trusted is a claim: it puts the destination in an allowed zone but cannot allow it",
        "cname_leaves_zone" => "a verified CNAME chain starts in an allowed zone and ends outside it: judged on the name that owns the address",
        "name_conflict" => "the connection's TLS server name is none of the names DNS gave for the address: only the address itself can allow it",
        "sni_unreadable" => "the connection began a TLS handshake whose server name could not be read",
        "unknown_workload" => "a rule's selector needs a fact about the process that is not known (it exited before it was read); [policy] unknown_workload decided",
        "unknown_location" => "the address is in no dataset: region and country are unknown",
        _ => "",
    }
}

fn parse_dst(dst: &str) -> Option<(IpAddr, u16)> {
    if let Ok(sa) = dst.parse::<SocketAddr>() {
        return Some((sa.ip(), sa.port()));
    }
    dst.parse::<IpAddr>().ok().map(|ip| (ip, 0))
}
