//! The `syslog` sink's `[[sink]]` table.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
