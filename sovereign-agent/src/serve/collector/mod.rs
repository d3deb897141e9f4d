//! The collector (`sovereign-collector`): agents push their alerts over mutual TLS; each event
//! is stored once in the collector's own journal (tagged with the agent's identity, the common
//! name of its certificate, its journal's identity and its sequence number there) and
//! acknowledged only once synced; the security team reads every agent's events through the
//! same `StreamEvents` API.
//!
//! Deduplication is by (agent, journal id, seq): an agent whose journal was created again
//! (reinstalled, node rebuilt under the same name) starts again at seq 0 under a new journal
//! id, and its alerts are stored, not taken for re-sends of the old journal's. Within a
//! journal an event is a re-send only if its seq is held ([`seen`]): a late, older event that
//! fills a gap is stored.
//!
//! Events arrive by push (this file) or, in a fleet that outgrew one collector, from a NATS
//! JetStream stream ([`jetstream`]); both store through the same deduplication.
pub mod counters;
pub mod jetstream;
pub mod metrics;
mod seen;
use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc, Mutex},
};

use prost::Message;
use sovereign_agent_proto::{
    agent::v1 as pb,
    collector::v1::{collector_service_server::CollectorService, PushAck, PushRequest},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    journal::{reader, recorder::JournalShared, EncodedBatch, JournalError, JournalWriter},
    serve::roles::{Role, Roles},
};
use seen::Seen;

/// (agent, journal id).
type Source = (String, String);

/// Journals one agent may have at a collector (a new one per reinstall or journal reset).
/// Each is a progress entry and a set of metric series for ever: a client's choice of
/// journal ids must not grow them without bound.
pub const MAX_JOURNALS_PER_AGENT: usize = 64;

/// Whether `id` can be an agent's journal id (its writer makes 32 hex digits; this allows
/// any 1 to 64 ASCII letters, digits, `-` and `_`): anything else is refused before it names
/// a progress entry or a metric label.
pub fn valid_journal_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether a batch from `source` may be taken: its journal id is well formed, and a journal
/// the collector does not know yet is one more within the agent's bound. `Ok(false)`: an
/// empty batch of an unknown journal, answered without being remembered.
fn admit(
    progress: &Mutex<HashMap<Source, Progress>>,
    source: &Source,
    empty: bool,
) -> Result<bool, Status> {
    if !valid_journal_id(&source.1) {
        return Err(Status::invalid_argument(format!(
            "journal id {:?}: expected 1 to 64 ASCII letters, digits, '-' or '_'",
            source.1.chars().take(80).collect::<String>()
        )));
    }
    let progress = lock(progress);
    if progress.contains_key(source) {
        return Ok(true);
    }
    if empty {
        return Ok(false);
    }
    let journals = progress.keys().filter(|(a, _)| *a == source.0).count();
    if journals >= MAX_JOURNALS_PER_AGENT {
        return Err(Status::resource_exhausted(format!(
            "agent {:?} already has {journals} journals here (at most {MAX_JOURNALS_PER_AGENT})",
            source.0
        )));
    }
    Ok(true)
}

/// What the collector knows of one agent's journal.
#[derive(Clone, Debug, Default)]
struct Progress {
    /// The sequence numbers stored: what makes re-sent events duplicates.
    seen: Seen,
    last_seen_unix_ns: i64,
    /// The agent's journal head at its last push.
    journal_next_seq: u64,
    /// Push streams open now.
    connected: u32,
}

impl Progress {
    fn last_seq(&self) -> u64 {
        self.seen.highest().unwrap_or(0)
    }
}

pub struct Collector {
    writer: Arc<Mutex<JournalWriter>>,
    progress: Arc<Mutex<HashMap<Source, Progress>>>,
    shared: Arc<JournalShared>,
    roles: Arc<Roles>,
    counters: Arc<counters::Counters>,
    /// The TCP listener's connection counts, for the metrics (none in unit tests).
    listener: Option<crate::serve::limits::Admission>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Collector {
    /// Opens (or recovers) the collector's journal and learns what each agent has delivered.
    pub fn open(
        opts: crate::journal::JournalOptions,
        roles: Arc<Roles>,
    ) -> Result<(Self, Arc<JournalShared>), JournalError> {
        let dir = opts.dir.clone();
        let (mut writer, _recovery) = JournalWriter::open(opts)?;
        let mut progress: HashMap<Source, Progress> = HashMap::new();
        reader::for_each_payload(
            &dir,
            true,
            |_| {},
            |_, payload| {
                if let Ok(e) = pb::Event::decode(payload) {
                    if !e.agent_id.is_empty() {
                        let p = progress
                            .entry((e.agent_id, e.agent_journal_id))
                            .or_default();
                        p.seen.insert(e.agent_seq);
                    }
                }
                Ok(())
            },
        )?;
        let shared = JournalShared::of(&mut writer);
        tracing::info!(
            journals = progress.len(),
            next_seq = writer.next_seq(),
            "collector journal open"
        );
        Ok((
            Collector {
                writer: Arc::new(Mutex::new(writer)),
                progress: Arc::new(Mutex::new(progress)),
                shared: shared.clone(),
                roles,
                counters: Arc::default(),
                listener: None,
            },
            shared,
        ))
    }

    /// The collector whose metrics report `listener`'s connections.
    pub fn with_listener(self, listener: crate::serve::limits::Admission) -> Self {
        Self {
            listener: Some(listener),
            ..self
        }
    }

    /// Every agent journal known, for `GetStatus`.
    pub fn agents(&self) -> Vec<pb::AgentProgress> {
        let mut agents: Vec<pb::AgentProgress> = lock(&self.progress)
            .iter()
            .map(|((agent, journal), p)| pb::AgentProgress {
                agent_id: agent.clone(),
                journal_id: journal.clone(),
                last_seq: p.last_seq(),
                last_seen_unix_ns: p.last_seen_unix_ns,
                journal_next_seq: p.journal_next_seq,
                backlog: p.journal_next_seq.saturating_sub(p.last_seq() + 1),
                connected: p.connected > 0,
            })
            .collect();
        agents.sort_by(|a, b| {
            (&a.agent_id, b.last_seen_unix_ns).cmp(&(&b.agent_id, a.last_seen_unix_ns))
        });
        agents
    }

    /// Writes the final checkpoint.
    pub fn close(&self) {
        let _ = lock(&self.writer).checkpoint();
    }
}

/// Marks a source connected while a push stream from it is open.
struct Connected {
    progress: Arc<Mutex<HashMap<Source, Progress>>>,
    source: Option<Source>,
}

impl Connected {
    fn to(&mut self, source: &Source) {
        if self.source.as_ref() == Some(source) {
            return;
        }
        let mut progress = lock(&self.progress);
        if let Some(old) = self.source.take() {
            if let Some(p) = progress.get_mut(&old) {
                p.connected = p.connected.saturating_sub(1);
            }
        }
        progress.entry(source.clone()).or_default().connected += 1;
        self.source = Some(source.clone());
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        if let Some(old) = self.source.take() {
            if let Some(p) = lock(&self.progress).get_mut(&old) {
                p.connected = p.connected.saturating_sub(1);
            }
        }
    }
}

/// Stores the new events of one batch (and syncs them) and says what it now holds; counts
/// what it stored, dropped and refused.
fn store(
    writer: &Mutex<JournalWriter>,
    progress: &Mutex<HashMap<Source, Progress>>,
    shared: &JournalShared,
    counters: &counters::Counters,
    source: &Source,
    batch: PushRequest,
) -> Result<PushAck, Status> {
    let result = store_batch(writer, progress, shared, source, batch);
    let count = |c: &std::sync::atomic::AtomicU64, n: u64| {
        c.fetch_add(n, Ordering::Relaxed);
    };
    match &result {
        Ok((ack, stored)) => {
            count(&counters.stored, *stored);
            count(&counters.duplicates, ack.duplicates);
        }
        Err(e) if e.code() == tonic::Code::InvalidArgument => count(&counters.batches_refused, 1),
        Err(_) => count(&counters.store_errors, 1),
    }
    result.map(|(ack, _)| ack)
}

/// [`store`]'s work: the acknowledgement and how many events were stored.
fn store_batch(
    writer: &Mutex<JournalWriter>,
    progress: &Mutex<HashMap<Source, Progress>>,
    shared: &JournalShared,
    source: &Source,
    batch: PushRequest,
) -> Result<(PushAck, u64), Status> {
    // One batch of one journal is in order: anything else is a broken or hostile client,
    // refused before anything is stored.
    if batch.events.windows(2).any(|w| w[0].seq >= w[1].seq) {
        return Err(Status::invalid_argument(
            "the batch's sequence numbers are not strictly increasing",
        ));
    }
    // Only what the journal's readers can read back: an event without a body (or with a
    // broken one) stored here would make `journal export` and `replay` of the whole
    // fleet's record fail at it.
    if let Some(e) = batch
        .events
        .iter()
        .find(|e| crate::journal::convert::from_proto((*e).clone()).is_err())
    {
        return Err(Status::invalid_argument(format!(
            "event {} is not a valid sovereign.agent.v1.Event",
            e.seq
        )));
    }
    // Held while storing: two streams of the same agent cannot both store the same events.
    let mut progress = lock(progress);
    let held = progress.get(source).map(|p| &p.seen);
    let mut fresh = EncodedBatch::default();
    let mut stored = Vec::new();
    let mut duplicates = 0u64;
    for mut e in batch.events {
        if held.is_some_and(|h| h.holds(e.seq)) {
            duplicates += 1;
            continue;
        }
        stored.push(e.seq);
        e.agent_id.clone_from(&source.0);
        e.agent_journal_id.clone_from(&source.1);
        e.agent_seq = e.seq;
        e.seq = 0;
        fresh.push_encoded(&e.encode_to_vec(), e.ts_unix_ns);
    }
    {
        let mut w = lock(writer);
        let stored = w.append_encoded(&fresh).and_then(|()| w.sync());
        stored.map_err(|e| Status::unavailable(format!("cannot store: {e}")))?;
        shared.next_seq.store(w.next_seq(), Ordering::Relaxed);
    }
    let p = progress.entry(source.clone()).or_default();
    let n = stored.len() as u64;
    for seq in stored {
        p.seen.insert(seq);
    }
    p.last_seen_unix_ns = crate::clock::unix_now_ns();
    p.journal_next_seq = p.journal_next_seq.max(batch.journal_next_seq);
    Ok((
        PushAck {
            acked_seq: p.last_seq(),
            duplicates,
        },
        n,
    ))
}

#[tonic::async_trait]
impl CollectorService for Collector {
    type PushStream = ReceiverStream<Result<PushAck, Status>>;

    async fn push(
        &self,
        request: Request<Streaming<PushRequest>>,
    ) -> Result<Response<Self::PushStream>, Status> {
        // The agent's identity: the common name of a certificate from the agent CA.
        let agent = self.roles.require(&request, Role::Agent)?;
        tracing::info!(%agent, "agent connected");
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let (writer, progress, shared, counters) = (
            self.writer.clone(),
            self.progress.clone(),
            self.shared.clone(),
            self.counters.clone(),
        );
        tokio::spawn(async move {
            let mut connected = Connected {
                progress: progress.clone(),
                source: None,
            };
            loop {
                let batch = match inbound.message().await {
                    Ok(Some(b)) => b,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(%agent, "agent disconnected: {}", e.message());
                        break;
                    }
                };
                let source: Source = (agent.clone(), batch.journal_id.clone());
                match admit(&progress, &source, batch.events.is_empty()) {
                    Ok(true) => {}
                    Ok(false) => {
                        let nothing = PushAck {
                            acked_seq: 0,
                            duplicates: 0,
                        };
                        if tx.send(Ok(nothing)).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Err(refused) => {
                        counters.batches_refused.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.send(Err(refused)).await;
                        break;
                    }
                }
                connected.to(&source);
                let (writer, progress, shared, counters) = (
                    writer.clone(),
                    progress.clone(),
                    shared.clone(),
                    counters.clone(),
                );
                // Store (and sync) before acknowledging: an ack means durable.
                let ack = tokio::task::spawn_blocking(move || {
                    store(&writer, &progress, &shared, &counters, &source, batch)
                })
                .await
                .unwrap_or_else(|e| Err(Status::internal(e.to_string())));
                let failed = ack.is_err();
                if tx.send(ack).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collector() -> (tempfile::TempDir, Collector) {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, TEST_CA).unwrap();
        let roles = Arc::new(Roles::load((&ca, "agent CA"), (&ca, "subscriber CA")).unwrap());
        let (c, _) = Collector::open(
            crate::journal::JournalOptions::new(dir.path().join("j")),
            roles,
        )
        .unwrap();
        (dir, c)
    }

    fn batch(journal: &str, seqs: &[u64], head: u64) -> PushRequest {
        PushRequest {
            events: seqs
                .iter()
                .map(|&seq| pb::Event {
                    seq,
                    ts_unix_ns: 1,
                    body: Some(pb::event::Body::Loss(pb::Loss { lost: 1 })),
                    ..Default::default()
                })
                .collect(),
            journal_id: journal.into(),
            journal_next_seq: head,
        }
    }

    #[test]
    fn client_chosen_journal_ids_are_bounded_and_empty_batches_leave_nothing() {
        // Issue 31, finding 9: every journal id a client sent, even in an empty batch, became a
        // permanent progress entry and metric label.
        let (_dir, c) = collector();
        let src = |j: &str| ("agent-a".to_string(), j.to_string());
        for bad in ["", "a b", "x\n", &"f".repeat(65), "café"] {
            let e = admit(&c.progress, &src(bad), false).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
        assert_eq!(admit(&c.progress, &src("j1"), true).ok(), Some(false));
        assert!(lock(&c.progress).is_empty(), "an empty batch is remembered");
        for i in 0..MAX_JOURNALS_PER_AGENT {
            let source = src(&format!("journal-{i}"));
            assert_eq!(admit(&c.progress, &source, false).ok(), Some(true));
            store(
                &c.writer,
                &c.progress,
                &c.shared,
                &c.counters,
                &source,
                batch(&source.1, &[0], 1),
            )
            .unwrap();
        }
        let e = admit(&c.progress, &src("one-more"), false).unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        // Known journals go on; another agent has bounds of its own.
        assert_eq!(admit(&c.progress, &src("journal-3"), true).ok(), Some(true));
        let other = ("agent-b".to_string(), "j1".to_string());
        assert_eq!(admit(&c.progress, &other, false).ok(), Some(true));
        assert!(valid_journal_id("b1a17cda8b4a6fbdaacef63bb513ec35"));
    }

    #[test]
    fn metrics_count_what_was_stored_dropped_and_refused() {
        let (_dir, c) = collector();
        push(&c, "agent-a", batch("j1", &[0, 1, 2], 3)).unwrap();
        // A re-send after a lost ack, with one new event; the agent's journal is at 5.
        push(&c, "agent-a", batch("j1", &[1, 2, 3], 5)).unwrap();
        // Out of order: refused, nothing stored.
        push(&c, "agent-a", batch("j1", &[5, 4], 6)).unwrap_err();
        push(&c, "agent-b", batch("j9", &[0], 1)).unwrap();
        let text = metrics::render(&c);
        for line in [
            "sovereign_collector_events_stored_total 5",
            "sovereign_collector_duplicates_total 2",
            "sovereign_collector_batches_refused_total 1",
            "sovereign_collector_store_errors_total 0",
            "sovereign_collector_agent_journals 2",
            "sovereign_collector_agent_last_seq{agent=\"agent-a\",journal=\"j1\"} 3",
            "sovereign_collector_agent_backlog_records{agent=\"agent-a\",journal=\"j1\"} 1",
            "sovereign_collector_agent_last_seq{agent=\"agent-b\",journal=\"j9\"} 0",
            "sovereign_collector_agent_connected{agent=\"agent-b\",journal=\"j9\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
    }

    fn push(c: &Collector, agent: &str, b: PushRequest) -> Result<PushAck, Status> {
        let source = (agent.to_string(), b.journal_id.clone());
        store(&c.writer, &c.progress, &c.shared, &c.counters, &source, b)
    }

    #[test]
    fn a_new_journal_of_the_same_agent_is_stored_not_dropped_as_duplicates() {
        let (_dir, c) = collector();
        let ack = push(&c, "node-1", batch("aaaa", &[3, 7, 9], 12)).unwrap();
        assert_eq!((ack.acked_seq, ack.duplicates), (9, 0));
        // Re-sent after a lost ack: all duplicates.
        let ack = push(&c, "node-1", batch("aaaa", &[7, 9], 12)).unwrap();
        assert_eq!((ack.acked_seq, ack.duplicates), (9, 2));
        // The node is rebuilt: a new journal starts at 0 again; every event is new.
        let ack = push(&c, "node-1", batch("bbbb", &[0, 2], 5)).unwrap();
        assert_eq!((ack.acked_seq, ack.duplicates), (2, 0));
        assert_eq!(c.shared.next_seq.load(Ordering::Relaxed), 5);
        let agents = c.agents();
        assert_eq!(agents.len(), 2);
        let old = agents.iter().find(|a| a.journal_id == "aaaa").unwrap();
        assert_eq!(
            (old.last_seq, old.journal_next_seq, old.backlog),
            (9, 12, 2)
        );
    }

    #[test]
    fn a_late_older_event_after_a_stream_reorder_is_stored_and_its_resend_is_not() {
        let (_dir, c) = collector();
        // A JetStream stream stored 1..=4 and 8..=9 before 5..=7, which the agent re-sent
        // after the stream's leader died with them.
        push(&c, "node-1", batch("aaaa", &[1, 2, 3, 4, 8, 9], 10)).unwrap();
        let ack = push(&c, "node-1", batch("aaaa", &[5, 6, 7], 10)).unwrap();
        assert_eq!(
            (ack.acked_seq, ack.duplicates),
            (9, 0),
            "late, not re-sends"
        );
        assert_eq!(c.shared.next_seq.load(Ordering::Relaxed), 9);
        let ack = push(&c, "node-1", batch("aaaa", &[5, 6, 7, 8], 10)).unwrap();
        assert_eq!((ack.acked_seq, ack.duplicates), (9, 4));
        assert_eq!(c.shared.next_seq.load(Ordering::Relaxed), 9);
    }

    #[test]
    fn a_huge_seq_blinds_only_its_own_journal_and_disorder_is_refused() {
        let (_dir, c) = collector();
        // A stolen certificate pushes seq u64::MAX under a made-up journal id ...
        push(&c, "node-1", batch("forged", &[u64::MAX], u64::MAX)).unwrap();
        // ... the agent's real journal is untouched.
        let ack = push(&c, "node-1", batch("real", &[0, 1], 2)).unwrap();
        assert_eq!((ack.acked_seq, ack.duplicates), (1, 0));
        let e = push(&c, "node-1", batch("real", &[5, 4], 6)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(c.shared.next_seq.load(Ordering::Relaxed), 3);
        // An event the journal's readers could not read back is refused, nothing stored.
        let mut b = batch("real", &[2, 3], 4);
        b.events[1].body = None;
        let e = push(&c, "node-1", b).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(c.shared.next_seq.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn what_each_journal_holds_is_learned_again_from_the_collectors_journal() {
        let (dir, c) = collector();
        push(&c, "node-1", batch("aaaa", &[3, 7], 8)).unwrap();
        push(&c, "node-2", batch("cccc", &[1], 2)).unwrap();
        c.close();
        drop(c);
        let ca = dir.path().join("ca.pem");
        let roles = Arc::new(Roles::load((&ca, "a"), (&ca, "s")).unwrap());
        let (c, _) = Collector::open(
            crate::journal::JournalOptions::new(dir.path().join("j")),
            roles,
        )
        .unwrap();
        let ack = push(&c, "node-1", batch("aaaa", &[7, 8], 9)).unwrap();
        assert_eq!((ack.acked_seq, ack.duplicates), (8, 1));
        // The gaps too: 5 was never stored, 3 was.
        let ack = push(&c, "node-1", batch("aaaa", &[3, 5], 9)).unwrap();
        assert_eq!((ack.acked_seq, ack.duplicates), (8, 1));
        let ack = push(&c, "node-2", batch("cccc", &[1], 2)).unwrap();
        assert_eq!((ack.acked_seq, ack.duplicates), (1, 1));
    }

    /// A self-signed test CA (openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256).
    const TEST_CA: &str = include_str!("../../../tests/fixtures/test-ca.pem");
}
