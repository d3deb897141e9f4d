//! The sink types. Each is a folder (`<type>/`: its `[[sink]]` table in `config.rs`, its
//! [`SinkType`] in `mod.rs`, its transport beside them) and one line here, which gives it its
//! `type = "..."` name in the configuration.
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    nats, syslog, to_collector,
    transport::{Context, SinkType, Transport},
    webhook,
};

/// Declares [`SinkKind`], the tagged union of every type's table, and its dispatch.
macro_rules! sink_types {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $table:ty;)+) => {
        /// The sink's type and its own settings.
        #[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
        #[serde(tag = "type")]
        pub enum SinkKind {
            $($(#[$doc])* #[serde(rename = $name)] $variant($table),)+
        }

        impl SinkKind {
            /// Its `type` in the configuration (and in metrics and status).
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(SinkKind::$variant(_) => $name,)+
                }
            }

            fn table(&self) -> &dyn SinkType {
                match self {
                    $(SinkKind::$variant(t) => t,)+
                }
            }

            pub fn build(self, context: &Context) -> Box<dyn Transport> {
                match self {
                    $(SinkKind::$variant(t) => t.build(context),)+
                }
            }
        }
    };
}

sink_types! {
    /// A `sovereign-collector` (gRPC push, mutual TLS).
    Collector = "collector", to_collector::CollectorSink;
    /// NATS JetStream.
    Nats = "nats", nats::NatsSink;
    /// Syslog, RFC 5424 over TLS (RFC 5425 framing).
    Syslog = "syslog", syslog::SyslogSink;
    /// HTTPS POST of JSON.
    Webhook = "webhook", webhook::WebhookSink;
}

impl SinkKind {
    /// The type's own settings usable (each type checks its own).
    pub fn validate(&self) -> Result<(), String> {
        self.table().validate()
    }

    /// The PEM files the type reads (see [`SinkType::pem_files`]).
    pub fn pem_files(&self) -> Vec<(&Path, &'static str)> {
        self.table().pem_files()
    }
}
