//! The last stage, serving what was recorded: the gRPC [`api`] (journal and live events), the
//! [`sinks`] that deliver it (the [`collector`] among them, whose own program is here too),
//! with their durable [`cursor`]s and the [`nats`] client a sink and the collector share,
//! Prometheus [`metrics`] with the health endpoints, mutual [`tls`] and the client [`roles`],
//! and the [`service`] manager's notify protocol.
pub mod api;
pub mod collector;
pub mod cursor;
pub mod limits;
pub mod metrics;
pub mod nats;
pub mod roles;
pub mod service;
pub mod sinks;
pub mod tls;
