//! [`Agent::run`]: the pipeline until the signal, then the stop in the order that loses
//! nothing: detach, drain, close the journal with its stop record, then end the API (whose
//! subscribers' streams never end by themselves).
use std::{future::Future, time::Duration};

use super::{Agent, AgentError};
use crate::{capture::pipeline::Stats, serve::service};

impl Agent {
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<Stats, AgentError> {
        let Agent {
            cgroup,
            capture,
            pipeline,
            rings,
            journal,
            counters,
            serving,
            tasks,
            api_socket,
            hooks_attached,
        } = self;
        service::ready(&format!(
            "capturing on {} ({hooks_attached} hooks)",
            cgroup.display()
        ));
        let watchdog = service::spawn_watchdog();
        let result = pipeline.run(rings, shutdown).await;
        counters
            .ready
            .store(false, std::sync::atomic::Ordering::Relaxed);
        service::stopping();
        if let Some(w) = watchdog {
            w.abort();
        }
        drop(capture); // closes every link: the programs are detached
        tracing::info!(cgroup = %cgroup.display(), "programs detached");
        if let Some(journal) = journal {
            let (reason, flows, losses) = match &result {
                Ok(s) => (
                    "signal".to_string(),
                    s.connect + s.send + s.established + s.close,
                    s.kernel_losses,
                ),
                Err(e) => (format!("error: {e}"), 0, 0),
            };
            match journal.stop(&reason, flows, losses) {
                Ok(j) => tracing::info!(
                    records = j.records,
                    bytes = j.bytes,
                    not_journaled = j.not_journaled,
                    "journal closed"
                ),
                Err(e) => tracing::error!("journal close failed: {e}"),
            }
        }
        // Subscribers' streams never end by themselves: give the API a moment, then stop it.
        let _ = serving.send(true);
        for mut task in tasks {
            if tokio::time::timeout(Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        if let Some(socket) = api_socket {
            let _ = std::fs::remove_file(socket);
        }
        let stats = result?;
        tracing::info!(?stats, "stopped");
        Ok(stats)
    }
}
