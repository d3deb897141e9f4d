//! What can go wrong with a journal, for the writer, the reader and the identity file alike.
use std::{
    io,
    path::{Path, PathBuf},
};

use super::format;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {}: {message}", dir.display())]
    Dir { dir: PathBuf, message: String },
    #[error("journal {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("journal segment {} at offset {offset}: {message}", path.display())]
    Segment {
        path: PathBuf,
        offset: u64,
        message: String,
    },
    #[error("journal record {seq}: {message}")]
    Record { seq: u64, message: String },
    #[error("journal {} is in use by another process (lock {} is held)", dir.display(), dir.join(format::LOCK_FILE).display())]
    Locked { dir: PathBuf },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}
