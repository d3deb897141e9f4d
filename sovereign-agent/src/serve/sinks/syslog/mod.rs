//! The `syslog` sink: RFC 5424 over TLS (docs/sinks.md). [`client`] frames and writes;
//! [`config`] is its `[[sink]]` table.
pub mod client;
pub mod config;

use std::path::Path;

use super::transport::{pem_set, Context, SinkType, Transport};

pub use config::{SyslogFormat, SyslogSink};

impl SinkType for SyslogSink {
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
        pem_set(&[
            (Some(&self.ca), "CERTIFICATE"),
            (self.cert.as_ref(), "CERTIFICATE"),
            (self.key.as_ref(), "PRIVATE KEY"),
        ])
    }

    fn build(self, context: &Context) -> Box<dyn Transport> {
        Box::new(client::SyslogTransport::new(self, context.origin.clone()))
    }
}
