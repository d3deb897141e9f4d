//! One sink's delivery loop, the same for every type: read the journal from the sink's cursor
//! (history, then live, like any subscriber) through its filter, send batches (several in
//! flight where the transport pipelines), and move the cursor only when the receiver
//! acknowledged them, in order. An outage or a restart resumes from the
//! cursor, with exponential back-off: delivery is at least once, and each event carries an
//! idempotency key the receiver can drop re-sends by.
use std::{
    collections::VecDeque,
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};

use sovereign_agent_proto::agent::v1 as pb;
use tokio::sync::{mpsc, watch};

use crate::serve::cursor::Cursor;

use super::{
    record::{Record, SinkItem},
    stats::SinkStats,
    transport::{Acknowledgement, Transport},
};
use crate::journal::{
    feed::{filter::EventFilter, stream},
    recorder::JournalShared,
};

/// Bytes of events per batch at most: a batch over a receiver's message limit would be
/// refused and re-sent forever (a single event is far smaller: command lines are cut).
const MAX_BATCH_BYTES: usize = 1 << 20;

/// Back-off between attempts: from 0.5 s, doubling, capped low so that delivery resumes
/// within seconds of an outage's end.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(10);

/// How long a stopping sink waits for the acknowledgements of what it has in flight.
const SETTLE_ON_STOP: Duration = Duration::from_secs(2);

/// While acknowledgements keep coming the cursor file is written at most this often (each
/// write is two fsyncs, which at 50 batches a second took an eighth of the sink's time);
/// at once when nothing is in flight, and when a session ends. A crash re-sends at most
/// this much more, which receivers drop by idempotency key.
const CURSOR_EVERY: Duration = Duration::from_millis(100);

pub struct Driver {
    pub transport: Box<dyn Transport>,
    pub cursor: Cursor,
    pub journal: Arc<JournalShared>,
    pub filter: pb::EventFilter,
    pub batch: usize,
    pub stats: Arc<SinkStats>,
    /// An acknowledged position not yet written to the cursor file, and when it last was.
    pub unwritten: Option<u64>,
    pub written_at: Instant,
}

impl Driver {
    /// Delivers until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = FIRST_RETRY;
        loop {
            if *stop.borrow() {
                return;
            }
            let from = self.cursor.read();
            self.stats.cursor.store(from, Relaxed);
            let result = self.session(from, stop.clone()).await;
            self.write_cursor();
            self.stats.connected.store(false, Relaxed);
            self.transport.disconnect();
            let (progressed, error) = match result {
                Ok(()) => return,
                Err(e) => e,
            };
            self.stats.set_error(&error);
            if progressed {
                backoff = FIRST_RETRY;
            }
            tracing::warn!(
                sink = %self.stats.name, retry_in_ms = backoff.as_millis() as u64,
                pending_from_seq = self.cursor.read(), "sink delivery interrupted: {error}"
            );
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            backoff = (backoff * 2).min(LAST_RETRY);
        }
    }

    /// One connection: Ok when stopped; Err((whether anything was acknowledged, why)).
    /// Up to the transport's window of batches are in flight; they are acknowledged in
    /// order, and the first that fails ends the session (the later ones are dropped, to be
    /// sent again from the cursor).
    async fn session(
        &mut self,
        from: u64,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), (bool, String)> {
        self.transport.connect().await.map_err(|e| (false, e))?;
        self.stats.connected.store(true, Relaxed);
        tracing::info!(sink = %self.stats.name, from_seq = from, "sink connected");
        let filter = EventFilter::compile(&self.filter).map_err(|e| (false, e))?;
        let (tx, mut rx) = mpsc::channel(stream::SUBSCRIBER_BUFFER);
        let subscription = tokio::spawn(stream::run(self.journal.clone(), Some(from), filter, tx));
        let _abort = AbortOnDrop(subscription);
        let window = self.transport.window().max(1);
        let mut in_flight: VecDeque<(Vec<Record>, Acknowledgement)> = VecDeque::new();
        let mut progressed = false;
        loop {
            tokio::select! {
                biased;
                // (Not the flag's guard itself: it must not be held across the await.)
                _ = async { stop.wait_for(|s| *s).await.is_ok() } => {
                    self.settle(in_flight).await;
                    return Ok(());
                }
                answer = async { in_flight.front_mut().expect("not empty").1.as_mut().await },
                    if !in_flight.is_empty() =>
                {
                    let (events, _) = in_flight.pop_front().expect("not empty");
                    let delivered = match &answer {
                        Ok(()) => events.len(),
                        Err(f) => f.delivered.min(events.len()),
                    };
                    if delivered > 0 {
                        self.acknowledged(&events[..delivered]);
                        progressed = true;
                    }
                    if in_flight.is_empty() || self.written_at.elapsed() >= CURSOR_EVERY {
                        self.write_cursor();
                    }
                    if let Err(f) = answer {
                        return Err((progressed, f.error));
                    }
                }
                first = rx.recv(), if in_flight.len() < window => {
                    let events = self.gather(first, &mut rx).map_err(|e| (progressed, e))?;
                    if events.is_empty() {
                        continue;
                    }
                    // The head covers every event read: the writer moves it before it
                    // publishes a batch, and a catch-up stops at it.
                    let head = self.journal.next_seq.load(Relaxed);
                    let acknowledgement = self.transport.send(&events, head).await;
                    in_flight.push_back((events, acknowledgement));
                }
            }
        }
    }

    /// On stop: what is in flight is acknowledged as far as the receiver answers within a
    /// moment, so that a restart re-sends less.
    async fn settle(&mut self, in_flight: VecDeque<(Vec<Record>, Acknowledgement)>) {
        let settle = async {
            for (events, acknowledgement) in in_flight {
                match acknowledgement.await {
                    Ok(()) => self.acknowledged(&events),
                    Err(f) => {
                        self.acknowledged(&events[..f.delivered.min(events.len())]);
                        return;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(SETTLE_ON_STOP, settle).await;
    }

    /// A batch: the first item and whatever else is ready, up to the bounds.
    fn gather(
        &self,
        first: Option<Result<SinkItem, tonic::Status>>,
        rx: &mut mpsc::Receiver<Result<SinkItem, tonic::Status>>,
    ) -> Result<Vec<Record>, String> {
        let mut records = Vec::with_capacity(self.batch.min(4096));
        let mut bytes = 0;
        let mut next = Some(first.ok_or("the journal subscription ended")?);
        while let Some(item) = next {
            match item {
                Ok(SinkItem::Record(r)) => {
                    bytes += r.payload.len();
                    records.push(r);
                }
                Ok(SinkItem::Missed(events)) => {
                    self.stats.missed.fetch_add(events, Relaxed);
                    tracing::error!(
                        sink = %self.stats.name, events,
                        "journal records deleted by retention before this sink delivered them"
                    );
                }
                Err(s) => return Err(format!("reading the journal: {}", s.message())),
            }
            if records.len() >= self.batch || bytes >= MAX_BATCH_BYTES {
                break;
            }
            next = rx.try_recv().ok();
        }
        Ok(records)
    }

    /// Records the acknowledged position in the cursor file, if it moved.
    fn write_cursor(&mut self) {
        let Some(next) = self.unwritten.take() else {
            return;
        };
        if let Err(e) = self.cursor.write(next) {
            tracing::error!(sink = %self.stats.name, "cannot record the sink's cursor: {e}");
        }
        self.written_at = Instant::now();
    }

    /// Moves the cursor past `events` (in memory: `write_cursor` records it).
    fn acknowledged(&mut self, events: &[Record]) {
        let Some(last) = events.last() else { return };
        let next = last.seq + 1;
        self.unwritten = Some(next);
        self.stats.cursor.store(next, Relaxed);
        self.stats.delivered.fetch_add(events.len() as u64, Relaxed);
        let oldest = events.iter().map(|e| e.ts_unix_ns).min().unwrap_or(0);
        let lag = crate::clock::unix_now_ns().saturating_sub(oldest).max(0);
        self.stats.lag_ns.store(lag as u64, Relaxed);
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
