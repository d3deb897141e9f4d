//! The Prometheus text exposition (`/metrics`) of what the agent counts: the [`Counters`]
//! the pipeline, the API and the pusher update with relaxed atomic adds
//! ([`crate::telemetry::counters`]), the policy watcher's loads; gauges
//! that are cheap to read (ring-buffer fill, journal size, subscribers, process figures) are
//! read at scrape time instead of being kept current on the hot path.
//!
//! [`render`] writes the families of each part in turn, a file each: [`pipeline`], [`kernel`],
//! [`enforce`], [`names`], [`processes`], [`sinks`], [`journal`], [`policy`], and [`host`] (the agent's
//! own process).
mod enforce;
pub mod exposition;
mod host;
pub mod http;
mod journal;
mod kernel;
mod names;
mod pipeline;
mod policy;
mod processes;
pub mod programs;
pub mod ring;
mod sinks;
mod sources;

use std::sync::atomic::Ordering::Relaxed;

pub use crate::telemetry::counters::Counters;
use exposition::{Exposition, NS};
pub use sources::{Attached, Sources};

/// The Prometheus text exposition (version 0.0.4) of every metric.
pub fn render(s: &Sources) -> String {
    let c = &s.counters;
    let mut out = Exposition::default();
    out.gauge(
        "sovereign_agent_build_info",
        "The agent's version (always 1).",
        &[(vec![("version", env!("CARGO_PKG_VERSION"))], 1.0)],
    );
    out.gauge(
        "sovereign_agent_start_time_seconds",
        "When the agent started, Unix time.",
        &[(vec![], s.started_unix_ns as f64 * NS)],
    );
    out.gauge(
        "sovereign_agent_ready",
        "1 when the programs are attached and the policy is loaded.",
        &[(vec![], f64::from(u8::from(c.ready.load(Relaxed))))],
    );
    pipeline::render(&mut out, c);
    kernel::render(&mut out, s);
    enforce::render(
        &mut out,
        &s.enforced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    names::render(
        &mut out,
        &c.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    processes::render(&mut out, c);
    sinks::render(&mut out, &s.sinks);
    if let Some(j) = &s.journal {
        journal::render(&mut out, j);
    }
    if let Some(policy) = s.policy.as_ref().and_then(|rx| rx.borrow().clone()) {
        policy::render(&mut out, c, &policy);
    }
    out.gauge(
        "sovereign_agent_api_subscribers",
        "gRPC event-stream subscribers connected.",
        &[(vec![], s.subscribers.load(Relaxed) as f64)],
    );
    host::render(&mut out);
    out.finish()
}
