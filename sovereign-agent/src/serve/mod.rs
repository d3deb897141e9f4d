//! The last stage, serving what was recorded: the gRPC [`api`] (journal and live events), the
//! [`sinks`] that deliver it (the [`collector`] among them, whose own program is here too),
//! Prometheus [`metrics`] with the health endpoints, mutual [`tls`] and the client [`roles`],
//! and the [`service`] manager's notify protocol.
pub mod api;
pub mod collector;
pub mod limits;
pub mod metrics;
pub mod roles;
pub mod service;
pub mod sinks;
pub mod tls;
