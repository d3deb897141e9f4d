//! The agent's configuration file (TOML). Every key is optional; built-in defaults make
//! `sovereign-agent run` useful with no file at all. Unknown keys are errors, so a typo never
//! silently falls back to a default.
use std::{
    num::NonZeroUsize,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

pub mod env;
use sovereign_agent_common::DEFAULT_RING_BYTES;

use crate::{
    capture::bpf::CaptureOptions,
    capture::pipeline::PipelineOptions,
    journal::{FsyncPolicy, JournalOptions},
};

/// Reads an Ed25519 private key in PKCS#8 PEM (`openssl genpkey -algorithm ed25519`).
pub fn read_signing_key(path: &Path) -> Result<ed25519_dalek::SigningKey, String> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        format!(
            "{}: not an Ed25519 private key in PKCS#8 PEM ({e}); create one with \
             `openssl genpkey -algorithm ed25519 -out KEY.pem`",
            path.display()
        )
    })
}

/// Reads an Ed25519 public key in SPKI PEM (`openssl pkey -in KEY.pem -pubout`).
pub fn read_verifying_key(path: &Path) -> Result<ed25519_dalek::VerifyingKey, String> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    ed25519_dalek::VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
        format!(
            "{}: not an Ed25519 public key in PEM ({e}); derive it with \
             `openssl pkey -in KEY.pem -pubout -out KEY.pub.pem`",
            path.display()
        )
    })
}

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
    /// Processes kept in the process table (fed by the fork, exec and exit tracepoints).
    pub process_cache_entries: usize,
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
    /// Push alerts to a collector (docs/collector.md).
    pub push: Option<PushConfig>,
    /// Prometheus metrics and health endpoints (docs/operations.md).
    pub metrics: MetricsConfig,
    /// Naming destinations: which DNS answers verify names, and the bounds (docs/policy.md).
    pub names: NamesConfig,
    /// The file this configuration was read from (for the journal's start record).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Write every event to the journal.
    pub enabled: bool,
    pub dir: PathBuf,
    /// A segment is sealed and a new one started when it reaches this size ...
    pub segment_max_bytes: u64,
    /// ... or this age, in seconds.
    pub segment_max_age_secs: u64,
    /// Sealed segments older than this are deleted; 0 keeps them forever.
    pub retention_max_age_days: u64,
    /// The oldest sealed segments are deleted while the journal is larger; 0: no limit.
    pub retention_max_bytes: u64,
    /// `batch` (every batch is synced before the next is read), `interval`, or `never`.
    pub fsync: FsyncMode,
    /// With `fsync = "interval"`: the longest time between syncs, in milliseconds.
    pub fsync_interval_ms: u64,
    /// How often the `HEAD` checkpoint is rewritten, in milliseconds.
    pub checkpoint_interval_ms: u64,
    /// The flow ceiling: flow events written per second, sustained (to the journal, the
    /// output and the API alike); beyond it flows are folded per (kind, workload,
    /// destination) into `aggregated` events. 0: no ceiling.
    pub max_flows_per_sec: u64,
    /// Flow events written at once above that rate.
    pub max_flows_burst: u64,
    /// Ed25519 private key (PKCS#8 PEM) that signs every seal and checkpoint.
    pub signing_key: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// `https://host:port` of the collector.
    pub collector: String,
    /// CA the collector's certificate must chain to (PEM).
    pub ca: PathBuf,
    /// This agent's client certificate and key (PEM); its common name is the agent's identity.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Alerts per batch at most.
    #[serde(default = "default_push_batch")]
    pub batch: usize,
}

fn default_push_batch() -> usize {
    500
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Repeats of a (workload, destination, rule) within this many seconds of its alert are
    /// folded into one alert with a count; 0 alerts on every violating flow.
    pub window_secs: u64,
    /// (workload, destination, rule) keys remembered (least recently seen forgotten first).
    pub max_keys: usize,
}

/// What one workload may make the kernel write, before the excess is only counted (and
/// reported in `flood` events). TCP connects have a budget of their own, apart from UDP,
/// DNS and TLS records: a UDP flood never costs a workload its TCP records.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// New records per second per process, sustained; 0: no per-process budget.
    pub process_records_per_sec: u64,
    /// Records a process may make at once above that rate.
    pub process_burst: u64,
    /// New records per second per cgroup (every process in it together); 0: none.
    pub cgroup_records_per_sec: u64,
    pub cgroup_burst: u64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            process_records_per_sec: 1_000,
            process_burst: 5_000,
            cgroup_records_per_sec: 5_000,
            cgroup_burst: 10_000,
        }
    }
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            window_secs: 60,
            max_keys: 65_536,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve the gRPC API.
    pub enabled: bool,
    /// Unix socket (created 0600: root only).
    pub socket: PathBuf,
    /// Also serve on TCP (e.g. "0.0.0.0:7443"), with TLS and mandatory client certificates.
    pub tcp_listen: Option<std::net::SocketAddr>,
    /// PEM certificate chain and private key of the server (required with `tcp_listen`).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM CA that client certificates must chain to (required with `tcp_listen`).
    pub client_ca: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            socket: PathBuf::from("/run/sovereign-agent/agent.sock"),
            tcp_listen: None,
            tls_cert: None,
            tls_key: None,
            client_ca: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics`, `/healthz` and `/readyz` over HTTP.
    pub enabled: bool,
    /// Address and port; a port of 0 picks a free one (logged at start).
    pub listen: std::net::SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    #[default]
    Batch,
    Interval,
    Never,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: PathBuf::from("/var/lib/sovereign-agent/journal"),
            segment_max_bytes: 64 << 20,
            segment_max_age_secs: 3600,
            retention_max_age_days: 90,
            retention_max_bytes: 10 << 30,
            fsync: FsyncMode::Batch,
            fsync_interval_ms: 1000,
            checkpoint_interval_ms: 1000,
            max_flows_per_sec: 20_000,
            max_flows_burst: 100_000,
            signing_key: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NamesConfig {
    /// DNS servers whose answers verify names: `IP` or `IP:port`, and `host` for the
    /// `nameserver`s of /etc/resolv.conf and systemd-resolved's stub, 127.0.0.53. Answers
    /// from any other server are kept as claims, which can make a flow a violation but never
    /// allow it.
    pub trusted_resolvers: Vec<String>,
    /// DNS TTLs longer than this are cut, in seconds.
    pub max_ttl_secs: u64,
    /// An answer later than this after its query is refused, in milliseconds.
    pub query_timeout_ms: u64,
    /// Outstanding DNS queries remembered, in all ...
    pub query_table_entries: usize,
    /// ... and per cgroup.
    pub query_table_per_cgroup: usize,
    /// Named addresses kept per cgroup (of `name_map_entries` in all).
    pub map_per_cgroup: usize,
    /// Open TCP connections remembered for alerts on verdicts learned after connect.
    pub open_flow_entries: usize,
}

impl Default for NamesConfig {
    fn default() -> Self {
        Self {
            trusted_resolvers: vec![HOST_RESOLVERS.into()],
            max_ttl_secs: 86_400,
            query_timeout_ms: 10_000,
            query_table_entries: 10_000,
            query_table_per_cgroup: 2_500,
            map_per_cgroup: 16_384,
            open_flow_entries: 16_384,
        }
    }
}

/// In `names.trusted_resolvers`: the host's own resolvers.
pub const HOST_RESOLVERS: &str = "host";

impl NamesConfig {
    /// The trusted resolvers, parsed (`host` expanded).
    pub fn resolvers(&self) -> Result<Vec<crate::names::resolvers::Resolver>, String> {
        let mut out = Vec::new();
        for r in &self.trusted_resolvers {
            if r.trim() == HOST_RESOLVERS {
                out.extend(crate::names::resolvers::host_defaults(Path::new(
                    "/etc/resolv.conf",
                )));
            } else {
                out.push(r.parse()?);
            }
        }
        out.dedup();
        Ok(out)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `sovereign_agent=debug,warn`, ...
    pub level: String,
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
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
            process_cache_entries: 32_768,
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
            metrics: MetricsConfig::default(),
            names: NamesConfig::default(),
            source: None,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
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

    /// Checks that the files the configuration names can be read and are what they should
    /// be (TLS certificates and keys, the signing key, the policy's datasets directory), so
    /// that `config check` and the start report them rather than a background task later.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let origin = self.origin();
        let invalid = |key, message: String| ConfigError::Invalid {
            origin: origin.clone(),
            key,
            message,
        };
        let pem = |key: &'static str, path: &Path, what: &str| {
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid(key, format!("{}: {e}", path.display())))?;
            if !text
                .lines()
                .any(|l| l.starts_with("-----BEGIN ") && l.contains(what))
            {
                return Err(invalid(
                    key,
                    format!("{}: not a PEM file (expected {what})", path.display()),
                ));
            }
            Ok(())
        };
        if self.api.enabled && self.api.tcp_listen.is_some() {
            for (key, path, what) in [
                ("api.tls_cert", &self.api.tls_cert, "CERTIFICATE"),
                ("api.tls_key", &self.api.tls_key, "PRIVATE KEY"),
                ("api.client_ca", &self.api.client_ca, "CERTIFICATE"),
            ] {
                if let Some(path) = path {
                    pem(key, path, what)?;
                }
            }
        }
        if let Some(p) = &self.push {
            pem("push.ca", &p.ca, "CERTIFICATE")?;
            pem("push.cert", &p.cert, "CERTIFICATE")?;
            pem("push.key", &p.key, "PRIVATE KEY")?;
        }
        if self.journal.enabled {
            if let Some(k) = &self.journal.signing_key {
                read_signing_key(k).map_err(|m| invalid("journal.signing_key", m))?;
            }
        }
        if let Some(d) = &self.datasets {
            if !d.is_dir() {
                return Err(invalid(
                    "datasets",
                    format!("{}: not a directory", d.display()),
                ));
            }
        }
        if let Some(p) = &self.policy {
            if let Err(e) = std::fs::metadata(p) {
                return Err(invalid("policy", format!("{}: {e}", p.display())));
            }
        }
        Ok(())
    }

    /// Checks values that parse but cannot work. `origin` names the file (or the flags).
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message,
        };
        for (key, ring) in [
            ("ring_buffer_bytes", self.ring_buffer_bytes),
            (
                "priority_ring_buffer_bytes",
                self.priority_ring_buffer_bytes,
            ),
        ] {
            if ring < 4096 || !ring.is_power_of_two() {
                return Err(invalid(
                    key,
                    format!("{ring} is not a power of two of at least 4096"),
                ));
            }
        }
        for (key, rate, burst) in [
            (
                "budget.process_burst",
                self.budget.process_records_per_sec,
                self.budget.process_burst,
            ),
            (
                "budget.cgroup_burst",
                self.budget.cgroup_records_per_sec,
                self.budget.cgroup_burst,
            ),
        ] {
            if rate > 0 && burst == 0 {
                return Err(invalid(
                    key,
                    "must be at least 1 when the rate is set".into(),
                ));
            }
            if rate > 1_000_000_000 {
                return Err(invalid(
                    key,
                    format!("rate {rate} is more than 10^9 per second"),
                ));
            }
        }
        if self.process_cache_entries == 0 {
            return Err(invalid(
                "process_cache_entries",
                "must be at least 1".into(),
            ));
        }
        if self.ancestors_depth > 64 {
            return Err(invalid(
                "ancestors_depth",
                format!("{} is more than 64", self.ancestors_depth),
            ));
        }
        if self.max_event_delay_ms > 60_000 {
            return Err(invalid(
                "max_event_delay_ms",
                format!("{} is more than a minute", self.max_event_delay_ms),
            ));
        }
        if self.api.tcp_listen.is_some() {
            for (key, value) in [
                ("api.tls_cert", &self.api.tls_cert),
                ("api.tls_key", &self.api.tls_key),
                ("api.client_ca", &self.api.client_ca),
            ] {
                if value.is_none() {
                    return Err(invalid(
                        key,
                        "is required with api.tcp_listen: the API is only served on TCP with TLS and client certificates".into(),
                    ));
                }
            }
        }
        if let Some(p) = &self.push {
            if !self.journal.enabled {
                return Err(invalid(
                    "push",
                    "needs the journal (it is the spool of unacknowledged alerts)".into(),
                ));
            }
            if !p.collector.starts_with("https://") {
                return Err(invalid(
                    "push.collector",
                    format!(
                        "{:?}: expected https://HOST:PORT (the push is always TLS)",
                        p.collector
                    ),
                ));
            }
            if p.batch == 0 {
                return Err(invalid("push.batch", "must be at least 1".into()));
            }
        }
        if self.alerts.max_keys == 0 {
            return Err(invalid("alerts.max_keys", "must be at least 1".into()));
        }
        if self.name_map_entries == 0 {
            return Err(invalid("name_map_entries", "must be at least 1".into()));
        }
        if let Err(e) = self.names.resolvers() {
            return Err(invalid("names.trusted_resolvers", e));
        }
        for (key, value) in [
            ("names.max_ttl_secs", self.names.max_ttl_secs),
            ("names.query_timeout_ms", self.names.query_timeout_ms),
            (
                "names.query_table_entries",
                self.names.query_table_entries as u64,
            ),
            (
                "names.query_table_per_cgroup",
                self.names.query_table_per_cgroup as u64,
            ),
            ("names.map_per_cgroup", self.names.map_per_cgroup as u64),
            (
                "names.open_flow_entries",
                self.names.open_flow_entries as u64,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        if self.policy_poll_interval_ms == 0 {
            return Err(invalid(
                "policy_poll_interval_ms",
                "must be at least 1".into(),
            ));
        }
        if self.loss_poll_interval_ms == 0 {
            return Err(invalid(
                "loss_poll_interval_ms",
                "must be at least 1".into(),
            ));
        }
        let j = &self.journal;
        if !(4096..=(1 << 32)).contains(&j.segment_max_bytes) {
            return Err(invalid(
                "journal.segment_max_bytes",
                format!("{} is not between 4096 and 4 GiB", j.segment_max_bytes),
            ));
        }
        for (key, value) in [
            ("journal.segment_max_age_secs", j.segment_max_age_secs),
            ("journal.fsync_interval_ms", j.fsync_interval_ms),
            ("journal.checkpoint_interval_ms", j.checkpoint_interval_ms),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        if j.enabled && j.dir.as_os_str().is_empty() {
            return Err(invalid("journal.dir", "is empty".into()));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(invalid("log.level", format!("{:?}: {e}", self.log.level)));
        }
        Ok(())
    }

    pub fn capture_options(&self) -> CaptureOptions {
        let mut options = if self.max_event_delay_ms == 0 {
            CaptureOptions::per_record(self.ring_buffer_bytes)
        } else {
            CaptureOptions::paced(self.ring_buffer_bytes)
        };
        options.priority_ring_bytes = self.priority_ring_buffer_bytes;
        options.process_budget = crate::capture::bpf::Rate {
            per_sec: self.budget.process_records_per_sec,
            burst: self.budget.process_burst,
        };
        options.cgroup_budget = crate::capture::bpf::Rate {
            per_sec: self.budget.cgroup_records_per_sec,
            burst: self.budget.cgroup_burst,
        };
        options
    }

    /// The journal's settings, with its signing key read; `None` when the journal is off.
    pub fn journal_options(&self) -> Result<Option<JournalOptions>, ConfigError> {
        let j = &self.journal;
        if !j.enabled {
            return Ok(None);
        }
        let signing_key = match &j.signing_key {
            None => None,
            Some(path) => Some(
                read_signing_key(path).map_err(|message| ConfigError::Invalid {
                    origin: self.origin(),
                    key: "journal.signing_key",
                    message,
                })?,
            ),
        };
        let nonzero = |v: u64| (v > 0).then_some(v);
        Ok(Some(JournalOptions {
            dir: j.dir.clone(),
            segment_max_bytes: j.segment_max_bytes,
            segment_max_age: Duration::from_secs(j.segment_max_age_secs),
            retention_max_age: nonzero(j.retention_max_age_days)
                .map(|d| Duration::from_secs(d * 86_400)),
            retention_max_bytes: nonzero(j.retention_max_bytes),
            fsync: match j.fsync {
                FsyncMode::Batch => FsyncPolicy::Batch,
                FsyncMode::Interval => {
                    FsyncPolicy::Interval(Duration::from_millis(j.fsync_interval_ms))
                }
                FsyncMode::Never => FsyncPolicy::Never,
            },
            checkpoint_interval: Duration::from_millis(j.checkpoint_interval_ms),
            signing_key,
        }))
    }

    pub fn alert_folder(&self) -> crate::policy::alerts::AlertFolder {
        crate::policy::alerts::AlertFolder::new(
            Duration::from_secs(self.alerts.window_secs),
            NonZeroUsize::new(self.alerts.max_keys).unwrap_or(NonZeroUsize::MIN),
        )
    }

    /// The API's TCP listener with its TLS files, when configured (and the API is on).
    pub fn api_tcp(&self) -> Option<crate::serve::api::TcpTls> {
        let a = &self.api;
        match (
            a.enabled,
            a.tcp_listen,
            &a.tls_cert,
            &a.tls_key,
            &a.client_ca,
        ) {
            (true, Some(listen), Some(cert), Some(key), Some(ca)) => {
                Some(crate::serve::api::TcpTls {
                    listen,
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: ca.clone(),
                })
            }
            _ => None,
        }
    }

    pub fn push_options(&self) -> Option<crate::serve::push::PushOptions> {
        self.push.as_ref().map(|p| crate::serve::push::PushOptions {
            collector: p.collector.clone(),
            ca: p.ca.clone(),
            cert: p.cert.clone(),
            key: p.key.clone(),
            batch: p.batch,
        })
    }

    /// The metrics endpoint's address, when it is on.
    pub fn metrics_listen(&self) -> Option<std::net::SocketAddr> {
        self.metrics.enabled.then_some(self.metrics.listen)
    }

    /// The API's socket, when the API is on.
    pub fn api_socket(&self) -> Option<PathBuf> {
        self.api.enabled.then(|| self.api.socket.clone())
    }

    fn origin(&self) -> String {
        match &self.source {
            Some(p) => p.display().to_string(),
            None => "from the command line".into(),
        }
    }

    pub fn pipeline_options(&self) -> PipelineOptions {
        PipelineOptions {
            process_cache_entries: NonZeroUsize::new(self.process_cache_entries)
                .unwrap_or(NonZeroUsize::MIN),
            loss_poll_interval: Duration::from_millis(self.loss_poll_interval_ms),
            process_keep_exited: Duration::from_secs(self.process_keep_exited_secs),
            ancestors_depth: self.ancestors_depth,
            names: crate::names::NamesOptions {
                // Checked by `validate`.
                trusted_resolvers: self.names.resolvers().unwrap_or_default(),
                map_entries: NonZeroUsize::new(self.name_map_entries).unwrap_or(NonZeroUsize::MIN),
                map_per_cgroup: NonZeroUsize::new(self.names.map_per_cgroup)
                    .unwrap_or(NonZeroUsize::MIN),
                ttl_floor: Duration::from_secs(self.name_ttl_floor_secs),
                ttl_cap: Duration::from_secs(self.names.max_ttl_secs),
                query_table_entries: self.names.query_table_entries,
                query_table_per_cgroup: self.names.query_table_per_cgroup,
                query_timeout: Duration::from_millis(self.names.query_timeout_ms),
            },
            open_flow_entries: NonZeroUsize::new(self.names.open_flow_entries)
                .unwrap_or(NonZeroUsize::MIN),
            // With per-record wake-ups a slow timer is only a safety net.
            max_event_delay: Duration::from_millis(match self.max_event_delay_ms {
                0 => 1000,
                ms => ms,
            }),
            flow_ceiling: (self.journal.max_flows_per_sec > 0)
                .then_some((self.journal.max_flows_per_sec, self.journal.max_flows_burst)),
            ..PipelineOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("sa-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!(
            "{:x}.toml",
            text.len() * 31 + text.bytes().map(u64::from).sum::<u64>() as usize
        ));
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(Config { source: None, ..c }, Config::default());
    }

    #[test]
    fn full_file() {
        let c = parse(
            "cgroup = \"system.slice/llm.service\"\noutput = \"/var/log/flows.jsonl\"\n\
             ring_buffer_bytes = 8388608\nprocess_cache_entries = 100\nloss_poll_interval_ms = 250\n\
             [log]\nlevel = \"debug\"\nformat = \"json\"\n",
        )
        .unwrap();
        assert_eq!(
            c.cgroup.as_deref(),
            Some(Path::new("system.slice/llm.service"))
        );
        assert_eq!(c.ring_buffer_bytes, 8 << 20);
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn unknown_key_names_the_key_and_file() {
        let err = parse("ring_bufer_bytes = 4096\n").unwrap_err().to_string();
        assert!(err.contains("ring_bufer_bytes"), "{err}");
        assert!(err.contains("config file"), "{err}");
        assert!(err.contains(".toml"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = parse("ring_buffer_bytes = 5000\n").unwrap_err().to_string();
        assert!(
            err.contains("`ring_buffer_bytes`") && err.contains("5000"),
            "{err}"
        );
        let err = parse("[log]\nformat = \"xml\"\n").unwrap_err().to_string();
        assert!(err.contains("xml"), "{err}");
        let err = parse("process_cache_entries = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("process_cache_entries"), "{err}");
    }

    #[test]
    fn names_section() {
        let c = parse(
            "[names]\ntrusted_resolvers = [\"10.96.0.10\", \"[fd00::a]:5353\"]\nmax_ttl_secs = 300\n",
        )
        .unwrap();
        let o = c.pipeline_options().names;
        let rs: Vec<String> = o.trusted_resolvers.iter().map(|r| r.to_string()).collect();
        assert_eq!(rs, ["10.96.0.10:53", "[fd00::a]:5353"]);
        assert_eq!(o.ttl_cap, Duration::from_secs(300));
        // "host" brings the systemd-resolved stub (and resolv.conf's nameservers).
        let o = Config::default().pipeline_options().names;
        assert!(o
            .trusted_resolvers
            .iter()
            .any(|r| r.to_string() == "127.0.0.53:53"));
        let err = parse("[names]\ntrusted_resolvers = [\"dns.example\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("names.trusted_resolvers") && err.contains("dns.example"),
            "{err}"
        );
        let err = parse("[names]\nquery_table_entries = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("names.query_table_entries"), "{err}");
    }

    #[test]
    fn journal_section() {
        let c = parse(
            "[journal]\ndir = \"/srv/journal\"\nfsync = \"interval\"\nfsync_interval_ms = 250\n\
             retention_max_bytes = 0\n",
        )
        .unwrap();
        let o = c.journal_options().unwrap().unwrap();
        assert_eq!(o.dir, Path::new("/srv/journal"));
        assert_eq!(o.fsync, FsyncPolicy::Interval(Duration::from_millis(250)));
        assert_eq!(o.retention_max_bytes, None);
        assert_eq!(o.retention_max_age, Some(Duration::from_secs(90 * 86_400)));
        let err = parse("[journal]\nsegment_max_bytes = 10\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("journal.segment_max_bytes"), "{err}");
        let err = parse("[journal]\nfsync = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sometimes"), "{err}");
        let c = parse("[journal]\nsigning_key = \"/nonexistent/key.pem\"\n").unwrap();
        let err = c.journal_options().unwrap_err().to_string();
        assert!(
            err.contains("journal.signing_key") && err.contains("/nonexistent/key.pem"),
            "{err}"
        );
        assert!(parse("[journal]\nenabled = false\n")
            .unwrap()
            .journal_options()
            .unwrap()
            .is_none());
    }

    #[test]
    fn tcp_api_needs_its_tls_files() {
        let err = parse("[api]\ntcp_listen = \"127.0.0.1:7443\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("api.tls_cert") && err.contains("client certificates"),
            "{err}"
        );
        let c = parse(
            "[api]\ntcp_listen = \"127.0.0.1:7443\"\ntls_cert = \"s.pem\"\ntls_key = \"s.key\"\nclient_ca = \"ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(c.api_tcp().unwrap().listen.port(), 7443);
        let err = parse("[api]\ntcp_listen = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nowhere") || err.contains("tcp_listen"),
            "{err}"
        );
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn flatten(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    /// The environment table lists every key of the file (and nothing else): a new setting
    /// cannot be added without its variable.
    #[test]
    fn every_key_has_an_environment_variable() {
        let mut full = Config {
            cgroup: Some("x".into()),
            policy: Some("x".into()),
            datasets: Some("x".into()),
            push: Some(PushConfig {
                collector: "https://c:1".into(),
                ca: "a".into(),
                cert: "b".into(),
                key: "c".into(),
                batch: 1,
            }),
            ..Config::default()
        };
        full.journal.signing_key = Some("k".into());
        full.api.tcp_listen = Some("127.0.0.1:1".parse().unwrap());
        full.api.tls_cert = Some("a".into());
        full.api.tls_key = Some("b".into());
        full.api.client_ca = Some("c".into());
        let mut keys = Vec::new();
        flatten("", &toml::Value::try_from(&full).unwrap(), &mut keys);
        keys.sort();
        let mut listed: Vec<String> = env::KEYS.iter().map(|(k, _)| k.to_string()).collect();
        listed.sort();
        assert_eq!(keys, listed);
        let mut names: Vec<String> = env::KEYS.iter().map(|(k, _)| env::variable(k)).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), env::KEYS.len(), "two keys share a variable");
    }

    #[test]
    fn environment_overrides_the_file_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.toml");
        std::fs::write(
            &file,
            "output = \"/var/log/f.jsonl\"\n[journal]\ndir = \"/srv/j\"\nsegment_max_bytes = 8192\n",
        )
        .unwrap();
        let (c, unknown) = Config::load_layered(
            Some(&file),
            vars(&[
                ("SOVEREIGN_JOURNAL_SEGMENT_MAX_BYTES", "65536"),
                ("SOVEREIGN_METRICS_LISTEN", "0.0.0.0:9999"),
                ("SOVEREIGN_API_ENABLED", "false"),
                ("SOVEREIGN_LOG_LEVEL", "debug"),
                ("SOVEREIGN_POLICY", ""),
                ("SOVEREIGN_JOURNAL_DIRR", "/typo"),
                ("SOVEREIGN_CONFIG", "ignored: read by the command line"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.output, Path::new("/var/log/f.jsonl"), "from the file");
        assert_eq!(c.journal.dir, Path::new("/srv/j"), "from the file");
        assert_eq!(c.journal.segment_max_bytes, 65536, "the environment wins");
        assert_eq!(c.metrics.listen.port(), 9999);
        assert!(!c.api.enabled);
        assert_eq!(c.log.level, "debug");
        assert_eq!(c.policy, None, "empty is unset");
        assert_eq!(c.source.as_deref(), Some(file.as_path()));
        assert_eq!(unknown, vec!["SOVEREIGN_JOURNAL_DIRR".to_string()]);
        // No file: defaults plus the environment.
        let (c, _) =
            Config::load_layered(None, vars(&[("SOVEREIGN_CGROUP", "system.slice")])).unwrap();
        assert_eq!(c.cgroup.as_deref(), Some(Path::new("system.slice")));
        assert_eq!(c.journal, JournalConfig::default());
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let err = |pairs: &[(&str, &str)]| {
            Config::load_layered(None, vars(pairs))
                .unwrap_err()
                .to_string()
        };
        let e = err(&[("SOVEREIGN_RING_BUFFER_BYTES", "lots")]);
        assert!(
            e.contains("SOVEREIGN_RING_BUFFER_BYTES") && e.contains("lots"),
            "{e}"
        );
        let e = err(&[("SOVEREIGN_JOURNAL_FSYNC", "sometimes")]);
        assert!(
            e.contains("SOVEREIGN_JOURNAL_FSYNC") && e.contains("journal.fsync"),
            "{e}"
        );
        let e = err(&[("SOVEREIGN_METRICS_LISTEN", "localhost")]);
        assert!(e.contains("SOVEREIGN_METRICS_LISTEN"), "{e}");
        let e = err(&[("SOVEREIGN_RING_BUFFER_BYTES", "5000")]);
        assert!(
            e.contains("ring_buffer_bytes") && e.contains("environment"),
            "{e}"
        );
        let e = err(&[("SOVEREIGN_PUSH_COLLECTOR", "https://c:1")]);
        assert!(e.contains("SOVEREIGN_PUSH_COLLECTOR"), "{e}");
    }

    #[test]
    fn named_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let mut c = Config {
            push: Some(PushConfig {
                collector: "https://c:1".into(),
                ca: cert.clone(),
                cert: cert.clone(),
                key: dir.path().join("missing.key"),
                batch: 1,
            }),
            ..Config::default()
        };
        let e = c.check_files().unwrap_err().to_string();
        assert!(e.contains("push.key") && e.contains("missing.key"), "{e}");
        c.push.as_mut().unwrap().key = cert.clone();
        let e = c.check_files().unwrap_err().to_string();
        assert!(e.contains("push.key") && e.contains("PRIVATE KEY"), "{e}");
        c.push = None;
        c.datasets = Some(dir.path().join("nope"));
        let e = c.check_files().unwrap_err().to_string();
        assert!(e.contains("`datasets`"), "{e}");
    }

    #[test]
    fn missing_file_names_it() {
        let err = Config::load(Path::new("/nonexistent/agent.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config file /nonexistent/agent.toml:"),
            "{err}"
        );
    }
}
