//! Sinks: where events go besides the journal (docs/sinks.md). Each `[[sink]]` has a type
//! (`collector`, `nats`, `syslog`, `webhook`), a filter and its own durable cursor in the
//! journal directory: the journal is the spool, so a receiver's outage delays its events but
//! loses none, and each sink resumes on its own.
//!
//! - [`config`]: the `[[sink]]` entries (name, filter, batch, and the type's own table).
//! - [`driver`]: the delivery loop every sink shares (journal → [`record`]s in batches →
//!   acknowledged → [`crate::serve::cursor`]), with [`stats`].
//! - [`transport`]: what a sink type is ([`transport::SinkType`]: checks, PEM files, build)
//!   and what the driver sends through ([`transport::Transport`]); [`render`] is what a type
//!   sends for an event.
//! - One folder per type, each registered by one line in [`registry`]: [`to_collector`],
//!   [`nats`], [`syslog`], [`webhook`].
pub mod config;
pub mod driver;
pub mod nats;
pub mod record;
pub mod registry;
pub mod render;
pub mod stats;
pub mod syslog;
pub mod to_collector;
pub mod transport;
pub mod webhook;

use std::sync::Arc;

use tokio::{sync::watch, task::JoinHandle};

pub use config::{SinkConfig, SinkFilter};
pub use registry::SinkKind;
pub use stats::SinkStats;

use crate::journal::recorder::JournalShared;
use crate::serve::cursor::Cursor;
use driver::Driver;
use render::Origin;
use transport::Context;

/// A sink ready to run: its settings and where its cursor is.
pub struct Planned {
    pub config: SinkConfig,
    pub cursor: Cursor,
}

impl Planned {
    pub fn sink(config: SinkConfig, journal_dir: &std::path::Path) -> Self {
        Planned {
            cursor: Cursor::of_sink(journal_dir, &config.name),
            config,
        }
    }
}

/// Starts every sink; returns their stats (for metrics and status) and tasks.
pub fn start(
    sinks: Vec<Planned>,
    agent_id: &str,
    journal: &Arc<JournalShared>,
    stop: &watch::Receiver<bool>,
) -> (Vec<Arc<SinkStats>>, Vec<JoinHandle<()>>) {
    let origin = Origin {
        agent_id: agent_id.to_string(),
        journal_id: journal.id.clone(),
    };
    let mut stats = Vec::new();
    let mut tasks = Vec::new();
    for Planned { config, cursor } in sinks {
        let s = Arc::new(SinkStats::new(
            &config.name,
            config.kind.type_name(),
            journal.clone(),
        ));
        s.cursor
            .store(cursor.read(), std::sync::atomic::Ordering::Relaxed);
        let filter = match config.filter.to_proto() {
            Ok(f) => f,
            Err(e) => {
                // Checked when the configuration is loaded; reported here all the same.
                s.set_error(&e);
                tracing::error!(sink = %config.name, "{e}");
                stats.push(s);
                continue;
            }
        };
        let transport = config.kind.build(&Context {
            origin: &origin,
            batch: config.batch,
        });
        let driver = Driver {
            transport,
            cursor,
            journal: journal.clone(),
            filter,
            batch: config.batch,
            stats: s.clone(),
            unwritten: None,
            written_at: std::time::Instant::now(),
        };
        tasks.push(tokio::spawn(driver.run(stop.clone())));
        stats.push(s);
    }
    (stats, tasks)
}
