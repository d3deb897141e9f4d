//! The agent's configuration file (TOML). Every key is optional; built-in defaults make
//! `sovereign-agent run` useful with no file at all. Unknown keys are errors, so a typo never
//! silently falls back to a default.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sovereign_agent_common::DEFAULT_RING_BYTES;

pub mod env;
mod files;
mod sections;
mod validate;
pub use sections::*;

pub use crate::telemetry::logs::{LogConfig, LogFormat};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// cgroup v2 to watch: absolute, or relative to the hierarchy root. Unset: the whole host.
    pub cgroup: Option<PathBuf>,
    /// Where flow events go: `-` (stdout) or a file, appended to.
    pub output: PathBuf,
    /// Residency policy (docs/policy.md). Unset: flows are reported without verdicts.
    pub policy: Option<PathBuf>,
    /// Directory of datasets (provider IP-range files, .mmdb) for the policy.
    pub datasets: Option<PathBuf>,
    /// How often the policy file is checked for changes, in milliseconds.
    pub policy_poll_interval_ms: u64,
    /// (cgroup, address) → names entries kept for DNS answers (and as many for TLS SNI).
    pub name_map_entries: usize,
    /// DNS answers are kept at least this long, whatever their TTL, in seconds.
    pub name_ttl_floor_secs: u64,
    /// Size of the kernel ring buffer in bytes: a power of two, at least 4096.
    pub ring_buffer_bytes: u32,
    /// Size of the priority ring buffer (TCP connections, flood notices); same constraints.
    pub priority_ring_buffer_bytes: u32,
    /// Open TCP connections whose owner the kernel keeps for their close; beyond, the oldest
    /// entry is evicted and its close is flagged `owner_evicted`.
    pub tcp_socket_entries: u32,
    /// Processes kept in the process table (fed by the fork, exec and exit tracepoints).
    pub process_cache_entries: usize,
    /// UDP sockets whose destinations are remembered until the socket closes (for their
    /// `close` events with datagram counts); beyond, the least recently used socket's are
    /// found again in the kernel's send map when it closes (at most one scan a second).
    pub udp_socket_entries: usize,
    /// How long an exited process stays in the table, for its flows still in the ring
    /// buffer, in seconds.
    pub process_keep_exited_secs: u64,
    /// Ancestors carried by each flow event (`ancestors`), parent first.
    pub ancestors_depth: usize,
    /// Report the watched cgroup's TCP connections already open at start (`existing` events)
    /// and their ends.
    pub existing_connections: bool,
    /// How often the kernel loss counter is polled, in milliseconds.
    pub loss_poll_interval_ms: u64,
    /// The longest an event waits in the ring buffer before the agent reads it, in
    /// milliseconds. The kernel wakes the agent at once for a sparse event and at most once a
    /// millisecond per CPU during a burst; this timer drains what a burst left behind.
    /// 0: the kernel wakes the agent for every record (most CPU under load).
    pub max_event_delay_ms: u64,
    pub log: LogConfig,
    /// The forensic journal (docs/journal.md).
    pub journal: JournalConfig,
    /// The gRPC API (docs/api.md).
    pub api: ApiConfig,
    /// Alerts: violations folded per (workload, destination, rule) (docs/api.md).
    pub alerts: AlertsConfig,
    /// Per-workload budgets of new records in the kernel (docs/operations.md#budgets).
    pub budget: BudgetConfig,
    /// Push alerts to a collector (docs/collector.md): the same as a `collector` sink named
    /// `collector`, kept for configurations written before sinks.
    pub push: Option<PushConfig>,
    /// This agent's name at its sinks (subjects, syslog HOSTNAME, idempotency keys). Unset:
    /// the host name. A collector names agents by their certificates instead.
    pub agent_id: Option<String>,
    /// Where events go besides the journal (docs/sinks.md).
    pub sink: Vec<crate::serve::sinks::SinkConfig>,
    /// Prometheus metrics and health endpoints (docs/operations.md).
    pub metrics: MetricsConfig,
    /// Naming destinations: which DNS answers verify names, and the bounds (docs/policy.md).
    pub names: NamesConfig,
    /// Enforcement: what the kernel never refuses (docs/enforce.md).
    pub enforce: EnforceConfig,
    /// The file this configuration was read from (for the journal's start record).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cgroup: None,
            output: PathBuf::from("-"),
            policy: None,
            datasets: None,
            policy_poll_interval_ms: 2000,
            name_map_entries: 65_536,
            name_ttl_floor_secs: 60,
            ring_buffer_bytes: DEFAULT_RING_BYTES,
            priority_ring_buffer_bytes: sovereign_agent_common::DEFAULT_PRIORITY_RING_BYTES,
            tcp_socket_entries: sovereign_agent_common::DEFAULT_TCP_SOCKET_ENTRIES,
            process_cache_entries: 32_768,
            udp_socket_entries: 65_536,
            process_keep_exited_secs: 30,
            ancestors_depth: 4,
            existing_connections: true,
            loss_poll_interval_ms: 1000,
            max_event_delay_ms: 20,
            log: LogConfig::default(),
            journal: JournalConfig::default(),
            api: ApiConfig::default(),
            alerts: AlertsConfig::default(),
            budget: BudgetConfig::default(),
            push: None,
            agent_id: None,
            sink: Vec::new(),
            metrics: MetricsConfig::default(),
            names: NamesConfig::default(),
            enforce: EnforceConfig::default(),
            source: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {variable} (key `{key}`): {message}")]
    Env {
        variable: String,
        key: &'static str,
        message: String,
    },
    #[error("{0}")]
    EnvValue(String),
    #[error("config {origin}: key `{key}`: {message}")]
    Invalid {
        origin: String,
        key: &'static str,
        message: String,
    },
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(path, &Self::read(path)?)
    }

    fn read(path: &Path) -> Result<String, ConfigError> {
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })
    }

    /// `text` read from `path`: parsed, then validated.
    fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        config.source = Some(path.to_path_buf());
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// The configuration `run` uses: the built-in defaults, then `path` (if any), then the
    /// `SOVEREIGN_*` variables of `vars`. Also returns the `SOVEREIGN_*` variables that are
    /// no setting, for a warning.
    pub fn load_layered(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Self, Vec<String>), ConfigError> {
        let (overrides, unknown) = env::overrides(vars).map_err(ConfigError::EnvValue)?;
        // The file alone first: its errors name its lines.
        let text = path.map(Self::read).transpose()?;
        let base = match (path, &text) {
            (Some(p), Some(t)) => Self::parse(p, t)?,
            _ => Config::default(),
        };
        if overrides.is_empty() {
            return Ok((base, unknown));
        }
        // The file's own table, so that what the file leaves unset keeps its default.
        let file_table = text
            .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
            .unwrap_or_default();
        let with = |these: &[&env::Override]| {
            let mut table = file_table.clone();
            for o in these {
                env::apply(&mut table, o.key, o.value.clone());
            }
            table.try_into::<Config>().map_err(|e| e.to_string())
        };
        let all: Vec<&env::Override> = overrides.iter().collect();
        let mut config = match with(&all) {
            Ok(c) => c,
            Err(message) => {
                // Name the variable at fault: the first that fails on its own, else all.
                let culprit = overrides.iter().find(|o| with(&[o]).is_err());
                return Err(match culprit {
                    Some(o) => ConfigError::Env {
                        variable: o.variable.clone(),
                        key: o.key,
                        message: with(&[o]).unwrap_err().trim_end().replace('\n', " "),
                    },
                    None => ConfigError::EnvValue(format!(
                        "environment variables {}: {}",
                        all.iter()
                            .map(|o| o.variable.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        message.trim_end().replace('\n', " ")
                    )),
                });
            }
        };
        config.source = base.source;
        let origin = match &config.source {
            Some(p) => format!("{} with SOVEREIGN_* environment overrides", p.display()),
            None => "from SOVEREIGN_* environment variables".to_string(),
        };
        config.validate(&origin)?;
        Ok((config, unknown))
    }

    /// The metrics endpoint's address, when it is on.
    pub fn metrics_listen(&self) -> Option<std::net::SocketAddr> {
        self.metrics.enabled.then_some(self.metrics.listen)
    }

    /// The API's socket, when the API is on.
    pub fn api_socket(&self) -> Option<PathBuf> {
        self.api.enabled.then(|| self.api.socket.clone())
    }

    /// Where these settings came from: the file, or the command line.
    pub fn origin(&self) -> String {
        match &self.source {
            Some(p) => p.display().to_string(),
            None => "from the command line".into(),
        }
    }
}

#[cfg(test)]
mod tests;
