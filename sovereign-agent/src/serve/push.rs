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
    let mut acked = cursor;
    let mut progressed = false;
    // Batches sent and not yet acknowledged: (last seq, alerts of this run, oldest alert's time).
    let mut in_flight: VecDeque<(u64, u64, i64)> = VecDeque::new();
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
                in_flight.push_back((
                    events.last().map_or(0, |e| e.seq),
                    events.iter().filter(|e| e.seq >= run_start).count() as u64,
                    events.iter().map(|e| e.ts_unix_ns).min().unwrap_or(0),
                ));
                if req_tx.send(PushRequest { events }).await.is_err() {
                    return Err((progressed, "the collector closed the stream".into()));
                }
            }
            ack = acks.message() => match ack {
                Ok(Some(a)) => {
                    while in_flight.front().is_some_and(|b| b.0 <= a.acked_seq) {
                        let (_, ours, oldest) = in_flight.pop_front().unwrap_or_default();
                        counters.alerts_delivered.fetch_add(ours, Ordering::Relaxed);
                        let lag = crate::clock::unix_now_ns().saturating_sub(oldest).max(0);
                        counters.alert_delivery_lag_ns.store(lag as u64, Ordering::Relaxed);
                    }
                    if a.acked_seq + 1 > acked {
                        acked = a.acked_seq + 1;
                        progressed = true;
                        if let Err(e) = write_cursor(&journal.dir, acked) {
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
