//! What each sink has done, for `/metrics` and `GetStatus`: updated by its driver with
//! relaxed atomics, read at scrape time.
use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    Arc, Mutex,
};

use sovereign_agent_proto::agent::v1 as pb;

use crate::journal::recorder::JournalShared;

#[derive(Debug)]
pub struct SinkStats {
    pub name: String,
    pub type_name: &'static str,
    /// Events acknowledged by the receiver since start.
    pub delivered: AtomicU64,
    /// The sink's cursor: the next journal sequence number it has to look at.
    pub cursor: AtomicU64,
    /// Delivery attempts that failed (each is retried).
    pub errors: AtomicU64,
    pub connected: AtomicBool,
    /// Nanoseconds from the oldest event of the last acknowledged batch to its ack.
    pub lag_ns: AtomicU64,
    /// Events the journal's retention deleted before this sink delivered them.
    pub missed: AtomicU64,
    pub last_error: Mutex<String>,
    journal: Arc<JournalShared>,
}

impl SinkStats {
    pub fn new(name: &str, type_name: &'static str, journal: Arc<JournalShared>) -> Self {
        SinkStats {
            name: name.to_string(),
            type_name,
            delivered: AtomicU64::new(0),
            cursor: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            lag_ns: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
            journal,
        }
    }

    /// Journal records between the cursor and the head: what the sink may still have to
    /// deliver (its filter skips some, so an upper bound).
    pub fn backlog(&self) -> u64 {
        self.journal
            .next_seq
            .load(Relaxed)
            .saturating_sub(self.cursor.load(Relaxed))
    }

    pub fn set_error(&self, error: &str) {
        self.errors.fetch_add(1, Relaxed);
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = error.to_string();
    }

    pub fn status(&self) -> pb::SinkStatus {
        let connected = self.connected.load(Relaxed);
        pb::SinkStatus {
            name: self.name.clone(),
            r#type: self.type_name.into(),
            delivered: self.delivered.load(Relaxed),
            backlog: self.backlog(),
            lag_seconds: self.lag_ns.load(Relaxed) as f64 * 1e-9,
            errors: self.errors.load(Relaxed),
            connected,
            last_error: if connected {
                String::new()
            } else {
                self.last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            },
        }
    }
}
