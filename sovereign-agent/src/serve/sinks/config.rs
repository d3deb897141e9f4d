//! `[[sink]]` entries: where events go besides the journal, each with its own filter and
//! durable cursor (docs/sinks.md).
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sovereign_agent_proto::agent::v1 as pb;

/// One `[[sink]]`. (No `deny_unknown_fields` here: serde cannot combine it with `flatten`;
/// the type's own struct denies unknown keys, and it gets every key this one does not take.)
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct SinkConfig {
    /// Names the sink in metrics, status and logs, and its cursor file; unique.
    pub name: String,
    #[serde(flatten)]
    pub kind: SinkKind,
    /// Which events go to this sink: the API's filter (docs/api.md). Default: alerts only.
    #[serde(default)]
    pub filter: SinkFilter,
    /// Events per batch at most (a batch is acknowledged as a whole before the cursor moves).
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_batch() -> usize {
    500
}

impl SinkConfig {
    /// Whether this entry can run: its batch, its filter and its type's own settings. (Its
    /// name, unique among the others, and the journal it needs are the configuration's.)
    pub fn validate(&self) -> Result<(), String> {
        if self.batch == 0 {
            return Err("batch: must be at least 1".into());
        }
        self.filter
            .to_proto()
            .and_then(|f| crate::journal::feed::filter::EventFilter::compile(&f).map(|_| ()))?;
        self.kind.validate()
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SinkFilter {
    /// Event kinds (alert, connect, send, established, close, flood, dns_refused, ...).
    pub kinds: Vec<String>,
    /// `allow` or `violation`: flows (and alerts) with this decision.
    pub verdict: Option<String>,
    /// info, low, medium, high or critical: flows at least this severe.
    pub min_severity: Option<String>,
    /// Glob on the workload (unit, container, exe, comm).
    pub workload: Option<String>,
    /// Address, CIDR or name glob of the destination.
    pub destination: Option<String>,
}

impl Default for SinkFilter {
    fn default() -> Self {
        SinkFilter {
            kinds: vec!["alert".into()],
            verdict: None,
            min_severity: None,
            workload: None,
            destination: None,
        }
    }
}

impl SinkFilter {
    /// As the API's filter message (compiled and checked by `EventFilter::compile`).
    pub fn to_proto(&self) -> Result<pb::EventFilter, String> {
        let min_severity = match self.min_severity.as_deref() {
            None => pb::Severity::Unspecified,
            Some("info") => pb::Severity::Info,
            Some("low") => pb::Severity::Low,
            Some("medium") => pb::Severity::Medium,
            Some("high") => pb::Severity::High,
            Some("critical") => pb::Severity::Critical,
            Some(other) => {
                return Err(format!(
                    "filter.min_severity {other:?}: expected info, low, medium, high or critical"
                ))
            }
        };
        Ok(pb::EventFilter {
            kinds: self.kinds.clone(),
            verdict: self.verdict.clone().unwrap_or_default(),
            min_severity: min_severity as i32,
            workload: self.workload.clone().unwrap_or_default(),
            destination: self.destination.clone().unwrap_or_default(),
        })
    }
}

/// The sink's type and its own settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkKind {
    /// A `sovereign-collector` (gRPC push, mutual TLS).
    Collector(CollectorSink),
    /// NATS JetStream.
    Nats(NatsSink),
    /// Syslog, RFC 5424 over TLS (RFC 5425 framing).
    Syslog(SyslogSink),
    /// HTTPS POST of JSON.
    Webhook(WebhookSink),
}

impl SinkKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Collector(_) => "collector",
            SinkKind::Nats(_) => "nats",
            SinkKind::Syslog(_) => "syslog",
            SinkKind::Webhook(_) => "webhook",
        }
    }

    /// The type's own settings usable (each type checks its own).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            SinkKind::Collector(c) => c.validate(),
            SinkKind::Nats(c) => c.validate(),
            SinkKind::Syslog(c) => c.validate(),
            SinkKind::Webhook(c) => c.validate(),
        }
    }

    /// The PEM files the type reads, each with what it must hold (`CERTIFICATE`, `PRIVATE
    /// KEY`): checked by `config check` and at start, not by a background task later.
    pub fn pem_files(&self) -> Vec<(&Path, &'static str)> {
        match self {
            SinkKind::Collector(c) => c.pem_files(),
            SinkKind::Nats(c) => c.pem_files(),
            SinkKind::Syslog(c) => c.pem_files(),
            SinkKind::Webhook(c) => c.pem_files(),
        }
    }
}

/// The files of `(path, what)` pairs that are set.
fn set<'a>(files: &[(Option<&'a PathBuf>, &'static str)]) -> Vec<(&'a Path, &'static str)> {
    files
        .iter()
        .filter_map(|&(p, what)| p.map(|p| (p.as_path(), what)))
        .collect()
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CollectorSink {
    /// `https://host:port` of the collector.
    pub url: String,
    /// CA the collector's certificate must chain to; this agent's certificate and key (its
    /// common name is the agent's identity at the collector).
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NatsSink {
    /// Server URLs (`nats://host:4222`, `tls://host:4222`): every node of a cluster the agent
    /// may connect to.
    pub servers: Vec<String>,
    /// Subjects are `<prefix>.<agent_id>.<kind>`; the stream must capture them.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// `json` (the event as in `tail --json`) or `protobuf` (sovereign.agent.v1.Event).
    #[serde(default)]
    pub format: PayloadFormat,
    /// NATS credentials file (JWT and NKey seed), if the servers require it.
    pub credentials: Option<PathBuf>,
    /// CA for `tls://` servers (PEM), and a client certificate and key if they require one.
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// How long a publish waits for JetStream's acknowledgement, in milliseconds.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// Batches published and not yet acknowledged at most: more keeps the connection busy
    /// while JetStream stores and replicates the earlier ones (throughput); 1 is stop-and-wait.
    #[serde(default = "default_in_flight_batches")]
    pub in_flight_batches: usize,
}

impl CollectorSink {
    fn validate(&self) -> Result<(), String> {
        if !self.url.starts_with("https://") {
            return Err(format!("url {:?}: expected https://HOST:PORT", self.url));
        }
        Ok(())
    }

    fn pem_files(&self) -> Vec<(&Path, &'static str)> {
        vec![
            (&self.ca, "CERTIFICATE"),
            (&self.cert, "CERTIFICATE"),
            (&self.key, "PRIVATE KEY"),
        ]
    }
}

impl NatsSink {
    fn validate(&self) -> Result<(), String> {
        if self.servers.is_empty() {
            return Err("servers: at least one nats:// or tls:// URL".into());
        }
        for s in &self.servers {
            if s.parse::<async_nats::ServerAddr>().is_err() {
                return Err(format!("servers: {s:?} is not a NATS URL"));
            }
        }
        if self.subject_prefix.is_empty()
            || self
                .subject_prefix
                .split('.')
                .any(|t| t.is_empty() || t.contains(['*', '>']) || t.contains(char::is_whitespace))
        {
            return Err(format!(
                "subject_prefix {:?}: dot-separated tokens without *, > or spaces",
                self.subject_prefix
            ));
        }
        if self.ack_timeout_ms == 0 {
            return Err("ack_timeout_ms: must be at least 1".into());
        }
        if !(1..=64).contains(&self.in_flight_batches) {
            return Err(format!(
                "in_flight_batches {}: 1 to 64",
                self.in_flight_batches
            ));
        }
        Ok(())
    }

    fn pem_files(&self) -> Vec<(&Path, &'static str)> {
        set(&[
            (self.ca.as_ref(), "CERTIFICATE"),
            (self.cert.as_ref(), "CERTIFICATE"),
            (self.key.as_ref(), "PRIVATE KEY"),
        ])
    }
}

fn default_subject_prefix() -> String {
    "sovereign".into()
}

fn default_ack_timeout_ms() -> u64 {
    5_000
}

fn default_in_flight_batches() -> usize {
    4
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    #[default]
    Json,
    Protobuf,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyslogSink {
    /// `host:port` of the receiver (TLS; 6514 is syslog over TLS's port).
    pub address: String,
    /// The name the receiver's certificate must carry (default: the host of `address`).
    pub server_name: Option<String>,
    /// CA the receiver's certificate must chain to (PEM).
    pub ca: PathBuf,
    /// A client certificate and key, if the receiver requires one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The message body: `json` or `cef` (ArcSight Common Event Format).
    #[serde(default)]
    pub format: SyslogFormat,
    /// Syslog facility number (RFC 5424 table 1): 13 is "log audit", 4 "security/auth".
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// APP-NAME of every message.
    #[serde(default = "default_app_name")]
    pub app_name: String,
}

impl SyslogSink {
    fn validate(&self) -> Result<(), String> {
        if self
            .address
            .rsplit_once(':')
            .is_none_or(|(_, p)| p.parse::<u16>().is_err())
        {
            return Err(format!("address {:?}: expected HOST:PORT", self.address));
        }
        if self.facility > 23 {
            return Err(format!("facility {}: 0 to 23", self.facility));
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err("cert and key go together".into());
        }
        Ok(())
    }

    fn pem_files(&self) -> Vec<(&Path, &'static str)> {
        set(&[
            (Some(&self.ca), "CERTIFICATE"),
            (self.cert.as_ref(), "CERTIFICATE"),
            (self.key.as_ref(), "PRIVATE KEY"),
        ])
    }
}

fn default_facility() -> u8 {
    13
}

fn default_app_name() -> String {
    "sovereign-agent".into()
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    #[default]
    Json,
    Cef,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookSink {
    /// `https://...` to POST to (`http://` only for a receiver on loopback).
    pub url: String,
    /// `json` (the event, as in `tail --json`) or `slack` (`{"text": ...}`, which Slack,
    /// Mattermost and Teams' incoming webhooks accept).
    #[serde(default)]
    pub format: WebhookFormat,
    /// CA the receiver's certificate must chain to (PEM); default: the system's roots.
    pub ca: Option<PathBuf>,
    /// Extra headers (an `Authorization` token ...).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// How long one request may take, in milliseconds.
    #[serde(default = "default_webhook_timeout_ms")]
    pub timeout_ms: u64,
}

impl WebhookSink {
    fn validate(&self) -> Result<(), String> {
        if !self.url.starts_with("https://") && !is_loopback_http(&self.url) {
            return Err(format!(
                "url {:?}: expected https:// (http:// only to loopback)",
                self.url
            ));
        }
        if self.timeout_ms == 0 {
            return Err("timeout_ms: must be at least 1".into());
        }
        Ok(())
    }

    fn pem_files(&self) -> Vec<(&Path, &'static str)> {
        set(&[(self.ca.as_ref(), "CERTIFICATE")])
    }
}

fn default_webhook_timeout_ms() -> u64 {
    10_000
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    #[default]
    Json,
    Slack,
}

/// Whether `url` is plain `http://` to this host's loopback by its parsed host, not by its
/// prefix (`http://localhost.evil.example/` and `http://127.0.0.1.evil.example/` are
/// elsewhere).
fn is_loopback_http(url: &str) -> bool {
    let Ok(uri) = url.parse::<tonic::codegen::http::Uri>() else {
        return false;
    };
    if uri.scheme_str() != Some("http") {
        return false;
    }
    match uri.host() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}
