//! The `collector` sink's `[[sink]]` table.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
