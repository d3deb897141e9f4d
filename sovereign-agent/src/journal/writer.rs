//! Appends events to the journal: batches of frames written with one `pwrite`, fsync per
//! policy, rotation by size and age, retention, the `HEAD` checkpoint, and recovery of a
//! torn tail when a journal is reopened after a crash.
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use ed25519_dalek::{Signer, SigningKey};

use super::{
    convert,
    format::{self, Checkpoint, Hash, SegmentHeader, FORMAT_VERSION, HEADER_LEN, MAX_PAYLOAD},
};
use crate::event::{Event, Lifecycle, LifecycleEvent};

/// When appended records are forced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every batch (the default): a record is durable once its batch returns.
    Batch,
    /// At most this often (and at every checkpoint, rotation and close).
    Interval(Duration),
    /// Left to the operating system (checkpoints, rotations and close still sync).
    Never,
}

#[derive(Clone, Debug)]
pub struct JournalOptions {
    pub dir: PathBuf,
    pub segment_max_bytes: u64,
    pub segment_max_age: Duration,
    /// Sealed segments older than this are deleted.
    pub retention_max_age: Option<Duration>,
    /// Sealed segments are deleted, oldest first, while the journal is larger than this.
    pub retention_max_bytes: Option<u64>,
    pub fsync: FsyncPolicy,
    /// How often `HEAD` is rewritten (and at rotation and close).
    pub checkpoint_interval: Duration,
    pub signing_key: Option<SigningKey>,
}

impl JournalOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_max_bytes: 64 << 20,
            segment_max_age: Duration::from_secs(3600),
            retention_max_age: Some(Duration::from_secs(90 * 86_400)),
            retention_max_bytes: Some(10 << 30),
            fsync: FsyncPolicy::Batch,
            checkpoint_interval: Duration::from_secs(1),
            signing_key: None,
        }
    }
}

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

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A torn tail cut when the journal was reopened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    pub segment: u64,
    pub offset: u64,
    pub bytes_cut: u64,
    pub reason: String,
    /// The cut removed records the `HEAD` checkpoint says were durable: the disk lost data.
    pub below_checkpoint: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    pub records: u64,
    pub bytes: u64,
    pub batches: u64,
    pub syncs: u64,
    pub rotations: u64,
    pub segments_deleted: u64,
    pub write_errors: u64,
    /// Events that could not be written (recorded later as a `journal_gap`).
    pub not_journaled: u64,
    /// Every record below this sequence number is on disk and synced.
    pub durable_seq: u64,
}

/// Events encoded as journal payloads, back to back: what the pipeline hands to the writer
/// thread (encoding there is cheaper than copying every event's strings).
#[derive(Clone, Debug, Default)]
pub struct EncodedBatch {
    pub bytes: Vec<u8>,
    /// End offset of each payload in `bytes`.
    pub ends: Vec<u32>,
    pub first_ts: i64,
    pub last_ts: i64,
}

impl EncodedBatch {
    pub fn push(&mut self, event: &Event) {
        let ts = event.ts_unix_ns();
        if self.ends.is_empty() {
            self.first_ts = ts;
        }
        self.last_ts = ts;
        convert::encode(event, &mut self.bytes);
        self.ends.push(self.bytes.len() as u32);
    }

    /// Adds a payload encoded elsewhere (e.g. a protobuf `Event` a collector received).
    pub fn push_encoded(&mut self, payload: &[u8], ts_unix_ns: i64) {
        if self.ends.is_empty() {
            self.first_ts = ts_unix_ns;
        }
        self.last_ts = ts_unix_ns;
        self.bytes.extend_from_slice(payload);
        self.ends.push(self.bytes.len() as u32);
    }

    /// Appends another batch (group commit of queued batches).
    pub fn extend(&mut self, other: &EncodedBatch) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            self.first_ts = other.first_ts;
        }
        self.last_ts = other.last_ts;
        let base = self.bytes.len() as u32;
        self.bytes.extend_from_slice(&other.bytes);
        self.ends.extend(other.ends.iter().map(|e| e + base));
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

struct Gap {
    events: u64,
    reason: String,
    from_unix_ns: i64,
    until_unix_ns: i64,
}

pub struct JournalWriter {
    opts: JournalOptions,
    _lock: File,
    file: File,
    path: PathBuf,
    segment: u64,
    segment_created: SystemTime,
    offset: u64,
    next_seq: u64,
    /// BLAKE3 over the open segment's bytes so far (format.rs).
    chain: blake3::Hasher,
    buf: Vec<u8>,
    payload: Vec<u8>,
    synced: bool,
    last_sync: Instant,
    last_checkpoint: Instant,
    gap: Option<Gap>,
    stats: JournalStats,
    /// Where written frames are published for live subscribers (the gRPC API).
    live: Option<tokio::sync::broadcast::Sender<LiveFrames>>,
}

/// Frames just written (and readable from the segment file), for live subscribers: the
/// records' bytes exactly as in the journal, seq `first_seq` onwards.
#[derive(Clone, Debug)]
pub struct LiveFrames {
    pub first_seq: u64,
    pub frames: bytes::Bytes,
}

/// The names a journal directory may contain; anything else means it is not a journal.
fn is_journal_entry(name: &str) -> bool {
    format::parse_segment_file_name(name).is_some()
        || name == format::HEAD_FILE
        || name == format::LOCK_FILE
        || name == "push.cursor"
        || name == "push.cursor.tmp"
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

fn fsync_dir(dir: &Path) -> Result<(), JournalError> {
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

    /// Publishes every batch, once written, to `live` (when it has receivers).
    pub fn publish_to(&mut self, live: tokio::sync::broadcast::Sender<LiveFrames>) {
        self.live = Some(live);
    }

    pub fn dir(&self) -> &Path {
        &self.opts.dir
    }

    pub fn stats(&self) -> &JournalStats {
        &self.stats
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn segment(&self) -> u64 {
        self.segment
    }

    /// Appends `events` as one write. On failure (e.g. disk full) the partial write is cut,
    /// the events are counted as not journaled, and a `journal_gap` record is written ahead
    /// of the next batch that succeeds: the journal stays valid and the gap is on record.
    pub fn append(&mut self, events: &[Event]) -> Result<(), JournalError> {
        let mut batch = EncodedBatch::default();
        for e in events {
            batch.push(e);
        }
        self.append_encoded(&batch)
    }

    /// Appends events already encoded (by the pipeline thread, see [`EncodedBatch`]).
    pub fn append_encoded(&mut self, batch: &EncodedBatch) -> Result<(), JournalError> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.maybe_rotate() {
            tracing::error!("journal rotation failed: {e}");
        }
        let start_seq = self.next_seq;
        self.buf.clear();
        if let Some(g) = &self.gap {
            let record = Event::Lifecycle(Box::new(LifecycleEvent::now(Lifecycle::JournalGap {
                events: g.events,
                reason: g.reason.clone(),
                from: crate::clock::rfc3339_from_unix_ns(g.from_unix_ns as i128),
                until: crate::clock::rfc3339_from_unix_ns(g.until_unix_ns as i128),
                from_unix_ns: g.from_unix_ns,
                until_unix_ns: g.until_unix_ns,
            })));
            self.payload.clear();
            convert::encode(&record, &mut self.payload);
            format::encode_frame(&mut self.buf, self.next_seq, &self.payload);
            self.next_seq += 1;
        }
        let mut start = 0;
        for &end in &batch.ends {
            let payload = &batch.bytes[start..end as usize];
            start = end as usize;
            if payload.len() > MAX_PAYLOAD as usize {
                // Cannot happen with the agent's events (they are a few hundred bytes);
                // counted rather than written as a frame readers would reject.
                self.stats.not_journaled += 1;
                continue;
            }
            format::encode_frame(&mut self.buf, self.next_seq, payload);
            self.next_seq += 1;
        }
        let events = batch.len() as u64;
        if let Err(source) = self.file.write_all_at(&self.buf, self.offset) {
            // Nothing of this batch may stay half-written: cut back to the last record.
            let _ = self.file.set_len(self.offset);
            self.next_seq = start_seq;
            self.stats.write_errors += 1;
            self.stats.not_journaled += events;
            let (first, last) = (batch.first_ts, batch.last_ts);
            match &mut self.gap {
                Some(g) => {
                    g.events += events;
                    g.until_unix_ns = last;
                    g.reason = source.to_string();
                }
                None => {
                    self.gap = Some(Gap {
                        events,
                        reason: source.to_string(),
                        from_unix_ns: first,
                        until_unix_ns: last,
                    })
                }
            }
            return Err(io_err(&self.path)(source));
        }
        self.gap = None;
        self.chain.update(&self.buf);
        if let Some(live) = &self.live {
            if live.receiver_count() > 0 {
                let _ = live.send(LiveFrames {
                    first_seq: start_seq,
                    frames: bytes::Bytes::copy_from_slice(&self.buf),
                });
            }
        }
        self.offset += self.buf.len() as u64;
        self.stats.records += self.next_seq - start_seq;
        self.stats.bytes += self.buf.len() as u64;
        self.stats.batches += 1;
        self.synced = false;
        let due = match self.opts.fsync {
            FsyncPolicy::Batch => true,
            FsyncPolicy::Interval(d) => self.last_sync.elapsed() >= d,
            FsyncPolicy::Never => false,
        };
        if due {
            self.sync()?;
        }
        if self.last_checkpoint.elapsed() >= self.opts.checkpoint_interval {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Forces what was appended to disk.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if !self.synced {
            self.file.sync_data().map_err(io_err(&self.path))?;
            self.synced = true;
            self.stats.syncs += 1;
            self.last_sync = Instant::now();
        }
        self.stats.durable_seq = self.next_seq;
        Ok(())
    }

    /// Syncs, then records the current end of the journal in `HEAD` (atomically).
    pub fn checkpoint(&mut self) -> Result<(), JournalError> {
        self.sync()?;
        let dir = &self.opts.dir;
        let head = format::head_of(&self.chain);
        let ckpt = Checkpoint {
            format: FORMAT_VERSION,
            segment: self.segment,
            next_seq: self.next_seq,
            head: format::hex(&head),
            signature: self.opts.signing_key.as_ref().map(|k| {
                format::hex(
                    &k.sign(&format::checkpoint_message(
                        self.segment,
                        self.next_seq,
                        &head,
                    ))
                    .to_bytes(),
                )
            }),
        };
        let tmp = dir.join("HEAD.tmp");
        let mut text = serde_json::to_vec_pretty(&ckpt).expect("plain struct");
        text.push(b'\n');
        (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            fs::rename(&tmp, dir.join(format::HEAD_FILE))
        })()
        .map_err(io_err(&tmp))?;
        fsync_dir(dir)?;
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    fn maybe_rotate(&mut self) -> Result<(), JournalError> {
        let has_records = self.offset > HEADER_LEN as u64;
        let age = SystemTime::now()
            .duration_since(self.segment_created)
            .unwrap_or_default();
        if has_records
            && (self.offset >= self.opts.segment_max_bytes || age >= self.opts.segment_max_age)
        {
            self.rotate()?;
        }
        Ok(())
    }

    /// Seals the open segment into the header of a new one, then applies retention.
    pub fn rotate(&mut self) -> Result<(), JournalError> {
        self.sync()?;
        let head = format::head_of(&self.chain);
        let signature = self.opts.signing_key.as_ref().map(|k| {
            k.sign(&format::seal_message(self.segment, self.next_seq, &head))
                .to_bytes()
        });
        let (path, chain) = create_segment(
            &self.opts.dir,
            &self.opts,
            self.segment + 1,
            self.next_seq,
            head,
            signature,
        )?;
        self.file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        self.path = path;
        self.segment += 1;
        self.segment_created = SystemTime::now();
        self.offset = HEADER_LEN as u64;
        self.chain = chain;
        self.stats.rotations += 1;
        self.checkpoint()?;
        self.apply_retention()
    }

    /// Deletes the oldest sealed segments beyond the age and size limits. The deletion is
    /// recorded (and synced) first, so a journal never misses segments without saying so.
    fn apply_retention(&mut self) -> Result<(), JournalError> {
        if self.opts.retention_max_age.is_none() && self.opts.retention_max_bytes.is_none() {
            return Ok(());
        }
        let dir = self.opts.dir.clone();
        let segments = list_segments(&dir)?;
        let mut sizes = Vec::with_capacity(segments.len());
        for (index, path) in &segments {
            let meta = fs::metadata(path).map_err(io_err(path))?;
            sizes.push((*index, path.clone(), meta.len(), meta.modified().ok()));
        }
        let mut total: u64 = sizes.iter().map(|s| s.2).sum();
        let now = SystemTime::now();
        let mut doomed = Vec::new();
        let mut reason = "";
        for (index, path, size, modified) in &sizes {
            if *index >= self.segment {
                break;
            }
            let too_old = match (self.opts.retention_max_age, modified) {
                (Some(max), Some(m)) => now.duration_since(*m).unwrap_or_default() > max,
                _ => false,
            };
            let too_big = self.opts.retention_max_bytes.is_some_and(|max| total > max);
            if !(too_old || too_big) {
                break;
            }
            reason = if too_old { "age" } else { "size" };
            total -= size;
            doomed.push((*index, path.clone(), *size));
        }
        let (Some(first), Some(last)) = (doomed.first(), doomed.last()) else {
            return Ok(());
        };
        // The seal of the last deleted segment is in the header of the one after it.
        let next = format::segment_path(&dir, last.0 + 1);
        let mut header = [0u8; HEADER_LEN];
        File::open(&next)
            .and_then(|f| f.read_exact_at(&mut header, 0))
            .map_err(io_err(&next))?;
        let next_header = SegmentHeader::decode(&header).map_err(|e| JournalError::Segment {
            path: next.clone(),
            offset: 0,
            message: e.to_string(),
        })?;
        let bytes: u64 = doomed.iter().map(|d| d.2).sum();
        let record = Event::Lifecycle(Box::new(LifecycleEvent::now(Lifecycle::JournalRetention {
            first_segment: first.0,
            last_segment: last.0,
            last_seq: next_header.first_seq.saturating_sub(1),
            last_head: format::hex(&next_header.prev_head),
            bytes,
            reason: reason.to_string(),
        })));
        self.append(std::slice::from_ref(&record))?;
        self.sync()?;
        for (index, path, _) in &doomed {
            fs::remove_file(path).map_err(io_err(path))?;
            self.stats.segments_deleted += 1;
            tracing::info!(
                segment = index,
                reason,
                "journal retention deleted a segment"
            );
        }
        fsync_dir(&dir)
    }

    /// Syncs and writes a final checkpoint.
    pub fn close(mut self) -> Result<JournalStats, JournalError> {
        self.checkpoint()?;
        Ok(self.stats)
    }
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
fn create_segment(
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
