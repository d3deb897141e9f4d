//! The agent's own telemetry: its logs ([`logs`], through `tracing`) and what it counts
//! ([`counters`]), which `/metrics`, `GetStatus` and the stop record report.
pub mod counters;
pub mod logs;

pub use logs::init;
