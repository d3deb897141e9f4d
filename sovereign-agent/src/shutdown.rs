//! SIGINT/SIGTERM: the signal to drain, detach and exit 0.
use tokio::signal::unix::{signal, SignalKind};

/// Resolves on the first SIGINT or SIGTERM. Handlers are installed when this is called, so call
/// it before attaching: a signal that arrives during start-up is then not lost.
pub fn signalled() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining and detaching"),
            _ = int.recv() => tracing::info!("SIGINT: draining and detaching"),
        }
    })
}
