//! The `webhook` sink's `[[sink]]` table.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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

/// Whether `url` is plain `http://` to this host's loopback by its parsed host, not by its
/// prefix (`http://localhost.evil.example/` and `http://127.0.0.1.evil.example/` are
/// elsewhere).
pub(super) fn is_loopback_http(url: &str) -> bool {
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
