//! `sovereign-agent run`: the configuration (file, environment, then these flags), logging,
//! a one-thread runtime, and the agent until SIGINT/SIGTERM.
use std::path::PathBuf;

use clap::Args;

use super::{complain, config::warn_unknown_variables};
use crate::{
    agent,
    config::{Config, LogFormat},
    exit, telemetry,
};

#[derive(Args)]
pub struct RunArgs {
    /// Configuration file (TOML); see docs/configuration.md.
    #[arg(long, env = "SOVEREIGN_CONFIG")]
    config: Option<PathBuf>,
    /// cgroup v2 to watch: absolute, or relative to the cgroup v2 root. Default: the whole host.
    #[arg(long)]
    cgroup: Option<PathBuf>,
    /// Where to write events as JSON lines: a file (appended), `-` for stdout, or `none`.
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

pub fn execute(args: &RunArgs) -> u8 {
    let config = match load_config(args) {
        Ok(c) => c,
        Err(message) => {
            complain(message);
            return exit::USAGE;
        }
    };
    telemetry::init(&config.log);
    // One thread: the pipeline is one task, and cross-thread wake-ups cost more than the
    // work itself (measured: docs/performance.md).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            complain(format_args!("cannot start the runtime: {e}"));
            return exit::FAILURE;
        }
    };
    match runtime.block_on(agent::run(&config)) {
        Ok(_) => exit::OK,
        Err(e) => {
            // One message: a JSON log line for log collectors, else a plain sentence.
            if config.log.format == LogFormat::Json {
                tracing::error!(exit_code = e.exit_code(), "{e}");
            } else {
                complain(&e);
            }
            e.exit_code()
        }
    }
}

/// The file (or built-in defaults), then `SOVEREIGN_*` variables, then these flags; validated.
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
