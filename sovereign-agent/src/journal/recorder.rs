//! The journal as an event sink of the running agent. Events are encoded where they are
//! produced (cheaper than copying them); writing and fsync happen on a thread of their own, so
//! a slow disk never stalls the event loop; batches are handed over through a bounded channel
//! and merged when they queue up (group commit). When the channel is full the sink keeps its
//! batch and says it is `behind`: the pipeline stops reading the ring buffer (which absorbs
//! the delay; whatever it cannot hold is counted as loss) but its event loop keeps running, so
//! health, metrics and the API answer while the disk catches up. Nothing is dropped silently.
use std::{
    io,
    sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{EncodedBatch, JournalError, JournalOptions, JournalStats, JournalWriter, Recovery};
use crate::{
    event::{Event, Lifecycle, LifecycleEvent},
    journal::output::EventSink,
};

/// Batches queued for the writer thread before the pipeline waits.
const QUEUE_BATCHES: usize = 256;

/// Bytes of batches merged into one write when the disk is behind (group commit).
const GROUP_COMMIT_BYTES: usize = 4 << 20;

/// With `fsync = "batch"`, the shortest time between two syncs: batches that come sooner are
/// merged into the next write and sync. Syncing every drained batch cost 1,500 fdatasyncs a
/// second in a connect loop, most of the agent's CPU (docs/performance.md); this bounds it to
/// 100 while a record waits at most 10 ms longer to be durable.
const MIN_SYNC_GAP: Duration = Duration::from_millis(10);

enum Message {
    Batch(EncodedBatch),
    Stop {
        reason: String,
        flows: u64,
        kernel_losses: u64,
    },
}

/// Owns the writer thread; [`JournalHandle::stop`] writes the stop record and closes.
pub struct JournalHandle {
    tx: SyncSender<Message>,
    thread: JoinHandle<Result<JournalStats, JournalError>>,
}

/// What the pipeline writes to.
pub struct JournalSink {
    batch: EncodedBatch,
    tx: SyncSender<Message>,
    dead: bool,
    /// `batch` could not be handed to the writer (its queue was full).
    held: bool,
}

/// Opens the journal (errors here stop the agent's start) and starts its writer thread.
/// What the rest of the agent can see of the journal while it runs (status, API).
#[derive(Debug)]
pub struct JournalShared {
    pub dir: std::path::PathBuf,
    /// The journal's identity (journal/identity.rs).
    pub id: String,
    /// The journal's head: the next sequence number, moved by the writer once a batch is
    /// written (and synced, with `fsync = "batch"`) and before it goes to `live`; readers
    /// of the files stop there (records past it may not be durable yet).
    pub next_seq: Arc<AtomicU64>,
    pub not_journaled: AtomicU64,
    /// Every written batch, for live subscribers.
    pub live: tokio::sync::broadcast::Sender<super::LiveFrames>,
}

/// Batches kept for live subscribers that are behind; beyond, they catch up from the journal
/// (streamed a record at a time). A stalled subscriber pins at most this many batches.
const LIVE_BATCHES: usize = 64;

impl JournalShared {
    /// The view of `writer`'s journal that the API serves: its directory, counters, and a
    /// live feed the writer publishes every written batch to.
    pub fn of(writer: &mut JournalWriter) -> Arc<Self> {
        let (live, _) = tokio::sync::broadcast::channel(LIVE_BATCHES);
        let next_seq = Arc::new(AtomicU64::new(writer.next_seq()));
        writer.publish_to(live.clone(), next_seq.clone());
        Arc::new(JournalShared {
            dir: writer.dir().to_path_buf(),
            id: writer.id().to_string(),
            next_seq,
            not_journaled: AtomicU64::new(0),
            live,
        })
    }
}

pub fn start(
    opts: JournalOptions,
) -> Result<
    (
        JournalHandle,
        JournalSink,
        Option<Recovery>,
        Arc<JournalShared>,
    ),
    JournalError,
> {
    let linger = matches!(opts.fsync, super::FsyncPolicy::Batch);
    let idle_tick = opts.checkpoint_interval.min(match opts.fsync {
        super::FsyncPolicy::Interval(d) => d,
        _ => Duration::from_secs(3600),
    });
    let (mut writer, recovery) = JournalWriter::open(opts)?;
    let shared = JournalShared::of(&mut writer);
    let thread_shared = shared.clone();
    tracing::info!(
        segment = writer.segment(),
        next_seq = writer.next_seq(),
        "journal open"
    );
    let (tx, rx) = mpsc::sync_channel::<Message>(QUEUE_BATCHES);
    let thread = std::thread::Builder::new()
        .name("journal".into())
        .spawn(move || run(writer, rx, idle_tick, linger, thread_shared))
        .map_err(|source| JournalError::Io {
            path: "journal writer thread".into(),
            source,
        })?;
    Ok((
        JournalHandle {
            tx: tx.clone(),
            thread,
        },
        JournalSink {
            batch: EncodedBatch::default(),
            tx,
            dead: false,
            held: false,
        },
        recovery,
        shared,
    ))
}

/// `linger`: wait until [`MIN_SYNC_GAP`] after the previous write, merging what comes
/// meanwhile (with `fsync = "batch"`, where every write is synced).
fn run(
    mut w: JournalWriter,
    rx: mpsc::Receiver<Message>,
    idle_tick: Duration,
    linger: bool,
    shared: Arc<JournalShared>,
) -> Result<JournalStats, JournalError> {
    let mut last_error_log: Option<Instant> = None;
    let mut last_write: Option<Instant> = None;
    loop {
        match rx.recv_timeout(idle_tick) {
            Ok(Message::Batch(mut batch)) => {
                // Whatever else is queued (or, lingering, comes before the gap is over) goes
                // into the same write and the same fsync: when the disk is slower than the
                // traffic, batches grow instead of syncs multiplying.
                let due = last_write
                    .filter(|_| linger)
                    .map_or_else(Instant::now, |at| at + MIN_SYNC_GAP);
                let mut stop = None;
                loop {
                    while stop.is_none() && batch.bytes.len() < GROUP_COMMIT_BYTES {
                        match rx.try_recv() {
                            Ok(Message::Batch(more)) => batch.extend(&more),
                            Ok(other) => stop = Some(other),
                            Err(_) => break,
                        }
                    }
                    let wait = due.saturating_duration_since(Instant::now());
                    if stop.is_some() || batch.bytes.len() >= GROUP_COMMIT_BYTES || wait.is_zero() {
                        break;
                    }
                    // Sleep rather than wait on the channel: waiting, the thread was woken
                    // for every batch the pipeline handed over (a task switch each, ~9% of
                    // the agent's CPU in a connect loop); asleep, the pipeline's send wakes
                    // nobody, and the writer takes everything at once when the gap is over.
                    std::thread::sleep(wait);
                }
                last_write = Some(Instant::now());
                let result = w.append_encoded(&batch);
                shared.next_seq.store(w.next_seq(), Ordering::Relaxed);
                shared
                    .not_journaled
                    .store(w.stats().not_journaled, Ordering::Relaxed);
                if let Err(e) = result {
                    // A full disk fails every batch: say so at most every 10 s.
                    if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::error!(
                            not_journaled = w.stats().not_journaled,
                            "journal write failed: {e}; events are counted and the gap will be recorded"
                        );
                        last_error_log = Some(Instant::now());
                    }
                }
                if let Some(Message::Stop {
                    reason,
                    flows,
                    kernel_losses,
                }) = stop
                {
                    return stop_and_close(w, reason, flows, kernel_losses);
                }
            }
            Ok(Message::Stop {
                reason,
                flows,
                kernel_losses,
            }) => return stop_and_close(w, reason, flows, kernel_losses),
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = w.checkpoint() {
                    tracing::error!("journal checkpoint failed: {e}");
                }
            }
            Err(RecvTimeoutError::Disconnected) => return w.close(),
        }
    }
}

fn stop_and_close(
    mut w: JournalWriter,
    reason: String,
    flows: u64,
    kernel_losses: u64,
) -> Result<JournalStats, JournalError> {
    let not_journaled = w.stats().not_journaled;
    let stop = Event::Lifecycle(Box::new(LifecycleEvent::now(Lifecycle::AgentStop {
        reason,
        flows,
        kernel_losses,
        not_journaled,
    })));
    if let Err(e) = w.append(&[stop]) {
        tracing::error!("journal: cannot write the stop record: {e}");
    }
    w.close()
}

impl JournalHandle {
    /// Writes the stop record, syncs, checkpoints and joins the writer thread.
    pub fn stop(
        self,
        reason: &str,
        flows: u64,
        kernel_losses: u64,
    ) -> Result<JournalStats, JournalError> {
        let _ = self.tx.send(Message::Stop {
            reason: reason.to_string(),
            flows,
            kernel_losses,
        });
        drop(self.tx);
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => Err(JournalError::Io {
                path: "journal writer thread".into(),
                source: io::Error::other("the journal writer thread panicked"),
            }),
        }
    }
}

impl EventSink for JournalSink {
    fn write(&mut self, event: &Event) -> io::Result<()> {
        self.batch.push(event);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() || self.dead {
            self.batch.clear();
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.held = false;
        match self.tx.try_send(Message::Batch(batch)) {
            Ok(()) => {}
            // The writer is behind: keep the batch (events written meanwhile join it).
            Err(TrySendError::Full(Message::Batch(batch))) => {
                self.batch = batch;
                self.held = true;
            }
            Err(TrySendError::Full(_)) => unreachable!("only batches are sent here"),
            Err(TrySendError::Disconnected(_)) => {
                // Only after the writer stopped (shutdown, or a panic already reported).
                self.dead = true;
                tracing::error!("journal writer is gone: events are no longer journaled");
            }
        }
        Ok(())
    }

    fn behind(&self) -> bool {
        self.held && !self.dead
    }

    fn flush_wait(&mut self) -> io::Result<()> {
        if self.batch.is_empty() || self.dead {
            self.batch.clear();
            return Ok(());
        }
        self.held = false;
        let batch = std::mem::take(&mut self.batch);
        if self.tx.send(Message::Batch(batch)).is_err() {
            self.dead = true;
            tracing::error!("journal writer is gone: events are no longer journaled");
        }
        Ok(())
    }
}
