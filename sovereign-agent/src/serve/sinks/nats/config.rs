//! The `nats` sink's `[[sink]]` table.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
