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

use super::filter::EventFilter;
use crate::journal::{format, reader, sink::JournalShared, LiveFrames};

pub type Item = Result<pb::StreamEventsResponse, Status>;

/// Responses buffered per subscriber; when full, the subscriber's task waits (it never
/// slows the agent: the live feed is a broadcast that simply moves on).
pub const SUBSCRIBER_BUFFER: usize = 256;

fn event_response(
    seq: u64,
    payload: &[u8],
    filter: &EventFilter,
) -> Option<pb::StreamEventsResponse> {
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

/// Sends the journal's matching records from `next` on (as far as the file goes now);
/// returns the sequence number after the last one read.
async fn catch_up(
    dir: PathBuf,
    next: u64,
    filter: Arc<EventFilter>,
    tx: mpsc::Sender<Item>,
) -> Result<u64, ()> {
    tokio::task::spawn_blocking(move || {
        let first = reader::first_seq(&dir).map_err(|_| ())?;
        let mut next = next;
        if next < first {
            // Deleted by retention before this subscriber asked for it.
            if tx.blocking_send(Ok(missed(first - next, first))).is_err() {
                return Err(());
            }
            next = first;
        }
        let result = reader::for_each_payload_from(
            &dir,
            next,
            true,
            |_| {},
            |seq, payload| {
                if let Some(r) = event_response(seq, payload, &filter) {
                    tx.blocking_send(Ok(r))
                        .map_err(|_| crate::journal::JournalError::Record {
                            seq,
                            message: "subscriber gone".into(),
                        })?;
                }
                next = seq + 1;
                Ok(())
            },
        );
        match result {
            Ok(()) => Ok(next),
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

/// Runs one subscription until the client goes away or the agent stops.
pub async fn run(
    journal: Arc<JournalShared>,
    since_seq: Option<u64>,
    filter: EventFilter,
    tx: mpsc::Sender<Item>,
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
            match catch_up(journal.dir.clone(), next, filter.clone(), tx.clone()).await {
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
                    if let Some(r) = event_response(seq, frame.payload, &filter) {
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
