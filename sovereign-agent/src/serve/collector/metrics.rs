//! The collector's `/metrics` (Prometheus) and `/healthz`: what it stored, dropped as re-sent
//! and refused, and each agent journal's progress (the `GetStatus` figures), so that a fleet's
//! operators can alert on an agent gone silent or a backlog that grows. Plain HTTP, meant for
//! a loopback or cluster-internal address: the figures name agents, not alerts.
use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};

use super::Collector;
use crate::serve::metrics::exposition::Exposition;

/// The exposition text of `collector` now.
pub fn render(collector: &Collector) -> String {
    let c = &collector.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    let mut e = Exposition::default();
    e.counter(
        "sovereign_collector_events_stored_total",
        "Events stored in the collector's journal (each once).",
        &[(vec![], get(&c.stored))],
    );
    e.counter(
        "sovereign_collector_duplicates_total",
        "Events received again (a re-send after a lost acknowledgement) and not stored twice.",
        &[(vec![], get(&c.duplicates))],
    );
    e.counter(
        "sovereign_collector_batches_refused_total",
        "Batches refused as malformed (sequence numbers out of order, an invalid event).",
        &[(vec![], get(&c.batches_refused))],
    );
    e.counter(
        "sovereign_collector_store_errors_total",
        "Batches the collector's journal could not store (not acknowledged; the agent retries).",
        &[(vec![], get(&c.store_errors))],
    );
    if let Some(listener) = &collector.listener {
        e.gauge(
            "sovereign_collector_connections_open",
            "TCP connections open now (agents and subscribers, TLS handshakes under way).",
            &[(vec![], listener.open() as f64)],
        );
        e.counter(
            "sovereign_collector_connections_refused_total",
            "TCP connections closed at accept because a cap was reached (--max-connections, \
             --max-connections-per-client).",
            &[
                (vec![("cap", "total")], get(&listener.refused.over_total)),
                (
                    vec![("cap", "per_client")],
                    get(&listener.refused.over_per_client),
                ),
            ],
        );
    }
    e.gauge(
        "sovereign_collector_journal_next_seq",
        "Sequence number the collector's journal gives its next record.",
        &[(
            vec![],
            collector.shared.next_seq.load(Ordering::Relaxed) as f64,
        )],
    );
    let agents = collector.agents();
    e.gauge(
        "sovereign_collector_agent_journals",
        "Agent journals the collector holds events of.",
        &[(vec![], agents.len() as f64)],
    );
    let per_agent = |f: &dyn Fn(&sovereign_agent_proto::agent::v1::AgentProgress) -> f64| {
        agents
            .iter()
            .map(|a| {
                (
                    vec![
                        ("agent", a.agent_id.as_str()),
                        ("journal", a.journal_id.as_str()),
                    ],
                    f(a),
                )
            })
            .collect::<Vec<_>>()
    };
    e.gauge(
        "sovereign_collector_agent_last_seq",
        "Highest sequence number of the agent's journal stored.",
        &per_agent(&|a| a.last_seq as f64),
    );
    e.gauge(
        "sovereign_collector_agent_backlog_records",
        "Records of the agent's journal not yet stored, as of its last push.",
        &per_agent(&|a| a.backlog as f64),
    );
    e.gauge(
        "sovereign_collector_agent_last_seen_timestamp_seconds",
        "When the collector last stored events of the agent's journal (Unix time).",
        &per_agent(&|a| a.last_seen_unix_ns as f64 / 1e9),
    );
    e.gauge(
        "sovereign_collector_agent_connected",
        "1 while a push stream of the agent's journal is open.",
        &per_agent(&|a| f64::from(u8::from(a.connected))),
    );
    e.finish()
}

/// Serves `/metrics` and `/healthz` on `listener` until `stopped` resolves.
pub fn serve(
    listener: tokio::net::TcpListener,
    collector: Arc<Collector>,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(collector);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!("metrics endpoint failed: {e}");
        }
    })
}

/// Binds the endpoint before anything else starts, so a port in use stops the start.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--metrics-listen {addr}: {e}"))
}

async fn metrics(State(collector): State<Arc<Collector>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&collector),
    )
}
