//! The HTTP endpoints for Prometheus and for probes: `/metrics`, `/healthz` (the process
//! answers) and `/readyz` (programs attached and policy loaded). Plain HTTP on a loopback
//! address by default: metrics carry rule names and policy hashes, not flow data.
use std::{future::Future, net::SocketAddr, sync::atomic::Ordering};

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    routing::get,
    Router,
};

use super::Sources;

#[derive(Debug, thiserror::Error)]
#[error("metrics.listen {addr}: {source}{hint}")]
pub struct MetricsError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
    hint: &'static str,
}

/// Binds the endpoint's address: done before any program is attached, so that a port in
/// use stops the start with a clear message.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, MetricsError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError {
            addr,
            hint: if source.kind() == std::io::ErrorKind::AddrInUse {
                " (another agent, or another exporter, listens there: set metrics.listen or \
                 SOVEREIGN_METRICS_LISTEN to a free port)"
            } else {
                ""
            },
            source,
        })
}

/// Serves until `stopped` resolves, on a thread and runtime of its own: whatever keeps the
/// event loop busy (a flood being drained, a slow disk), `/healthz` and `/metrics` answer, and
/// a probe that times out means the process is really stuck. The returned task ends when the
/// server does.
pub fn serve(
    listener: tokio::net::TcpListener,
    sources: Sources,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(sources);
    let (done, ended) = tokio::sync::oneshot::channel::<()>();
    let listener = listener.into_std();
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("metrics endpoint not started: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match listener.and_then(tokio::net::TcpListener::from_std) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("metrics endpoint not started: {e}");
                        return;
                    }
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await
                {
                    tracing::error!("metrics endpoint stopped: {e}");
                }
            });
            let _ = done.send(());
        });
    if let Err(e) = thread {
        tracing::error!("metrics endpoint not started: {e}");
    }
    tokio::spawn(async move {
        let _ = ended.await;
    })
}

async fn metrics(State(s): State<Sources>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        super::render(&s),
    )
}

/// Ready: attached and keeping up. Overloaded (the ring buffer nine-tenths full, or the
/// journal behind its disk) is said as such: the agent is alive (`/healthz`), but records may
/// be lost until it catches up.
async fn readyz(State(s): State<Sources>) -> impl IntoResponse {
    if !s.counters.ready.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the programs are not attached (starting or stopping)\n".to_string(),
        );
    }
    let ring_full = s
        .ring()
        .is_some_and(|r| r.size() > 0 && r.used() * 10 >= r.size() * 9);
    if ring_full {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded: the ring buffer is over 90% full (records may be lost)\n".to_string(),
        );
    }
    if s.counters.output_behind.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded: the journal is behind its disk (reading paused)\n".to_string(),
        );
    }
    // Degraded is still ready (the agent reports what its hooks see), but it says what is
    // missing, so that a probe's output or a `curl` tells an operator at once.
    let missing: Vec<String> = s
        .hooks()
        .into_iter()
        .flatten()
        .filter(|h| h.error.is_some())
        .map(|h| format!("{} (not reported: {})", h.hook, h.hook.loses()))
        .collect();
    if missing.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::OK,
            format!(
                "ready, degraded: hooks not attached: {}\n",
                missing.join("; ")
            ),
        )
    }
}
