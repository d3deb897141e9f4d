//! The configuration file's sections (`[journal]`, `[api]`, `[push]`, ...), each with its
//! built-in defaults.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    /// Beyond those budgets a TCP connect to a destination the cgroup has not reached in the
    /// last minute is still written, up to this many a second per cgroup (0: no bound);
    /// repeats to destinations it has reached are counted per destination instead.
    pub cgroup_new_destinations_per_sec: u64,
    pub cgroup_new_destinations_burst: u64,
    /// Fork, exec (with its arguments) and exit records per second per cgroup, apart from
    /// the budgets above (0: no bound); the excess is counted in `flood` events.
    pub cgroup_process_records_per_sec: u64,
    pub cgroup_process_records_burst: u64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            process_records_per_sec: 1_000,
            process_burst: 5_000,
            cgroup_records_per_sec: 5_000,
            cgroup_burst: 10_000,
            cgroup_new_destinations_per_sec: 10_000,
            cgroup_new_destinations_burst: 20_000,
            cgroup_process_records_per_sec: 2_000,
            cgroup_process_records_burst: 4_000,
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
    /// TCP connections open at once, in all and from one client address (0: no cap), and
    /// the seconds a client has to finish its TLS handshake.
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub handshake_timeout_secs: u64,
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
            max_connections: 64,
            max_connections_per_client: 16,
            handshake_timeout_secs: 10,
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

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EnforceConfig {
    /// Destinations (addresses or CIDRs) an enforce rule never refuses, beside loopback and
    /// the trusted resolvers, which are never refused either: the host's and the cluster's
    /// essentials (the API server, node SSH, the metadata service), so that one mistake in a
    /// policy cannot cut a node off.
    pub failsafe: Vec<String>,
}

impl EnforceConfig {
    /// The failsafe destinations; `Err` names the one that is neither an address nor a CIDR.
    pub fn failsafe_nets(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.failsafe
            .iter()
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("{s:?} is neither an address nor a CIDR"))
            })
            .collect()
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
    /// ... and per workload (its pod, unit or container, else its cgroup).
    pub query_table_per_cgroup: usize,
    /// Named addresses kept per workload (its pod, unit or container, else its cgroup), of
    /// `name_map_entries` in all. The key keeps its first name.
    pub map_per_cgroup: usize,
    /// Open TCP connections remembered for alerts on verdicts learned after connect.
    pub open_flow_entries: usize,
    /// cgroup paths (globs, `*` within one path segment) of DNS servers the watched host runs
    /// itself: an answer a watched socket sends as a trusted resolver counts only from these
    /// (any other is a workload posing as the resolver, e.g. a sidecar).
    pub resolver_cgroups: Vec<String>,
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
            resolver_cgroups: vec![crate::names::SYSTEMD_RESOLVED_CGROUP.into()],
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
