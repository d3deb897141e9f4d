//! Sinks: where events go besides the journal (docs/sinks.md). Each `[[sink]]` has a type
//! (`collector`, `nats`, `syslog`, `webhook`), a filter and its own durable cursor in the
//! journal directory: the journal is the spool, so a receiver's outage delays its events but
//! loses none, and each sink resumes on its own.
//!
//! - [`config`]: the `[[sink]]` entries.
//! - [`driver`]: the delivery loop every sink shares (journal → [`record`]s in batches →
//!   acknowledged → [`crate::serve::cursor`]), with [`stats`].
//! - [`transport`]: one type per receiver: [`to_collector`], [`nats`], [`syslog`],
//!   [`webhook`] ([`jetstream_acks`]: the nats sink's acknowledgements); [`render`] is what
//!   they send for an event.
pub mod config;
pub mod driver;
pub mod jetstream_acks;
pub mod kinds;
pub mod nats;
pub mod record;
pub mod render;
pub mod stats;
pub mod syslog;
pub mod to_collector;
pub mod transport;
pub mod webhook;

use std::sync::Arc;

use tokio::{sync::watch, task::JoinHandle};

pub use config::{SinkConfig, SinkFilter, SinkKind};
pub use stats::SinkStats;

use crate::journal::recorder::JournalShared;
use crate::serve::cursor::Cursor;
use driver::Driver;
use kinds::Transport;
use render::Origin;

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
        let transport = match config.kind {
            SinkKind::Collector(c) => {
                Transport::Collector(to_collector::CollectorTransport::new(c, journal.id.clone()))
            }
            SinkKind::Nats(c) => Transport::Nats(Box::new(nats::NatsTransport::new(
                c,
                origin.clone(),
                config.batch,
            ))),
            SinkKind::Syslog(c) => {
                Transport::Syslog(Box::new(syslog::SyslogTransport::new(c, origin.clone())))
            }
            SinkKind::Webhook(c) => {
                Transport::Webhook(webhook::WebhookTransport::new(c, origin.clone()))
            }
        };
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
