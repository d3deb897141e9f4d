//! The `sovereign-agent` binary: parse the command line, load the config (exit 64 on a bad
//! one), start tracing, run.
use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use sovereign_agent::{
    agent, cli,
    config::{Config, LogFormat},
    telemetry,
};

#[derive(Parser)]
#[command(
    name = "sovereign-agent",
    version,
    about = "Watches every outbound connection of a host with eBPF and reports each flow"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach to a cgroup (default: the whole host) and write one JSON line per flow event.
    Run(RunArgs),
    /// Validate a configuration file and print the effective settings.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Keep the cloud providers' IP-range files current.
    Datasets {
        #[command(subcommand)]
        command: DatasetsCommand,
    },
    /// Check a residency policy, or explain its verdict for one flow.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Verify or export the forensic journal.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// Print the running agent's events as they happen (from its gRPC API): coloured lines on a
    /// terminal, JSON lines otherwise.
    Tail {
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
    },
    /// Print the running agent's status (from its gRPC API).
    Status {
        #[command(flatten)]
        target: TargetFlags,
        #[arg(long)]
        json: bool,
    },
    /// Judge every flow of a journal again under a new policy and report what changes
    /// (exit 0: no new violations, 2: new violations).
    Replay {
        /// The journal directory.
        dir: PathBuf,
        /// The policy to replay under.
        #[arg(long)]
        policy: PathBuf,
        /// A directory of datasets for the policy.
        #[arg(long, env = "SOVEREIGN_DATASETS")]
        datasets: Option<PathBuf>,
        #[command(flatten)]
        filter: FilterFlags,
        /// Print the full report as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Rows of the change table to print.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum JournalCommand {
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
        filter: FilterFlags,
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
        format: String,
    },
}

/// Where `tail` and `status` find the API.
#[derive(Args)]
struct TargetFlags {
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
    fn target(self) -> cli::tail::Target {
        match (self.collector, self.ca, self.cert, self.key) {
            (Some(url), Some(ca), Some(cert), Some(key)) => {
                cli::tail::Target::Tls { url, ca, cert, key }
            }
            _ => cli::tail::Target::Socket(self.socket),
        }
    }
}

/// Record filters of `journal export` and `replay`.
#[derive(Args)]
struct FilterFlags {
    /// Records at or after this time (RFC 3339, a date, or Unix seconds).
    #[arg(long)]
    since: Option<String>,
    /// Records before this time.
    #[arg(long)]
    until: Option<String>,
    /// Flows of this process id; repeatable.
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// Flows whose executable matches this glob, e.g. `/usr/bin/python*`.
    #[arg(long)]
    exe: Option<String>,
    /// Flows to this address, CIDR, or name glob (`*.openai.com`).
    #[arg(long)]
    dst: Option<String>,
    /// Flows with this recorded verdict: allow, violation, none.
    #[arg(long)]
    verdict: Option<String>,
}

impl FilterFlags {
    fn compile(self) -> Result<cli::journal::Filter, String> {
        cli::journal::FilterArgs {
            since: self.since,
            until: self.until,
            pids: self.pids,
            exe: self.exe,
            dst: self.dst,
            verdict: self.verdict,
        }
        .compile()
    }
}

#[derive(Subcommand)]
enum DatasetsCommand {
    /// Download each provider file, validate it, replace the old one atomically, print what
    /// changed per region. Exit 1 if any provider failed (its old file is kept).
    Update {
        dir: PathBuf,
        /// Providers to update (aws, azure, gcp, oracle); default: those already in DIR, or all.
        #[arg(long = "provider", value_parser = ["aws", "azure", "gcp", "oracle"])]
        providers: Vec<String>,
        /// Where to download a provider's file from instead of its publisher: PROVIDER=URL
        /// (e.g. an internal mirror); repeatable.
        #[arg(long = "url")]
        urls: Vec<String>,
        /// Give up on a download after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate FILE and its datasets; print every error with file, line and column (exit 1).
    Check {
        file: PathBuf,
        /// A directory of datasets (provider IP-range files, .mmdb), recognised by content.
        #[arg(long, env = "SOVEREIGN_DATASETS")]
        datasets: Option<PathBuf>,
    },
    /// Print the verdict and its reasoning for one hypothetical flow (exit 0 allow, 2 violation).
    Explain {
        file: PathBuf,
        #[arg(long, env = "SOVEREIGN_DATASETS")]
        datasets: Option<PathBuf>,
        /// Destination: IP or IP:PORT ([IPv6]:PORT).
        #[arg(long)]
        dst: String,
        /// A DNS name of the destination, verified (an answer to the workload's own query
        /// from a trusted resolver); repeat it for a CNAME chain, in order: the name asked
        /// first, the owner of the address record last.
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
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check FILE with the SOVEREIGN_* environment applied, as `run` would see it: keys,
    /// types, values, and the files it names (policy compiled, TLS files, signing key).
    /// Prints the effective configuration; exit 64 on the first problem.
    Check { file: Option<PathBuf> },
}

#[derive(Args)]
struct RunArgs {
    /// Configuration file (TOML); see docs/configuration.md.
    #[arg(long, env = "SOVEREIGN_CONFIG")]
    config: Option<PathBuf>,
    /// cgroup v2 to watch: absolute, or relative to the cgroup v2 root. Default: the whole host.
    #[arg(long)]
    cgroup: Option<PathBuf>,
    /// Where to write events: a file (appended) or `-` for stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Residency policy: every flow event gets a verdict. Reloaded on SIGHUP and on change.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Directory of datasets for the policy (provider IP-range files, .mmdb databases).
    #[arg(long)]
    datasets: Option<PathBuf>,
    /// Longest delay before an event is read, in ms; 0 wakes the agent for every record.
    #[arg(long)]
    max_event_delay_ms: Option<u64>,
    /// Journal directory (default /var/lib/sovereign-agent/journal).
    #[arg(long)]
    journal: Option<PathBuf>,
    /// Do not journal (events still go to --output).
    #[arg(long, conflicts_with = "journal")]
    no_journal: bool,
    /// Unix socket of the gRPC API (default /run/sovereign-agent/agent.sock).
    #[arg(long)]
    api_socket: Option<PathBuf>,
    /// Do not serve the gRPC API.
    #[arg(long, conflicts_with = "api_socket")]
    no_api: bool,
    /// Address of the metrics and health endpoints (default 127.0.0.1:9464; port 0 picks one).
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Do not serve metrics and health endpoints.
    #[arg(long, conflicts_with = "metrics_listen")]
    no_metrics: bool,
    /// Log filter, e.g. `info` or `debug`.
    #[arg(long, env = "SOVEREIGN_LOG")]
    log_level: Option<String>,
    /// Log format: `text` or `json`.
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

const EX_USAGE: u8 = 64;

/// A small runtime for the API clients (`tail`, `status`).
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

fn load_config(args: &RunArgs) -> Result<Config, String> {
    let (mut config, unknown) = Config::load_layered(args.config.as_deref(), std::env::vars())
        .map_err(|e| e.to_string())?;
    warn_unknown_variables(&unknown);
    if let Some(c) = &args.cgroup {
        config.cgroup = Some(c.clone());
    }
    if let Some(o) = &args.output {
        config.output = o.clone();
    }
    if let Some(p) = &args.policy {
        config.policy = Some(p.clone());
    }
    if let Some(d) = &args.datasets {
        config.datasets = Some(d.clone());
    }
    if let Some(j) = &args.journal {
        config.journal.dir = j.clone();
        config.journal.enabled = true;
    }
    if args.no_journal {
        config.journal.enabled = false;
    }
    if let Some(s) = &args.api_socket {
        config.api.socket = s.clone();
        config.api.enabled = true;
    }
    if args.no_api {
        config.api.enabled = false;
    }
    if let Some(m) = args.metrics_listen {
        config.metrics.listen = m;
        config.metrics.enabled = true;
    }
    if args.no_metrics {
        config.metrics.enabled = false;
    }
    if let Some(d) = args.max_event_delay_ms {
        config.max_event_delay_ms = d;
    }
    if let Some(l) = &args.log_level {
        config.log.level = l.clone();
    }
    if let Some(f) = &args.log_format {
        config.log.format = if f == "json" {
            LogFormat::Json
        } else {
            LogFormat::Text
        };
    }
    config
        .validate("from the command line")
        .map_err(|e| e.to_string())?;
    Ok(config)
}

/// Logging is not set up yet when the configuration is read: straight to stderr.
fn warn_unknown_variables(unknown: &[String]) {
    for name in unknown {
        eprintln!(
            "sovereign-agent: warning: environment variable {name} is not a setting \
             (docs/configuration.md lists them); ignored"
        );
    }
}

/// `config check`: everything `run` checks before it loads a program.
fn config_check(file: Option<&std::path::Path>) -> Result<Config, String> {
    let (config, unknown) =
        Config::load_layered(file, std::env::vars()).map_err(|e| e.to_string())?;
    warn_unknown_variables(&unknown);
    config.check_files().map_err(|e| e.to_string())?;
    if let Some(policy) = &config.policy {
        sovereign_agent::policy::Policy::load(policy, config.datasets.as_deref())
            .map_err(|e| e.to_string())?;
    }
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        // A command whose output is piped into `head` ends quietly, as Unix tools do, rather
        // than panicking on the closed pipe. (The agent itself reports a closed output.)
        // SAFETY: setting a signal's disposition to the default before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match config_check(file.as_deref()) {
            Ok(config) => {
                let origin = file.as_deref().map_or_else(
                    || "built-in defaults".to_string(),
                    |f| f.display().to_string(),
                );
                println!("# {origin}: valid; the effective configuration:");
                print!("{}", toml::to_string(&config).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sovereign-agent: {e}");
                ExitCode::from(EX_USAGE)
            }
        },
        Command::Datasets {
            command:
                DatasetsCommand::Update {
                    dir,
                    providers,
                    urls,
                    timeout_secs,
                },
        } => {
            let mut overrides = std::collections::HashMap::new();
            for u in &urls {
                let parsed = u
                    .split_once('=')
                    .and_then(|(p, url)| Some((cli::datasets::parse_provider(p)?, url)));
                match parsed {
                    Some((kind, url)) => {
                        overrides.insert(kind, url.to_string());
                    }
                    None => {
                        eprintln!("sovereign-agent: --url {u:?}: expected PROVIDER=URL with PROVIDER one of aws, azure, gcp, oracle");
                        return ExitCode::from(EX_USAGE);
                    }
                }
            }
            ExitCode::from(cli::datasets::update(&cli::datasets::UpdateArgs {
                dir: &dir,
                providers: providers
                    .iter()
                    .filter_map(|p| cli::datasets::parse_provider(p))
                    .collect(),
                urls: overrides,
                timeout: std::time::Duration::from_secs(timeout_secs),
            }))
        }
        Command::Policy { command } => ExitCode::from(match command {
            PolicyCommand::Check { file, datasets } => {
                cli::policy::check(&file, datasets.as_deref())
            }
            PolicyCommand::Explain {
                file,
                datasets,
                dst,
                names,
                dns_untrusted,
                sni,
                exited,
                exe,
                interpreter,
                ancestors,
                comm,
                cgroup,
                container_id,
                uid,
                json,
            } => cli::policy::explain(&cli::policy::ExplainArgs {
                file: &file,
                datasets: datasets.as_deref(),
                dst: &dst,
                names: &names,
                dns_untrusted,
                sni: sni.as_deref(),
                exited,
                exe: exe.as_deref(),
                interpreter: interpreter.as_deref(),
                ancestors: &ancestors,
                comm: &comm,
                cgroup: cgroup.as_deref(),
                container_id: container_id.as_deref(),
                uid,
                json,
            }),
        }),
        Command::Journal {
            command:
                JournalCommand::Verify {
                    dir,
                    public_key,
                    json,
                },
        } => ExitCode::from(cli::journal::verify(&dir, public_key.as_deref(), json)),
        Command::Journal {
            command:
                JournalCommand::Export {
                    dir,
                    filter,
                    format,
                },
        } => match filter.compile() {
            Ok(filter) => ExitCode::from(cli::journal::export(
                &dir,
                &filter,
                if format == "csv" {
                    cli::journal::ExportFormat::Csv
                } else {
                    cli::journal::ExportFormat::Jsonl
                },
            )),
            Err(e) => {
                eprintln!("sovereign-agent: {e}");
                ExitCode::from(EX_USAGE)
            }
        },
        Command::Replay {
            dir,
            policy,
            datasets,
            filter,
            json,
            limit,
        } => match filter.compile() {
            Ok(filter) => ExitCode::from(cli::replay::run(&cli::replay::ReplayArgs {
                dir: &dir,
                policy: &policy,
                datasets: datasets.as_deref(),
                filter,
                json,
                limit,
            })),
            Err(e) => {
                eprintln!("sovereign-agent: {e}");
                ExitCode::from(EX_USAGE)
            }
        },
        Command::Tail {
            target,
            since_seq,
            kinds,
            verdict,
            min_severity,
            workload,
            dst,
            json,
            count,
        } => {
            use sovereign_agent_proto::agent::v1 as pb;
            let filter = pb::EventFilter {
                kinds,
                verdict: verdict.unwrap_or_default(),
                min_severity: min_severity
                    .and_then(|s| {
                        pb::Severity::from_str_name(&format!("SEVERITY_{}", s.to_uppercase()))
                    })
                    .map(|s| s as i32)
                    .unwrap_or(0),
                workload: workload.unwrap_or_default(),
                destination: dst.unwrap_or_default(),
            };
            ExitCode::from(
                client_runtime().block_on(cli::tail::tail(cli::tail::TailArgs {
                    target: target.target(),
                    since_seq,
                    filter,
                    json,
                    count,
                })),
            )
        }
        Command::Status { target, json } => {
            ExitCode::from(client_runtime().block_on(cli::tail::status(&target.target(), json)))
        }
        Command::Run(args) => {
            let config = match load_config(&args) {
                Ok(c) => c,
                Err(message) => {
                    eprintln!("sovereign-agent: {message}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            telemetry::init(&config.log);
            // One thread: the pipeline is one task, and cross-thread wake-ups cost more than
            // the work itself (measured: docs/performance.md).
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("sovereign-agent: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(agent::run(&config)) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    // One message: a JSON log line for log collectors, else a plain sentence.
                    if config.log.format == LogFormat::Json {
                        tracing::error!(exit_code = e.exit_code(), "{e}");
                    } else {
                        eprintln!("sovereign-agent: {e}");
                    }
                    ExitCode::from(e.exit_code())
                }
            }
        }
    }
}
