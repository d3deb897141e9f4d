//! The journal directory's files: its segments (listed, created with their header), its
//! `HEAD` checkpoint, and directory syncs. Opening, rotation and retention all use these.
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use crate::journal::{
    error::{io_err, JournalError},
    format::{self, Checkpoint, Hash, SegmentHeader},
    identity,
};

/// Where damaged segments are kept (a directory in the journal's).
pub const DAMAGED_DIR: &str = "damaged";

/// The names a journal directory may contain; anything else means it is not a journal.
fn is_journal_entry(name: &str) -> bool {
    format::parse_segment_file_name(name).is_some()
        || name == DAMAGED_DIR
        || name == format::HEAD_FILE
        || name == format::LOCK_FILE
        || name == "push.cursor"
        || name == "push.cursor.tmp"
        || name == identity::ID_FILE
        || name == "journal.id.tmp"
        // Cursors of the agent's sinks and of a collector's JetStream stream.
        || ((name.starts_with("sink.") || name.starts_with("jetstream."))
            && (name.ends_with(".cursor") || name.ends_with(".cursor.tmp")))
        || name == "HEAD.tmp"
        || name.ends_with(".journal.tmp")
}

/// The segment files of `dir`, sorted; an error if `dir` holds anything else.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let entries = fs::read_dir(dir).map_err(io_err(dir))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(index) = format::parse_segment_file_name(&name) {
            segments.push((index, entry.path()));
        } else if !is_journal_entry(&name) {
            return Err(JournalError::Dir {
                dir: dir.to_path_buf(),
                message: format!(
                    "not a journal directory: it contains {name:?}, which is not a journal file"
                ),
            });
        }
    }
    segments.sort();
    Ok(segments)
}

pub(super) fn fsync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

pub fn read_checkpoint(dir: &Path) -> Result<Option<Checkpoint>, JournalError> {
    let path = dir.join(format::HEAD_FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| JournalError::Segment {
                path,
                offset: 0,
                message: format!("unreadable checkpoint: {e}"),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// Creates segment `index` with its header (synced, directory entry synced); returns its path
/// and the chain, which has hashed the header.
pub(super) fn create_segment(
    dir: &Path,
    index: u64,
    first_seq: u64,
    prev_head: Hash,
    prev_signature: Option<[u8; 64]>,
) -> Result<(PathBuf, blake3::Hasher), JournalError> {
    let header = SegmentHeader {
        segment: index,
        first_seq,
        created_unix_ns: crate::clock::unix_now_ns(),
        prev_head,
        prev_signature,
    }
    .encode();
    let path = format::segment_path(dir, index);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path))?;
    if let Err(e) = f.write_all(&header).and_then(|_| f.sync_all()) {
        let _ = fs::remove_file(&path);
        return Err(io_err(&path)(e));
    }
    fsync_dir(dir)?;
    let mut chain = blake3::Hasher::new();
    chain.update(&header);
    Ok((path, chain))
}
