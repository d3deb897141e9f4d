//! Logs through `tracing`: human-readable text by default, JSON for production collectors.
//! Logs go to stderr; stdout is reserved for events.
use crate::config::{LogConfig, LogFormat};

pub fn init(log: &LogConfig) {
    // The level was validated with the config; fall back to info rather than fail here.
    let filter = tracing_subscriber::EnvFilter::try_new(&log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
