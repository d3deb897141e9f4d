//! The `webhook` sink: HTTPS POST of JSON or a chat message (docs/sinks.md). [`client`]
//! posts; [`config`] is its `[[sink]]` table.
pub mod client;
pub mod config;

use std::path::Path;

use super::transport::{pem_set, Context, SinkType, Transport};
use config::is_loopback_http;

pub use config::{WebhookFormat, WebhookSink};

impl SinkType for WebhookSink {
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
        pem_set(&[(self.ca.as_ref(), "CERTIFICATE")])
    }

    fn build(self, context: &Context) -> Box<dyn Transport> {
        Box::new(client::WebhookTransport::new(self, context.origin.clone()))
    }
}
