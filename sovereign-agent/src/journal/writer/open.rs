//! Opening a journal for appending: the directory lock (one writer at a time), the segments
//! already there, the `HEAD` checkpoint, and the recovery of a torn tail after a crash (cut,
//! and recorded as a `journal_recovered` record).
use super::*;

impl JournalWriter {
    /// Opens (creating if needed) the journal in `opts.dir` for appending. A torn tail is cut
    /// and recorded as a `journal_recovered` record, which is also returned.
    pub fn open(opts: JournalOptions) -> Result<(Self, Option<Recovery>), JournalError> {
        let dir = opts.dir.clone();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(&dir))?;
        if !dir.is_dir() {
            return Err(JournalError::Dir {
                dir,
                message: "not a directory".into(),
            });
        }
        let segments = list_segments(&dir)?;
        let lock = lock(&dir)?;
        let id = super::super::identity::open_or_create(&dir)?;
        let mut recovery = None;
        let (path, segment, created, offset, next_seq, chain) = match segments.last() {
            None => {
                let (path, chain) = create_segment(&dir, &opts, 0, 0, [0; 32], None)?;
                (path, 0, SystemTime::now(), HEADER_LEN as u64, 0, chain)
            }
            Some((index, path)) => {
                let bytes = fs::read(path).map_err(io_err(path))?;
                if bytes.len() < HEADER_LEN
                    && bytes.starts_with(&format::MAGIC[..bytes.len().min(8)])
                {
                    // Crashed while creating this segment: write its header again from the
                    // end of the previous one.
                    let (first_seq, prev_head) = match segments.len() {
                        1 => (0, [0; 32]),
                        n => {
                            let (_, prev) = &segments[n - 2];
                            let pbytes = fs::read(prev).map_err(io_err(prev))?;
                            let s = scan_segment(prev, &pbytes)?;
                            (s.next_seq, format::head_of(&s.chain))
                        }
                    };
                    let signature = opts.signing_key.as_ref().filter(|_| *index > 0).map(|k| {
                        k.sign(&format::seal_message(index - 1, first_seq, &prev_head))
                            .to_bytes()
                    });
                    fs::remove_file(path).map_err(io_err(path))?;
                    let (path, chain) =
                        create_segment(&dir, &opts, *index, first_seq, prev_head, signature)?;
                    recovery = Some(Recovery {
                        segment: *index,
                        offset: 0,
                        bytes_cut: bytes.len() as u64,
                        reason: format!(
                            "segment header incomplete ({} of {HEADER_LEN} bytes); rewritten",
                            bytes.len()
                        ),
                        below_checkpoint: false,
                    });
                    (
                        path,
                        *index,
                        SystemTime::now(),
                        HEADER_LEN as u64,
                        first_seq,
                        chain,
                    )
                } else {
                    let scan = scan_segment(path, &bytes)?;
                    if scan.header.segment != *index {
                        return Err(JournalError::Segment {
                            path: path.clone(),
                            offset: 16,
                            message: format!(
                                "header says segment {}, the file name says {index}",
                                scan.header.segment
                            ),
                        });
                    }
                    if let Some(reason) = scan.torn {
                        let bytes_cut = bytes.len() as u64 - scan.end;
                        let file = OpenOptions::new()
                            .write(true)
                            .open(path)
                            .map_err(io_err(path))?;
                        file.set_len(scan.end)
                            .and_then(|_| file.sync_all())
                            .map_err(io_err(path))?;
                        let below_checkpoint =
                            read_checkpoint(&dir).ok().flatten().is_some_and(|c| {
                                c.segment > *index
                                    || (c.segment == *index && c.next_seq > scan.next_seq)
                            });
                        recovery = Some(Recovery {
                            segment: *index,
                            offset: scan.end,
                            bytes_cut,
                            reason,
                            below_checkpoint,
                        });
                    }
                    let created = SystemTime::UNIX_EPOCH
                        + Duration::from_nanos(scan.header.created_unix_ns.max(0) as u64);
                    (
                        path.clone(),
                        *index,
                        created,
                        scan.end,
                        scan.next_seq,
                        scan.chain,
                    )
                }
            }
        };
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut writer = JournalWriter {
            opts,
            id,
            _lock: lock,
            file,
            path,
            segment,
            segment_created: created,
            offset,
            next_seq,
            chain,
            buf: Vec::with_capacity(1 << 20),
            payload: Vec::with_capacity(4096),
            synced: true,
            last_sync: Instant::now(),
            last_checkpoint: Instant::now(),
            gap: None,
            live: None,
            stats: JournalStats {
                durable_seq: next_seq,
                ..Default::default()
            },
        };
        if let Some(r) = &recovery {
            if r.below_checkpoint {
                tracing::error!(
                    segment = r.segment, offset = r.offset, bytes = r.bytes_cut,
                    "journal damaged below its last checkpoint: records that had been synced are lost ({})", r.reason
                );
            } else {
                tracing::warn!(
                    segment = r.segment,
                    offset = r.offset,
                    bytes = r.bytes_cut,
                    "journal had a torn tail (crash while writing): cut ({})",
                    r.reason
                );
            }
            writer.append(&[Event::Lifecycle(Box::new(LifecycleEvent::now(
                Lifecycle::JournalRecovered {
                    segment: r.segment,
                    offset: r.offset,
                    bytes_cut: r.bytes_cut,
                    reason: r.reason.clone(),
                },
            )))])?;
        }
        writer.checkpoint()?;
        Ok((writer, recovery))
    }
}

/// The names a journal directory may contain; anything else means it is not a journal.
fn is_journal_entry(name: &str) -> bool {
    format::parse_segment_file_name(name).is_some()
        || name == format::HEAD_FILE
        || name == format::LOCK_FILE
        || name == "push.cursor"
        || name == "push.cursor.tmp"
        || name == super::super::identity::ID_FILE
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

/// The state at the end of a segment's valid frames.
struct Scan {
    header: SegmentHeader,
    end: u64,
    next_seq: u64,
    chain: blake3::Hasher,
    /// What was wrong at `end`, if the file goes on past it.
    torn: Option<String>,
}

fn scan_segment(path: &Path, bytes: &[u8]) -> Result<Scan, JournalError> {
    let header = SegmentHeader::decode(bytes).map_err(|e| JournalError::Segment {
        path: path.to_path_buf(),
        offset: 0,
        message: e.to_string(),
    })?;
    let mut off = HEADER_LEN;
    let mut seq = header.first_seq;
    let mut torn = None;
    while off < bytes.len() {
        match format::decode_frame(&bytes[off..]) {
            Ok(f) if f.seq == seq => {
                seq += 1;
                off += f.bytes.len();
            }
            Ok(f) => {
                torn = Some(format!("sequence {} where {seq} was expected", f.seq));
                break;
            }
            Err(e) => {
                torn = Some(e.to_string());
                break;
            }
        }
    }
    let mut chain = blake3::Hasher::new();
    chain.update(&bytes[..off]);
    Ok(Scan {
        header,
        end: off as u64,
        next_seq: seq,
        chain,
        torn,
    })
}

fn lock(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join(format::LOCK_FILE);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            JournalError::Locked {
                dir: dir.to_path_buf(),
            }
        } else {
            io_err(&path)(e)
        });
    }
    Ok(file)
}

/// Creates segment `index` with its header (synced, directory entry synced); returns its path
/// and the chain, which has hashed the header.
pub(super) fn create_segment(
    dir: &Path,
    _opts: &JournalOptions,
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
