//! The `nats` sink: NATS JetStream (docs/sinks.md). [`client`] publishes and waits for
//! JetStream's acknowledgements ([`acks`]); [`config`] is its `[[sink]]` table.
mod acks;
pub mod client;
pub mod config;

use std::path::Path;

use super::transport::{pem_set, Context, SinkType, Transport};

pub use config::{NatsSink, PayloadFormat};

impl SinkType for NatsSink {
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
        pem_set(&[
            (self.ca.as_ref(), "CERTIFICATE"),
            (self.cert.as_ref(), "CERTIFICATE"),
            (self.key.as_ref(), "PRIVATE KEY"),
        ])
    }

    fn build(self, context: &Context) -> Box<dyn Transport> {
        Box::new(client::NatsTransport::new(
            self,
            context.origin.clone(),
            context.batch,
        ))
    }
}
