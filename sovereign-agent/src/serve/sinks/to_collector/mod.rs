//! The `collector` sink: gRPC push to a `sovereign-collector` over mutual TLS (docs/sinks.md).
//! [`client`] pushes; [`config`] is its `[[sink]]` table.
pub mod client;
pub mod config;

use std::path::Path;

use super::transport::{Context, SinkType, Transport};

pub use config::CollectorSink;

impl SinkType for CollectorSink {
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

    fn build(self, context: &Context) -> Box<dyn Transport> {
        Box::new(client::CollectorTransport::new(
            self,
            context.origin.journal_id.clone(),
        ))
    }
}
