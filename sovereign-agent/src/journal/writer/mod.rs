//! Appends events to the journal: batches of frames written with one `pwrite`, fsync per
//! policy, rotation by size and age, retention, the `HEAD` checkpoint, and recovery of a
//! torn tail when a journal is reopened after a crash ([`open`]; rotation and retention in
//! [`rotation`]).
mod files;
mod open;
mod rotation;

use files::{create_segment, fsync_dir, DAMAGED_DIR};
pub use files::{list_segments, read_checkpoint};
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use ed25519_dalek::{Signer, SigningKey};

use super::{
    convert,
    error::{io_err, JournalError},
    format::{self, Checkpoint, SegmentHeader, FORMAT_VERSION, HEADER_LEN, MAX_PAYLOAD},
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

/// A torn tail cut when the journal was reopened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    pub segment: u64,
    pub offset: u64,
    pub bytes_cut: u64,
    pub reason: String,
    /// The cut removed records the `HEAD` checkpoint says were durable: the disk lost data.
    pub below_checkpoint: bool,
    /// Below the checkpoint: how many of the removed records had been synced (from the cut
    /// to the checkpoint's next sequence number).
    pub records_removed: u64,
    /// Below the checkpoint: where the whole damaged segment was kept, relative to the
    /// journal directory (`damaged/...`).
    pub set_aside: Option<String>,
    /// Below the checkpoint: the journal id before; the journal goes on under a new one, so
    /// that no receiver takes the new records for ones it already has.
    pub previous_journal_id: Option<String>,
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
    /// The journal's identity (`journal.id`): what tells this journal's sequence numbers from
    /// those of an earlier journal in the same place.
    id: String,
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
    /// Where written frames are published for live subscribers (the gRPC API, sinks), and
    /// the head they may read up to (`JournalShared::next_seq`), moved before each publish.
    live: Option<(tokio::sync::broadcast::Sender<LiveFrames>, Arc<AtomicU64>)>,
}

/// Frames just written (and readable from the segment file), for live subscribers: the
/// records' bytes exactly as in the journal, seq `first_seq` onwards.
#[derive(Clone, Debug)]
pub struct LiveFrames {
    pub first_seq: u64,
    pub frames: bytes::Bytes,
}

impl JournalWriter {
    /// Publishes every batch, once written (and synced, with `fsync = "batch"`), to `live`
    /// (when it has receivers), after moving `head` past it: a reader that takes the head
    /// as the end of the journal never misses, nor gets ahead of, what the feed carries.
    pub fn publish_to(
        &mut self,
        live: tokio::sync::broadcast::Sender<LiveFrames>,
        head: Arc<AtomicU64>,
    ) {
        self.live = Some((live, head));
    }

    /// The journal's identity (`journal.id`).
    pub fn id(&self) -> &str {
        &self.id
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
                from: crate::clock::rfc3339_from_unix_ns(i128::from(g.from_unix_ns)),
                until: crate::clock::rfc3339_from_unix_ns(i128::from(g.until_unix_ns)),
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
                    });
                }
            }
            return Err(io_err(&self.path)(source));
        }
        self.gap = None;
        self.chain.update(&self.buf);
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
        // Only now: with `fsync = "batch"` a receiver (a sink, a subscriber) never gets a
        // record that a power loss could take back and a recovered journal number again.
        if let Some((live, head)) = &self.live {
            head.store(self.next_seq, Ordering::Relaxed);
            if live.receiver_count() > 0 {
                let _ = live.send(LiveFrames {
                    first_seq: start_seq,
                    frames: bytes::Bytes::copy_from_slice(&self.buf),
                });
            }
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

    /// Syncs and writes a final checkpoint.
    pub fn close(mut self) -> Result<JournalStats, JournalError> {
        self.checkpoint()?;
        Ok(self.stats)
    }
}
