//! The `webhook` sink: one HTTPS POST per event, JSON (the event as in `tail --json`) or a
//! chat message (`{"text": ...}`, which Slack, Mattermost and Teams' incoming webhooks take),
//! with its idempotency key in the `Idempotency-Key` header. An event is delivered when the
//! receiver answers 2xx; anything else is retried with back-off from that event on.
use std::{sync::Arc, time::Duration};

use super::config::{WebhookFormat, WebhookSink};
use futures_util::FutureExt;

use crate::serve::sinks::{
    record::Record,
    render::{render, summary, Origin},
    transport::{answered, Acknowledgement, Failed, Pending, Transport},
};

/// A receiver's answer is read up to this many bytes (it is not used beyond its status).
const RESPONSE_LIMIT: u64 = 64 * 1024;

pub struct WebhookTransport {
    config: WebhookSink,
    origin: Origin,
    agent: Option<ureq::Agent>,
}

impl WebhookTransport {
    pub fn new(config: WebhookSink, origin: Origin) -> Self {
        WebhookTransport {
            config,
            origin,
            agent: None,
        }
    }

    /// Builds the HTTP client (connections are made per request, kept alive between them).
    pub fn connect(&mut self) -> Result<(), String> {
        if self.agent.is_some() {
            return Ok(());
        }
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &self.config.ca {
            let pem = std::fs::read(ca).map_err(|e| format!("webhook CA {}: {e}", ca.display()))?;
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(format!("webhook CA {}: no certificate in it", ca.display()));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)));
        }
        self.agent = Some(
            ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_millis(self.config.timeout_ms)))
                .http_status_as_error(false)
                .tls_config(tls.build())
                .build()
                .new_agent(),
        );
        Ok(())
    }

    pub async fn deliver(&mut self, events: &[Record]) -> Result<(), Failed> {
        let agent = self
            .agent
            .clone()
            .ok_or_else(|| Failed::none("not connected"))?;
        let bodies: Vec<(String, Vec<u8>)> = events
            .iter()
            .map(|e| {
                let r = render(&self.origin, e.event());
                let body = match self.config.format {
                    WebhookFormat::Json => serde_json::to_vec(&r.json),
                    WebhookFormat::Slack => {
                        serde_json::to_vec(&serde_json::json!({ "text": summary(&r) }))
                    }
                }
                .unwrap_or_default();
                (r.key, body)
            })
            .collect();
        let url = self.config.url.clone();
        let headers = self.config.headers.clone();
        // ureq is blocking: the whole batch goes on one blocking thread.
        tokio::task::spawn_blocking(move || {
            for (i, (key, body)) in bodies.into_iter().enumerate() {
                let mut request = agent
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .header("Idempotency-Key", &key);
                for (name, value) in &headers {
                    request = request.header(name, value);
                }
                let fail = |error: String| Failed {
                    delivered: i,
                    error,
                };
                let mut response = request
                    .send(&body[..])
                    .map_err(|e| fail(format!("POST {url}: {e}")))?;
                let status = response.status();
                // Read to its end (bounded), or the connection cannot be kept alive and every
                // POST pays a TLS handshake: 420 µs of the agent's CPU a POST, 800 POSTs a
                // second, before this line (cargo xtask bench-alerts).
                let _ = response
                    .body_mut()
                    .with_config()
                    .limit(RESPONSE_LIMIT)
                    .read_to_vec();
                if !status.is_success() {
                    return Err(fail(format!("POST {url}: HTTP {status}")));
                }
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(Failed::none(e.to_string())))
    }
}

impl Transport for WebhookTransport {
    fn connect(&mut self) -> Pending<'_, Result<(), String>> {
        Box::pin(std::future::ready(WebhookTransport::connect(self)))
    }

    fn send<'a>(&'a mut self, events: &'a [Record], _: u64) -> Pending<'a, Acknowledgement> {
        Box::pin(self.deliver(events).map(answered))
    }
}
