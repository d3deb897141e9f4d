//! The forensic journal (docs/journal.md): every event, appended to hash-chained segment
//! files that are sealed into their successors; verified, exported and replayed later. Events
//! also go to the [`output`] (JSON lines), and the [`ceiling`] bounds how many a second all
//! of them get.
pub mod ceiling;
pub mod convert;
pub mod error;
pub mod feed;
pub mod filter;
pub mod format;
pub mod identity;
pub mod keys;
pub mod output;
pub mod reader;
pub mod recorder;
pub mod verify;
pub mod writer;

pub use error::JournalError;
pub use writer::{
    EncodedBatch, FsyncPolicy, JournalOptions, JournalStats, JournalWriter, LiveFrames, Recovery,
};

#[cfg(test)]
pub(crate) mod tests;
