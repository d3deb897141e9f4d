//! The last stage, serving what was recorded: the gRPC [`api`] (journal and live events),
//! [`push`] of alerts to a [`collector`], Prometheus [`metrics`] with the health endpoints, and
//! the [`service`] manager's notify protocol.
pub mod api;
pub mod collector;
pub mod limits;
pub mod metrics;
pub mod roles;
pub mod service;
pub mod sinks;
pub mod tls;
