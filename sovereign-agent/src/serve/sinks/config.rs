//! `[[sink]]` entries: where events go besides the journal, each with its own filter and
//! durable cursor (docs/sinks.md).
use std::path::PathBuf;

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
