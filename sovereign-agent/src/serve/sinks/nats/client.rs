//! The `nats` sink: NATS JetStream. Each event is published to `<prefix>.<agent>.<kind>` with
//! its idempotency key as `Nats-Msg-Id` (JetStream drops a re-send within the stream's
//! duplicate window) and is delivered when JetStream acknowledges it (stored, and replicated
//! to a quorum in a clustered stream).
//!
//! A batch is published pipelined (one round trip for the whole batch, not one per event), and
//! up to `in_flight_batches` batches are in flight: the next is published while JetStream
//! stores and replicates the earlier ones. After a failure the first batch of the next
//! session is published one event at a time, each after the previous one's acknowledgement,
//! so the re-sent events land in the stream in journal order. Acknowledgements come back on
//! one subscription per session ([`super::acks`]); a batch fails when
//! `ack_timeout_ms` passes without the next one it waits for.
//!
//! The sink's client never reconnects by itself. A NATS client keeps what it had not written
//! yet when its connection dies and sends it after reconnecting; what was in the dead
//! connection is lost. With a batch in flight that stored the end of the batch before its
//! lost middle (re-sent later, after it): each event once, but out of journal order (a CI run
//! of the cluster test: seqs 1729-1792 after 1793). So a lost connection ends the session:
//! nothing more is published on it, the unacknowledged rest fails, and the driver starts again
//! from the first unacknowledged event on a new client.
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use async_nats::{
    header::{HeaderMap, HeaderName, NATS_MESSAGE_ID},
    HeaderValue, Subject,
};
use bytes::Bytes;
use prost::Message;
use sovereign_agent_proto::agent::v1 as pb;

use crate::serve::nats::{connect, subject_token, AfterLoss, NatsServers};

use super::{
    acks::Acks,
    config::{NatsSink, PayloadFormat},
};
use crate::serve::sinks::{
    record::Record,
    render::{render, Origin},
    transport::{Acknowledgement, Failed, Pending, Transport},
};

/// A message to publish: subject, headers, payload.
type Outgoing = (Subject, HeaderMap, Bytes);

/// One connection: the client, and the subscription its acknowledgements arrive on.
struct Session {
    client: async_nats::Client,
    acks: Acks,
}

pub struct NatsTransport {
    config: NatsSink,
    origin: Origin,
    /// The agent id as a subject token (no `.`, `*`, `>` or whitespace).
    token: String,
    session: Option<Session>,
    /// Set when the client's connection was lost (it will not reconnect).
    lost: Arc<AtomicBool>,
    /// Bounds each publish and each acknowledgement.
    timeout: Duration,
    /// Messages published and not yet acknowledged at most: the window's batches.
    max_in_flight: usize,
    /// Publish one at a time (after a failure, until a batch succeeds).
    careful: bool,
    /// Events JetStream reported as duplicates (re-sends it had already stored).
    pub duplicates: Arc<AtomicU64>,
    /// Per event kind, its subject (made once: a clone shares the bytes).
    subjects: Vec<(&'static str, Subject)>,
    /// The headers every message of this journal carries (cloned, then the event's added).
    headers: HeaderMap,
}

const SOVEREIGN_SEQ: HeaderName = HeaderName::from_static("Sovereign-Seq");

impl NatsTransport {
    /// `batch`: events per batch at most.
    pub fn new(config: NatsSink, origin: Origin, batch: usize) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert("Sovereign-Agent", origin.agent_id.as_str());
        headers.insert("Sovereign-Journal", origin.journal_id.as_str());
        NatsTransport {
            headers,
            max_in_flight: batch.saturating_mul(config.in_flight_batches.max(1)),
            token: subject_token(&origin.agent_id),
            config,
            origin,
            session: None,
            lost: Arc::new(AtomicBool::new(false)),
            timeout: Duration::from_secs(5),
            careful: false,
            duplicates: Arc::default(),
            subjects: Vec::new(),
        }
    }

    pub async fn connect(&mut self) -> Result<(), String> {
        let c = &self.config;
        let client = connect(
            &NatsServers {
                servers: c.servers.clone(),
                credentials: c.credentials.clone(),
                ca: c.ca.clone(),
                cert: c.cert.clone(),
                key: c.key.clone(),
            },
            format!("sovereign-agent {}", self.origin.agent_id),
            AfterLoss::Stay,
            // Every acknowledgement of the window, and those of a failed batch's tail.
            Some(self.max_in_flight.saturating_mul(2)),
        )
        .await?;
        let (client, lost) = client;
        self.lost = lost;
        let timeout = Duration::from_millis(c.ack_timeout_ms);
        self.timeout = timeout;
        let acks = Acks::start(&client).await?;
        self.session = Some(Session { client, acks });
        Ok(())
    }

    /// A session ends only when it failed (or the agent stops): the next one starts carefully.
    pub fn disconnect(&mut self) {
        self.session = None;
        self.careful = true;
    }

    pub fn window(&self) -> usize {
        self.config.in_flight_batches.max(1)
    }

    fn message(&mut self, r: &Record) -> Outgoing {
        let payload = match self.config.format {
            PayloadFormat::Json => {
                let rendered = render(&self.origin, r.event());
                Bytes::from(serde_json::to_vec(&rendered.json).unwrap_or_default())
            }
            PayloadFormat::Protobuf => Bytes::from(self.with_origin(r)),
        };
        let mut headers = self.headers.clone();
        // Names made once and values moved in: a name or value given as &str is validated,
        // classified and copied for every message.
        headers.insert(NATS_MESSAGE_ID, HeaderValue::from(self.origin.key(r.seq)));
        let mut digits = itoa::Buffer::new();
        headers.insert(SOVEREIGN_SEQ, HeaderValue::from(digits.format(r.seq)));
        (self.subject(r.kind), headers, payload)
    }

    fn subject(&mut self, kind: &'static str) -> Subject {
        if let Some((_, s)) = self.subjects.iter().find(|(k, _)| *k == kind) {
            return s.clone();
        }
        let subject = Subject::from(format!(
            "{}.{}.{kind}",
            self.config.subject_prefix, self.token
        ));
        self.subjects.push((kind, subject.clone()));
        subject
    }

    /// The record's event with its `seq`, and the agent's identity and that sequence number
    /// in `agent_*`. Protobuf merges concatenated messages field by field (the later value of
    /// a scalar or string wins), so these are appended to the journal's encoding as a second
    /// message: the event is neither decoded nor encoded again on the sink's hottest path (a
    /// journal's `seq` and `agent_*` fields are empty anyway).
    fn with_origin(&self, r: &Record) -> Vec<u8> {
        let origin = pb::Event {
            seq: r.seq,
            agent_id: self.origin.agent_id.clone(),
            agent_journal_id: self.origin.journal_id.clone(),
            agent_seq: r.seq,
            ..Default::default()
        };
        let mut bytes = Vec::with_capacity(r.payload.len() + origin.encoded_len());
        bytes.extend_from_slice(&r.payload);
        origin.encode_raw(&mut bytes);
        bytes
    }

    /// Publishes `events`; the acknowledgement resolves when JetStream has acknowledged them
    /// (or the first of them it did not). Careful (after a failure): returns once each was
    /// acknowledged in turn.
    pub async fn send(&mut self, events: &[Record]) -> Acknowledgement {
        if self.session.is_none() {
            return Box::pin(std::future::ready(Err(Failed::none("not connected"))));
        }
        let messages: Vec<_> = events.iter().map(|e| (e.seq, self.message(e))).collect();
        if self.careful {
            let result = self.one_at_a_time(messages).await;
            self.careful = result.is_err();
            return Box::pin(std::future::ready(result));
        }
        self.pipelined(messages).await
    }

    /// Each message as a batch of its own, after the previous one's acknowledgement (with the
    /// same bound on the publish: a client whose connection died takes no more, and without
    /// it the sink would wait for the client's reconnect delay, an hour).
    async fn one_at_a_time(&mut self, messages: Vec<(u64, Outgoing)>) -> Result<(), Failed> {
        for (i, message) in messages.into_iter().enumerate() {
            self.pipelined(vec![message])
                .await
                .await
                .map_err(|f| Failed {
                    delivered: i,
                    error: f.error,
                })?;
        }
        Ok(())
    }

    /// Publishes until all are sent or one is refused (nothing after it goes out: it would be
    /// stored ahead of the refused one's re-send).
    async fn pipelined(&mut self, messages: Vec<(u64, Outgoing)>) -> Acknowledgement {
        let Some(session) = &self.session else {
            return Box::pin(std::future::ready(Err(Failed::none("not connected"))));
        };
        let mut published = Vec::with_capacity(messages.len());
        let mut refused = None;
        let publishing = async {
            for (seq, message) in messages {
                if let Err(e) = self.publish(session, seq, message).await {
                    refused = Some(e);
                    return;
                }
                published.push(seq);
            }
        };
        if tokio::time::timeout(self.timeout, publishing)
            .await
            .is_err()
        {
            refused = Some(format!(
                "NATS publish: the client took no more within {:?}",
                self.timeout
            ));
        }
        if refused.is_some() {
            // Nor does any later batch of this session (the driver may send one before it
            // sees this batch fail): the connection is treated as lost.
            self.lost.store(true, Relaxed);
        }
        let sent = published.len();
        let acknowledged = session
            .acks
            .wait(published, self.timeout, self.duplicates.clone());
        Box::pin(async move {
            // What was sent before a refusal still counts, in order, if acknowledged.
            acknowledged.await?;
            match refused {
                None => Ok(()),
                Some(error) => Err(Failed {
                    delivered: sent,
                    error,
                }),
            }
        })
    }

    /// Hands one message to the client, unless its connection was lost (then nothing more
    /// goes out on it: see the module's documentation).
    async fn publish(&self, session: &Session, seq: u64, m: Outgoing) -> Result<(), String> {
        if self.lost.load(Relaxed) {
            return Err("the connection to NATS was lost".into());
        }
        session
            .client
            .publish_with_reply_and_headers(m.0, session.acks.reply_to(seq), m.1, m.2)
            .await
            .map_err(|e| format!("NATS publish: {e}"))
    }
}

impl Transport for NatsTransport {
    fn connect(&mut self) -> Pending<'_, Result<(), String>> {
        Box::pin(NatsTransport::connect(self))
    }

    fn send<'a>(&'a mut self, events: &'a [Record], _: u64) -> Pending<'a, Acknowledgement> {
        Box::pin(NatsTransport::send(self, events))
    }

    fn window(&self) -> usize {
        NatsTransport::window(self)
    }

    fn disconnect(&mut self) {
        NatsTransport::disconnect(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        journal::feed::{filter::EventFilter, stream::FromJournal},
        serve::sinks::record::SinkItem,
    };

    #[test]
    fn a_protobuf_payload_decodes_as_the_event_with_the_agents_identity() {
        let config: NatsSink =
            toml::from_str("servers = [\"nats://127.0.0.1:4222\"]\nformat = \"protobuf\"\n")
                .expect("config");
        let origin = Origin {
            agent_id: "node-1".into(),
            journal_id: "j1".into(),
        };
        let mut sink = NatsTransport::new(config, origin, 10);
        let event = pb::Event {
            seq: 41,
            ts_unix_ns: 7,
            body: Some(pb::event::Body::Flow(Box::new(pb::Flow {
                kind: pb::FlowKind::Connect as i32,
                pid: 1234,
                ..Default::default()
            }))),
            ..Default::default()
        };
        // As the journal holds it (without its seq), read through a sink's subscription.
        let mut journaled = event.clone();
        journaled.seq = 0;
        let filter = EventFilter::compile(&Default::default()).expect("filter");
        let Some(SinkItem::Record(record)) =
            SinkItem::record(41, &journaled.encode_to_vec(), &filter)
        else {
            panic!("the record was dropped");
        };
        let (subject, headers, payload) = sink.message(&record);
        assert_eq!(subject.as_str(), "sovereign.node-1.connect");
        assert_eq!(
            headers.get("Sovereign-Journal").map(HeaderValue::as_str),
            Some("j1")
        );
        assert_eq!(
            headers.get("Nats-Msg-Id").map(HeaderValue::as_str),
            Some("node-1:j1:41")
        );
        assert_eq!(
            headers.get("Sovereign-Seq").map(HeaderValue::as_str),
            Some("41")
        );
        let decoded = pb::Event::decode(payload).expect("one protobuf Event");
        let mut wanted = event.clone();
        wanted.agent_id = "node-1".into();
        wanted.agent_journal_id = "j1".into();
        wanted.agent_seq = 41;
        assert_eq!(decoded, wanted);
    }
}
