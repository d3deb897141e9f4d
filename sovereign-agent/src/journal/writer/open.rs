//! Opening a journal for appending: the directory lock (one writer at a time), the segments
//! already there, the `HEAD` checkpoint, and the recovery of a torn tail after a crash (cut,
//! and recorded as a `journal_recovered` record).
//!
//! A cut below the checkpoint is not a crash: records that had been synced (and perhaps
//! delivered) are damaged. Then the whole segment is first kept aside in `damaged/`, the
//! journal goes on under a new id (its sequence numbers go back, and a receiver must not
//! take the new records for ones it has), the sinks' cursors are brought back to the cut, and
//! the `journal_recovered` record says all of it; `journal verify` and the report show it.
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
        let mut id = super::super::identity::open_or_create(&dir)?;
        let mut recovery = None;
        let (path, segment, created, offset, next_seq, chain) = match segments.last() {
            None => {
                let (path, chain) = create_segment(&dir, 0, 0, [0; 32], None)?;
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
                        create_segment(&dir, *index, first_seq, prev_head, signature)?;
                    recovery = Some(Recovery {
                        segment: *index,
                        offset: 0,
                        bytes_cut: bytes.len() as u64,
                        reason: format!(
                            "segment header incomplete ({} of {HEADER_LEN} bytes); rewritten",
                            bytes.len()
                        ),
                        below_checkpoint: false,
                        records_removed: 0,
                        set_aside: None,
                        previous_journal_id: None,
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
                        let synced_to = read_checkpoint(&dir)
                            .ok()
                            .flatten()
                            .filter(|c| {
                                c.segment > *index
                                    || (c.segment == *index && c.next_seq > scan.next_seq)
                            })
                            .map(|c| c.next_seq);
                        let mut r = Recovery {
                            segment: *index,
                            offset: scan.end,
                            bytes_cut,
                            reason,
                            below_checkpoint: synced_to.is_some(),
                            records_removed: 0,
                            set_aside: None,
                            previous_journal_id: None,
                        };
                        if let Some(synced_to) = synced_to {
                            r.set_aside = Some(set_aside(&dir, path, &bytes)?);
                            r.records_removed = synced_to - scan.next_seq;
                        }
                        let file = OpenOptions::new()
                            .write(true)
                            .open(path)
                            .map_err(io_err(path))?;
                        file.set_len(scan.end)
                            .and_then(|_| file.sync_all())
                            .map_err(io_err(path))?;
                        if r.below_checkpoint {
                            r.previous_journal_id = Some(std::mem::replace(
                                &mut id,
                                super::super::identity::renew(&dir)?,
                            ));
                            rewind_cursors(&dir, scan.next_seq)?;
                        }
                        recovery = Some(r);
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
                    records = r.records_removed,
                    set_aside = r.set_aside.as_deref().unwrap_or(""),
                    journal_id = %writer.id,
                    previous_journal_id = r.previous_journal_id.as_deref().unwrap_or(""),
                    "journal damaged below its last checkpoint: records that had been synced were cut and kept aside; the journal goes on under a new id ({})", r.reason
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
                    below_checkpoint: r.below_checkpoint,
                    records_removed: r.records_removed,
                    set_aside: r.set_aside.clone(),
                    previous_journal_id: r.previous_journal_id.clone(),
                },
            )))])?;
        }
        writer.checkpoint()?;
        Ok((writer, recovery))
    }
}

/// Keeps the whole damaged segment (`bytes`, as read) in `damaged/`, synced, before anything
/// is cut; returns its path relative to the journal directory.
fn set_aside(dir: &Path, segment: &Path, bytes: &[u8]) -> Result<String, JournalError> {
    let aside = dir.join(DAMAGED_DIR);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&aside)
        .map_err(io_err(&aside))?;
    let name = format!(
        "{}.{}",
        segment
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        crate::clock::unix_now_ns()
    );
    let path = aside.join(&name);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io_err(&path))?;
    fsync_dir(&aside)?;
    fsync_dir(dir)?;
    Ok(format!("{DAMAGED_DIR}/{name}"))
}

/// Brings every delivery cursor in `dir` (the sinks', the `[push]` one) back to `next_seq`
/// at most: past the cut they point at sequence numbers that the journal now gives to new
/// records, which would never be delivered.
fn rewind_cursors(dir: &Path, next_seq: u64) -> Result<(), JournalError> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_cursor =
            name == "push.cursor" || (name.starts_with("sink.") && name.ends_with(".cursor"));
        if !is_cursor {
            continue;
        }
        let path = entry.path();
        let at: Option<u64> = fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if at.is_some_and(|at| at > next_seq) {
            let tmp = dir.join(format!("{name}.tmp"));
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            writeln!(f, "{next_seq}")
                .and_then(|_| f.sync_all())
                .map_err(io_err(&tmp))?;
            fs::rename(&tmp, &path).map_err(io_err(&path))?;
        }
    }
    fsync_dir(dir)
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
