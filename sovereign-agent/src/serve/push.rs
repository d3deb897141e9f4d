//! Durable push of alerts to a collector. The journal is the spool: the pusher reads alerts
//! from it (history, then live, like any subscriber) starting at the cursor, sends them in
//! batches, and moves the cursor (`push.cursor` in the journal directory, synced) only when
//! the collector acknowledges. A collector outage or an agent restart resumes from the
//! cursor, with exponential back-off between attempts: delivery is at least once, and the
//! collector drops what it already has, so each alert is shown exactly once.
use std::{
    collections::VecDeque,
    io::Write,
    path::{Path, PathBuf},
    sync::atomic::Ordering,
    sync::Arc,
    time::Duration,
};

use sovereign_agent_proto::{
    agent::v1 as pb,
    collector::v1::{collector_service_client::CollectorServiceClient, PushRequest},
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    journal::sink::JournalShared,
    serve::api::{filter::EventFilter, stream},
    serve::metrics::Counters,
};

#[derive(Clone, Debug)]
pub struct PushOptions {
    /// `https://host:port` of the collector.
    pub collector: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Alerts per batch at most.
    pub batch: usize,
}

const CURSOR: &str = "push.cursor";

/// The next journal sequence number to push (0 when nothing was ever acknowledged).
pub fn read_cursor(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join(CURSOR))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn write_cursor(dir: &Path, next: u64) -> std::io::Result<()> {
    let tmp = dir.join("push.cursor.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{next}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(CURSOR))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Pushes until `stop` turns true.
pub async fn run(
    opts: PushOptions,
    journal: Arc<JournalShared>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(500);
    // Alerts at or after this sequence number were raised by this run (for the queue depth).
    let run_start = journal.next_seq.load(Ordering::Relaxed);
    loop {
        if *stop.borrow() {
            return;
        }
        let cursor = read_cursor(&journal.dir);
        let result = push_once(&opts, &journal, cursor, &counters, run_start, stop.clone()).await;
        counters.push_connected.store(false, Ordering::Relaxed);
        match result {
            Ok(()) => return,
            Err((progressed, e)) => {
                counters.push_errors.fetch_add(1, Ordering::Relaxed);
                if progressed {
                    backoff = Duration::from_millis(500);
                }
                tracing::warn!(
                    collector = %opts.collector, retry_in_ms = backoff.as_millis() as u64,
                    pending_from_seq = read_cursor(&journal.dir),
                    "alert push interrupted: {e}"
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(&mut stop) => return,
                }
                // Capped low: after an outage, alerts should flow again within seconds.
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn connect(
    opts: &PushOptions,
) -> Result<CollectorServiceClient<tonic::transport::Channel>, String> {
    let channel =
        crate::serve::tls::tls_channel(&opts.collector, &opts.ca, &opts.cert, &opts.key).await?;
    Ok(CollectorServiceClient::new(channel))
}

/// One connection: Ok when stopped; Err((whether anything was acknowledged, why)) otherwise.
async fn push_once(
    opts: &PushOptions,
    journal: &Arc<JournalShared>,
    cursor: u64,
    counters: &Counters,
    run_start: u64,
    mut stop: watch::Receiver<bool>,
) -> Result<(), (bool, String)> {
    let mut client = connect(opts).await.map_err(|e| (false, e))?;
    let filter = EventFilter::compile(&pb::EventFilter {
        kinds: vec!["alert".into()],
        ..Default::default()
    })
    .expect("a valid filter");
    let (sub_tx, mut sub_rx) = mpsc::channel(stream::SUBSCRIBER_BUFFER);
    let subscription = tokio::spawn(stream::run(journal.clone(), Some(cursor), filter, sub_tx));
    let _abort = AbortOnDrop(subscription);
    let (req_tx, req_rx) = mpsc::channel::<PushRequest>(4);
    let mut acks = client
        .push(ReceiverStream::new(req_rx))
        .await
        .map_err(|s| {
            (
                false,
                format!("collector refused the push: {}", s.message()),
            )
        })?
        .into_inner();
    tracing::info!(collector = %opts.collector, from_seq = cursor, "pushing alerts");
    counters.push_connected.store(true, Ordering::Relaxed);
    let mut delivery = Delivery::new(cursor);
    let mut progressed = false;
    loop {
        tokio::select! {
            item = sub_rx.recv() => {
                let mut events = Vec::new();
                let mut bytes = 0;
                let mut next = item;
                while let Some(item) = next {
                    match item {
                        Ok(pb::StreamEventsResponse { item: Some(pb::stream_events_response::Item::Event(e)) }) => {
                            bytes += prost::Message::encoded_len(&e);
                            events.push(e);
                        }
                        Ok(pb::StreamEventsResponse { item: Some(pb::stream_events_response::Item::Missed(m)) }) => {
                            tracing::error!(events = m.events, "alerts deleted by journal retention before they were pushed");
                        }
                        Ok(_) => {}
                        Err(s) => return Err((progressed, format!("reading the journal: {}", s.message()))),
                    }
                    // Bounded in bytes too: a batch over the collector's message limit would be
                    // refused and re-sent forever.
                    if events.len() >= opts.batch || bytes >= MAX_BATCH_BYTES {
                        break;
                    }
                    next = sub_rx.try_recv().ok();
                }
                if events.is_empty() {
                    continue;
                }
                delivery.sent(&events, run_start);
                if req_tx.send(PushRequest { events }).await.is_err() {
                    return Err((progressed, "the collector closed the stream".into()));
                }
            }
            ack = acks.message() => match ack {
                Ok(Some(a)) => {
                    let done = delivery.acknowledged(a.acked_seq);
                    counters.alerts_delivered.fetch_add(done.delivered, Ordering::Relaxed);
                    if let Some(oldest) = done.oldest_ns {
                        let lag = crate::clock::unix_now_ns().saturating_sub(oldest).max(0);
                        counters.alert_delivery_lag_ns.store(lag as u64, Ordering::Relaxed);
                    }
                    if let Some(next) = done.cursor {
                        progressed = true;
                        if let Err(e) = write_cursor(&journal.dir, next) {
                            tracing::error!("cannot record the push cursor: {e}");
                        }
                    }
                }
                Ok(None) => return Err((progressed, "the collector ended the stream".into())),
                Err(s) => return Err((progressed, format!("collector: {}", s.message()))),
            },
            _ = stopped(&mut stop) => return Ok(()),
        }
    }
}

/// Batches sent and not yet acknowledged, and the cursor their acknowledgements move. The
/// collector acknowledges a sequence number once everything up to it is durable there.
struct Delivery {
    /// The next sequence number to push: what the cursor file says once written.
    next: u64,
    in_flight: VecDeque<Batch>,
}

struct Batch {
    last_seq: u64,
    /// Alerts raised by this run of the agent (the delivered-alerts metric counts only these).
    ours: u64,
    /// Raise time of the batch's oldest alert, for the delivery lag.
    oldest_ns: i64,
}

/// What an acknowledgement completed.
#[derive(Debug, PartialEq, Eq)]
struct Acknowledged {
    /// Alerts of this run in the batches it completed.
    delivered: u64,
    /// The oldest alert of the last batch it completed.
    oldest_ns: Option<i64>,
    /// The new cursor, when it moved forward (a repeated or stale ack moves nothing).
    cursor: Option<u64>,
}

impl Delivery {
    fn new(cursor: u64) -> Self {
        Delivery {
            next: cursor,
            in_flight: VecDeque::new(),
        }
    }

    /// A batch was sent; `run_start` is this run's first sequence number.
    fn sent(&mut self, events: &[pb::Event], run_start: u64) {
        self.in_flight.push_back(Batch {
            last_seq: events.last().map_or(0, |e| e.seq),
            ours: events.iter().filter(|e| e.seq >= run_start).count() as u64,
            oldest_ns: events.iter().map(|e| e.ts_unix_ns).min().unwrap_or(0),
        });
    }

    /// The collector has everything up to `acked_seq`.
    fn acknowledged(&mut self, acked_seq: u64) -> Acknowledged {
        let mut done = Acknowledged {
            delivered: 0,
            oldest_ns: None,
            cursor: None,
        };
        while self
            .in_flight
            .front()
            .is_some_and(|b| b.last_seq <= acked_seq)
        {
            let Some(batch) = self.in_flight.pop_front() else {
                break;
            };
            done.delivered += batch.ours;
            done.oldest_ns = Some(batch.oldest_ns);
        }
        if acked_seq + 1 > self.next {
            self.next = acked_seq + 1;
            done.cursor = Some(self.next);
        }
        done
    }
}

/// Bytes of alerts per push request at most (the collector accepts messages of up to 4 MiB; a
/// single alert is far smaller, since command lines and paths are bounded).
const MAX_BATCH_BYTES: usize = 1 << 20;

/// Resolves when `stop` turns true (the guard `wait_for` returns is dropped at once).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerts(seqs: std::ops::RangeInclusive<u64>) -> Vec<pb::Event> {
        seqs.map(|seq| pb::Event {
            seq,
            ts_unix_ns: 1_000 + seq as i64,
            ..Default::default()
        })
        .collect()
    }

    #[test]
    fn the_cursor_moves_only_with_acknowledgements_and_never_back() {
        // Resumed at 100: 100..=104 were pushed by an earlier run, 105.. are this run's.
        let mut d = Delivery::new(100);
        d.sent(&alerts(100..=104), 105);
        d.sent(&alerts(105..=109), 105);
        d.sent(&alerts(110..=112), 105);
        // Part of the second batch: the first batch is done, the cursor follows the ack.
        assert_eq!(
            d.acknowledged(106),
            Acknowledged {
                delivered: 0,
                oldest_ns: Some(1_100),
                cursor: Some(107),
            }
        );
        assert_eq!(
            d.acknowledged(112),
            Acknowledged {
                delivered: 8,
                oldest_ns: Some(1_110),
                cursor: Some(113),
            }
        );
        // A repeated or stale acknowledgement changes nothing.
        for stale in [112, 50] {
            assert_eq!(
                d.acknowledged(stale),
                Acknowledged {
                    delivered: 0,
                    oldest_ns: None,
                    cursor: None,
                }
            );
        }
    }

    #[test]
    fn the_cursor_file_round_trips_and_a_missing_or_damaged_one_starts_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_cursor(dir.path()), 0);
        write_cursor(dir.path(), 4_242).unwrap();
        assert_eq!(read_cursor(dir.path()), 4_242);
        assert!(!dir.path().join("push.cursor.tmp").exists());
        std::fs::write(dir.path().join(CURSOR), "not a number").unwrap();
        assert_eq!(read_cursor(dir.path()), 0);
    }
}
