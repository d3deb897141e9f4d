//! One StreamEvents subscriber: records from the journal since `since_seq`, then the live
//! feed, without a gap or a duplicate. The journal writer publishes each batch after it is
//! written, so a record is either in the file when the subscriber reads it or arrives on the
//! live feed it subscribed to before reading (or both: sequence numbers remove the double).
//! A subscriber that falls behind the live feed goes back to the journal.
use std::{path::PathBuf, sync::Arc};

use prost::Message;
use sovereign_agent_proto::agent::v1 as pb;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use super::{filter::EventFilter, peek::peek};
use crate::journal::{format, reader, recorder::JournalShared, LiveFrames};

pub type Item = Result<pb::StreamEventsResponse, Status>;

/// What a subscriber receives for a journal record that matches its filter, and for records
/// deleted before it read them: a `StreamEventsResponse` for the API, a sink's own record.
pub trait FromJournal: Sized + Send + 'static {
    /// None when the record does not match `filter` (or does not decode).
    fn record(seq: u64, payload: &[u8], filter: &EventFilter) -> Option<Self>;
    fn missed(events: u64, resumed_at_seq: u64) -> Self;
}

impl FromJournal for pb::StreamEventsResponse {
    fn record(seq: u64, payload: &[u8], filter: &EventFilter) -> Option<Self> {
        event_response(seq, payload, filter)
    }

    fn missed(events: u64, resumed_at_seq: u64) -> Self {
        missed(events, resumed_at_seq)
    }
}

/// Responses buffered per subscriber; when full, the subscriber's task waits (it never
/// slows the agent: the live feed is a broadcast that simply moves on).
pub const SUBSCRIBER_BUFFER: usize = 256;
const _: () = assert!(CHUNK <= SUBSCRIBER_BUFFER, "a chunk must fit the channel");

fn event_response(
    seq: u64,
    payload: &[u8],
    filter: &EventFilter,
) -> Option<pb::StreamEventsResponse> {
    // Most records of a journal are of kinds a subscriber did not ask for: those are dropped
    // without decoding them.
    if filter.selects_kinds() && peek(payload).is_some_and(|p| !filter.kind_matches(p.kind)) {
        return None;
    }
    let mut e = pb::Event::decode(payload).ok()?;
    e.seq = seq;
    if !filter.matches(&e) {
        return None;
    }
    Some(pb::StreamEventsResponse {
        item: Some(pb::stream_events_response::Item::Event(e)),
    })
}

fn missed(events: u64, resumed_at_seq: u64) -> pb::StreamEventsResponse {
    pb::StreamEventsResponse {
        item: Some(pb::stream_events_response::Item::Missed(pb::Missed {
            events,
            resumed_at_seq,
        })),
    }
}

/// Sends the journal's matching records from `next` up to the head `until` (the files can
/// hold records past it that are not synced yet: the live feed brings them once they are);
/// returns the sequence number after the last one read.
async fn catch_up<T: FromJournal>(
    dir: PathBuf,
    next: u64,
    until: u64,
    filter: Arc<EventFilter>,
    tx: mpsc::Sender<Result<T, Status>>,
) -> Result<u64, ()> {
    tokio::task::spawn_blocking(move || {
        let first = reader::first_seq(&dir).map_err(|_| ())?;
        let mut next = next;
        if next < first {
            // Deleted by retention before this subscriber asked for it.
            if tx
                .blocking_send(Ok(T::missed(first - next, first)))
                .is_err()
            {
                return Err(());
            }
            next = first;
        }
        let mut at_head = false;
        let mut chunk = Chunk::new(&tx);
        let result = reader::for_each_payload_from(
            &dir,
            next,
            true,
            |_| {},
            |seq, payload| {
                if seq >= until {
                    at_head = true;
                    return Err(crate::journal::JournalError::Record {
                        seq,
                        message: "past the journal's head".into(),
                    });
                }
                let handed = match T::record(seq, payload, &filter) {
                    Some(r) => chunk.push(Ok(r)),
                    None => chunk.tick(),
                };
                handed.map_err(|()| crate::journal::JournalError::Record {
                    seq,
                    message: "subscriber gone".into(),
                })?;
                next = seq + 1;
                Ok(())
            },
        );
        if chunk.flush().is_err() {
            return Err(());
        }
        match result {
            Ok(()) => Ok(next),
            Err(_) if at_head => Ok(next),
            Err(e) => {
                if !tx.is_closed() {
                    let _ = tx.blocking_send(Err(Status::data_loss(e.to_string())));
                }
                Err(())
            }
        }
    })
    .await
    .unwrap_or(Err(()))
}

/// Responses a catch-up hands to the channel at once, or after [`CHUNK_WAIT`] for the first.
/// Handed over one at a time, the reading thread and the receiver woke each other for every
/// event (a thread switch each: an eighth of a sink's CPU in a profile); a chunk wakes the
/// reader once per [`CHUNK`] events.
const CHUNK: usize = 64;
const CHUNK_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// What a catch-up has read and not yet handed over (a blocking thread's side of the channel).
struct Chunk<'a, T> {
    tx: &'a mpsc::Sender<Result<T, Status>>,
    items: Vec<Result<T, Status>>,
    since: std::time::Instant,
    runtime: tokio::runtime::Handle,
}

impl<'a, T> Chunk<'a, T> {
    fn new(tx: &'a mpsc::Sender<Result<T, Status>>) -> Self {
        Chunk {
            tx,
            items: Vec::with_capacity(CHUNK),
            since: std::time::Instant::now(),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Err when the receiver is gone.
    fn push(&mut self, item: Result<T, Status>) -> Result<(), ()> {
        if self.items.is_empty() {
            self.since = std::time::Instant::now();
        }
        self.items.push(item);
        if self.items.len() >= CHUNK {
            return self.flush();
        }
        self.tick()
    }

    /// Hands over what waited [`CHUNK_WAIT`] (called for every record read, matching or
    /// not: a rare match in a long journal is not held until the end of the read).
    fn tick(&mut self) -> Result<(), ()> {
        if !self.items.is_empty() && self.since.elapsed() >= CHUNK_WAIT {
            return self.flush();
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ()> {
        if self.items.is_empty() {
            return Ok(());
        }
        let permits = self
            .runtime
            .block_on(self.tx.reserve_many(self.items.len()))
            .map_err(|_| ())?;
        for (permit, item) in permits.zip(self.items.drain(..)) {
            permit.send(item);
        }
        Ok(())
    }
}

/// Runs one subscription until the client goes away or the agent stops.
pub async fn run<T: FromJournal>(
    journal: Arc<JournalShared>,
    since_seq: Option<u64>,
    filter: EventFilter,
    tx: mpsc::Sender<Result<T, Status>>,
) {
    let filter = Arc::new(filter);
    let mut live: broadcast::Receiver<LiveFrames> = journal.live.subscribe();
    let mut next = match since_seq {
        Some(s) => s,
        None => journal.next_seq.load(std::sync::atomic::Ordering::Relaxed),
    };
    let mut from_journal = since_seq.is_some();
    loop {
        if from_journal {
            let until = journal.next_seq.load(std::sync::atomic::Ordering::Relaxed);
            match catch_up(journal.dir.clone(), next, until, filter.clone(), tx.clone()).await {
                Ok(n) => next = n,
                Err(()) => return,
            }
            from_journal = false;
        }
        let received = tokio::select! {
            r = live.recv() => r,
            // The client went away: stop now rather than at the next event.
            _ = tx.closed() => return,
        };
        match received {
            Ok(batch) => {
                let mut seq = batch.first_seq;
                let mut off = 0;
                if seq > next {
                    // Written before this subscriber joined the feed: it is in the file.
                    from_journal = true;
                    continue;
                }
                while off < batch.frames.len() {
                    let Ok(frame) = format::decode_frame(&batch.frames[off..]) else {
                        break;
                    };
                    off += frame.bytes.len();
                    seq = frame.seq;
                    if seq < next {
                        continue;
                    }
                    if let Some(r) = T::record(seq, frame.payload, &filter) {
                        if tx.send(Ok(r)).await.is_err() {
                            return;
                        }
                    }
                    next = seq + 1;
                }
            }
            // Fell behind the live feed: what it missed is in the journal.
            Err(broadcast::error::RecvError::Lagged(_)) => from_journal = true,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{tests as journal_tests, JournalWriter};

    #[tokio::test]
    async fn a_catch_up_stops_at_the_head_not_at_the_end_of_the_file() {
        // Records written but not yet past the head (not synced yet) come by the live feed
        // once they are, never from the file before.
        let d = tempfile::tempdir().unwrap();
        let (mut w, _) = JournalWriter::open(journal_tests::options(d.path())).unwrap();
        let events: Vec<_> = (0..5).map(journal_tests::sample_event).collect();
        w.append(&events).unwrap();
        let filter = Arc::new(EventFilter::compile(&pb::EventFilter::default()).unwrap());
        let (tx, mut rx) = mpsc::channel(16);
        let next = catch_up::<pb::StreamEventsResponse>(d.path().to_path_buf(), 1, 3, filter, tx)
            .await
            .unwrap();
        assert_eq!(next, 3);
        let mut seqs = Vec::new();
        while let Ok(Ok(r)) = rx.try_recv() {
            if let Some(pb::stream_events_response::Item::Event(e)) = r.item {
                seqs.push(e.seq);
            }
        }
        assert_eq!(seqs, [1, 2]);
    }
}
