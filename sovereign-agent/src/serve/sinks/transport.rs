//! What a sink type is to the rest of the sinks: its `[[sink]]` table checks itself and
//! builds a [`Transport`], which the driver delivers through; a batch's
//! [`Acknowledgement`] says how far the receiver took it, and [`Failed`] how a delivery
//! failed.
use std::{
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
};

use super::{record::Record, render::Origin};

/// A batch's acknowledgement: Ok once the receiver took all of it, or how far it got. Owns
/// what it waits on, so that several batches can be in flight.
pub type Acknowledgement = Pin<Box<dyn Future<Output = Result<(), Failed>> + Send>>;

/// How far a failed delivery got: the first `delivered` events of the batch were
/// acknowledged (the cursor moves past them), the rest were not.
#[derive(Debug)]
pub struct Failed {
    pub delivered: usize,
    pub error: String,
}

impl Failed {
    pub fn none(error: impl Into<String>) -> Self {
        Failed {
            delivered: 0,
            error: error.into(),
        }
    }
}

/// A future a [`Transport`] returns (boxed: the driver holds any type's; one allocation per
/// batch, not per event).
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One receiver, as the driver sees it.
pub trait Transport: Send {
    /// Opens a session (a connection, a TLS handshake, a subscription): called before the
    /// first batch and after every failure.
    fn connect(&mut self) -> Pending<'_, Result<(), String>>;

    /// Sends `events` (in journal order; `journal_head` is the journal's next sequence number
    /// now). A transport that pipelines returns once they are on their way; the others once
    /// the receiver answered (their acknowledgement is then ready).
    fn send<'a>(
        &'a mut self,
        events: &'a [Record],
        journal_head: u64,
    ) -> Pending<'a, Acknowledgement>;

    /// Batches that may be sent and not yet acknowledged.
    fn window(&self) -> usize {
        1
    }

    /// Ends the session (after a failure, or at stop).
    fn disconnect(&mut self) {}
}

/// An acknowledgement that is already known (a transport that waits for its receiver's
/// answer inside `send`).
pub fn answered(result: Result<(), Failed>) -> Acknowledgement {
    Box::pin(std::future::ready(result))
}

/// What a transport is built from besides its own table.
pub struct Context<'a> {
    /// Who sends: the agent and its journal.
    pub origin: &'a Origin,
    /// Events per batch at most (`[[sink]] batch`).
    pub batch: usize,
}

/// A sink type's `[[sink]]` table (serde, unknown keys denied): its own checks, the PEM files
/// it reads, and the transport it builds. Registered with one line in `registry.rs`.
pub trait SinkType {
    /// Whether the settings can run (a message that names the key, for `config check`).
    fn validate(&self) -> Result<(), String>;

    /// The PEM files it reads, each with what it must hold (`CERTIFICATE`, `PRIVATE KEY`):
    /// checked by `config check` and at start, not by a background task later.
    fn pem_files(&self) -> Vec<(&Path, &'static str)>;

    fn build(self, context: &Context) -> Box<dyn Transport>
    where
        Self: Sized;
}

/// The files of `(path, what)` pairs that are set (for a type whose files are optional).
pub fn pem_set<'a>(files: &[(Option<&'a PathBuf>, &'static str)]) -> Vec<(&'a Path, &'static str)> {
    files
        .iter()
        .filter_map(|&(p, what)| p.map(|p| (p.as_path(), what)))
        .collect()
}
