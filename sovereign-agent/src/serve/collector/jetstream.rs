//! The collector consuming from NATS JetStream (docs/collector.md, "A fleet on JetStream"):
//! agents publish to a JetStream cluster through their `nats` sink (`format = "protobuf"`),
//! and each collector reads the stream, storing every event once in its own journal,
//! deduplicated exactly as pushes are, then serving the same `StreamEvents`/`GetStatus` API.
//! Several collectors can share one stream: each reads all of it.
//!
//! Who sent an event is taken from its subject (`<prefix>.<agent>.<kind>`), which the
//! operator's NATS permissions bind to each agent's credentials (`publish:
//! sovereign.<agent>.>`). The token is injective (`subject_token`: `%XX` escapes), so it is
//! decoded back into exactly one agent id; the `Sovereign-Agent` header is not read (it was:
//! an agent `node_1` could claim to be `node.1`, whose token was also `node_1`). An agent
//! publishing under another's subject is refused by NATS, not trusted by us.
//!
//! The collector's position in the stream is its own durable cursor
//! (`jetstream.<stream>.cursor` beside its journal), written after each batch is stored and
//! synced, and read by an *ordered* consumer (in stream order, gap-free, re-created by the
//! client after any hiccup) that starts after it. Not a server-side durable consumer with
//! acknowledgements: after a collector restart JetStream redelivers what the old process had
//! fetched only once the ack wait has passed, so newer events would be stored first and the
//! older ones then dropped as re-sends by the highest-sequence deduplication (the test
//! `collectors_consume_the_stream_...` lost half its alerts that way). Resuming from our own
//! cursor keeps every agent's events in order; a crash between storing and the cursor
//! write only re-reads events the deduplication drops.
use std::{future::Future, pin::pin, sync::Arc, time::Duration};

use async_nats::jetstream::{self, consumer::pull, consumer::DeliverPolicy};
use futures_util::FutureExt;
use prost::Message;
use sovereign_agent_proto::{agent::v1 as pb, collector::v1::PushRequest};
use tokio_stream::StreamExt;

use super::{store, Collector, Source};
use crate::serve::{
    cursor::Cursor,
    nats::{agent_of_token, connect, AfterLoss, NatsServers},
};

/// The collector's `--nats-*` settings.
#[derive(Clone, Debug)]
pub struct JetStreamSource {
    pub servers: NatsServers,
    /// The stream the agents publish to (created by the operator).
    pub stream: String,
    /// Which of the stream's subjects this collector stores (`sovereign.>`: everything).
    pub subject: String,
    /// The next stream sequence number to store.
    pub cursor: Cursor,
}

/// Events stored per batch at most (one journal sync and one cursor write each). A batch is
/// what has arrived by the time the previous one is stored: it never waits to fill (waiting
/// up to 100 ms for a full batch was most of the agent-to-subscriber latency), and it grows
/// by itself when the stream runs ahead of the disk.
const BATCH: usize = 2_000;

/// Runs until `stop` resolves, reconnecting after every failure.
pub async fn run(
    collector: Arc<Collector>,
    source: JetStreamSource,
    stop: impl Future<Output = ()>,
) {
    tokio::select! {
        () = stop => {}
        () = consume_forever(&collector, &source) => {}
    }
}

async fn consume_forever(collector: &Arc<Collector>, source: &JetStreamSource) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let stored_before = source.cursor.read();
        let e = consume(collector, source).await;
        if source.cursor.read() > stored_before {
            backoff = Duration::from_millis(500);
        }
        tracing::warn!(stream = %source.stream, "JetStream: {e}; retrying in {backoff:?}");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Reads the stream from the cursor on; returns why it stopped.
async fn consume(collector: &Arc<Collector>, source: &JetStreamSource) -> String {
    let client = match connect(
        &source.servers,
        format!("sovereign-collector {}", source.stream),
        AfterLoss::Reconnect,
        None,
    )
    .await
    {
        Ok((c, _)) => c,
        Err(e) => return e,
    };
    let js = jetstream::new(client);
    let stream = match js.get_stream(&source.stream).await {
        Ok(s) => s,
        Err(e) => return format!("stream {:?}: {e}", source.stream),
    };
    let state = &stream.cached_info().state;
    let cursor = source.cursor.read();
    let start = if cursor > state.last_sequence.saturating_add(1) {
        // The stream was created again: its numbers restarted. Read it all; the
        // deduplication drops what was stored from the old one.
        tracing::warn!(
            cursor,
            last = state.last_sequence,
            "the stream is behind this collector's cursor (created again?): reading it from the start"
        );
        1
    } else if cursor < state.first_sequence && state.messages > 0 {
        if cursor > 0 {
            tracing::error!(
                missed = state.first_sequence - cursor,
                "the stream's retention removed events this collector had not read"
            );
        }
        state.first_sequence
    } else {
        cursor.max(1)
    };
    let consumer = match stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: source.subject.clone(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ..Default::default()
        })
        .await
    {
        Ok(c) => c,
        Err(e) => return format!("consumer: {e}"),
    };
    let messages = match consumer.messages().await {
        Ok(m) => m,
        Err(e) => return format!("consume: {e}"),
    };
    tracing::info!(stream = %source.stream, start, "consuming from JetStream");
    // Fused: the end seen by a poll for a ready message is seen again at the next await.
    let mut messages = pin!(messages.fuse());
    while let Some(first) = messages.next().await {
        let mut fetched = Vec::new();
        let mut next = Some(first);
        while let Some(m) = next {
            match m {
                Ok(m) => fetched.push(m),
                // What came before is not stored either: read again from the cursor.
                Err(e) => return format!("fetch: {e}"),
            }
            next = if fetched.len() < BATCH {
                // Only what is ready; the end of the stream shows at the next await.
                messages.next().now_or_never().flatten()
            } else {
                None
            };
        }
        let Some(next) = fetched
            .last()
            .and_then(|m| m.info().ok())
            .map(|i| i.stream_sequence + 1)
        else {
            continue;
        };
        let (groups, refused) = group(&fetched);
        if refused > 0 {
            tracing::warn!(
                refused,
                "JetStream messages that are not valid sovereign.agent.v1.Event protobuf \
                 (a collector needs the agents' nats sink with format = \"protobuf\") or lack \
                 the Sovereign-Journal header: skipped"
            );
        }
        store_until_done(collector, groups).await;
        if let Err(e) = source.cursor.write(next) {
            // Stored already: a restart re-reads these, and the deduplication drops them.
            tracing::warn!("cannot write the JetStream cursor: {e}");
        }
    }
    "the stream's consumer ended".into()
}

/// Stores each agent journal's events of a batch, retrying (in hand, nothing acknowledged)
/// until the collector's journal takes them.
async fn store_until_done(collector: &Arc<Collector>, groups: Vec<(Source, PushRequest)>) {
    for (source, request) in groups {
        let mut wait = Duration::from_millis(200);
        loop {
            let (writer, progress, shared, counters) = (
                collector.writer.clone(),
                collector.progress.clone(),
                collector.shared.clone(),
                collector.counters.clone(),
            );
            let (s, r) = (source.clone(), request.clone());
            let stored = tokio::task::spawn_blocking(move || {
                store(&writer, &progress, &shared, &counters, &s, r)
            })
            .await
            .unwrap_or_else(|e| Err(tonic::Status::internal(e.to_string())));
            match stored {
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(agent = %source.0, "cannot store JetStream events: {}; retrying", e.message());
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// The batch's events per agent journal, in stream order, as requests of strictly increasing
/// sequence numbers (an older one after a newer starts another request of that journal: it
/// may be late, not a re-send), and how many messages were refused.
fn group(messages: &[jetstream::Message]) -> (Vec<(Source, PushRequest)>, usize) {
    let mut groups: Vec<(Source, PushRequest)> = Vec::new();
    let mut refused = 0;
    for m in messages {
        let Some((source, event)) = parse(m.subject.as_str(), m.headers.as_ref(), &m.payload)
        else {
            refused += 1;
            continue;
        };
        // A new request for the journal when this event is older than its last one: late
        // (stored if it fills a gap) or a re-send (dropped by the deduplication).
        let i = match groups.iter().rposition(|(s, _)| *s == source) {
            Some(i) if groups[i].1.events.last().is_none_or(|l| l.seq < event.seq) => i,
            _ => {
                let journal_id = source.1.clone();
                groups.push((
                    source,
                    PushRequest {
                        journal_id,
                        ..Default::default()
                    },
                ));
                groups.len() - 1
            }
        };
        let request = &mut groups[i].1;
        request.journal_next_seq = event.seq + 1;
        request.events.push(event);
    }
    (groups, refused)
}

/// One message's source and event: the agent from the subject, the journal from its header.
fn parse(
    subject: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
) -> Option<(Source, pb::Event)> {
    let mut tokens = subject.rsplit('.');
    let _kind = tokens.next()?;
    let token = tokens.next()?;
    let header = |name: &str| {
        headers
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_string())
    };
    let journal = header("Sovereign-Journal").filter(|j| super::valid_journal_id(j))?;
    // The agent is the subject's, decoded; no header can change it.
    let agent = agent_of_token(token)?;
    let mut event = pb::Event::decode(payload).ok()?;
    // What the collector's journal could not give back is not stored (store() would refuse
    // the whole batch, and this one would be fetched again for ever).
    crate::journal::convert::from_proto(event.clone()).ok()?;
    // The sink sends the event with its journal seq in `seq` and `agent_seq`.
    event.seq = event.agent_seq.max(event.seq);
    Some(((agent, journal), event))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(agent: &str, journal: &str) -> async_nats::HeaderMap {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Sovereign-Agent", agent);
        h.insert("Sovereign-Journal", journal);
        h
    }

    fn event(seq: u64) -> Vec<u8> {
        pb::Event {
            seq,
            agent_seq: seq,
            body: Some(pb::event::Body::Loss(pb::Loss { lost: 1 })),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn the_subject_names_the_agent_not_the_header() {
        let (source, e) = parse(
            "sovereign.node-2.alert",
            Some(&headers("node-1", "j1")),
            &event(7),
        )
        .unwrap();
        assert_eq!(source, ("node-2".to_string(), "j1".to_string()));
        assert_eq!(e.seq, 7);
        // The subject's token is decoded; a spelling the old `_` replacement shared with
        // another id cannot be claimed through the header (issue 31, finding 11).
        let (source, _) = parse(
            "fleet.eu.node-1%2Eexample.flow",
            Some(&headers("node-1.example", "j1")),
            &event(1),
        )
        .unwrap();
        assert_eq!(source.0, "node-1.example");
        let (source, _) = parse(
            "fleet.eu.node-1_example.flow",
            Some(&headers("node-1.example", "j1")),
            &event(1),
        )
        .unwrap();
        assert_eq!(
            source.0, "node-1_example",
            "the header claimed another agent"
        );
        // A token no agent id encodes to: refused.
        assert!(parse("sovereign.%41.alert", Some(&headers("A", "j")), &event(1)).is_none());
        // No journal identity, or not protobuf: refused.
        assert!(parse("sovereign.n.alert", None, &event(1)).is_none());
        assert!(parse(
            "sovereign.n.alert",
            Some(&headers("n", "j")),
            b"{\"json\":1}"
        )
        .is_none());
    }
}
