//! The `nats` sink: NATS JetStream. Each event is published to `<prefix>.<agent>.<kind>` with
//! its idempotency key as `Nats-Msg-Id` (JetStream drops a re-send within the stream's
//! duplicate window) and is delivered when JetStream acknowledges it (stored, and replicated
//! to a quorum in a clustered stream).
//!
//! A batch is published pipelined (one round trip for the whole batch, not one per event).
//! After a failure the next batch is published one event at a time, each after the previous
//! one's acknowledgement, so the re-sent events land in the stream in journal order.
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
        atomic::{AtomicBool, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use async_nats::{header::HeaderMap, jetstream};
use bytes::Bytes;
use prost::Message;
use sovereign_agent_proto::agent::v1 as pb;

use super::{
    config::{NatsSink, PayloadFormat},
    driver::Failed,
    render::{render, Origin},
};

pub struct NatsTransport {
    config: NatsSink,
    origin: Origin,
    /// The agent id as a subject token (no `.`, `*`, `>` or whitespace).
    token: String,
    context: Option<jetstream::Context>,
    /// Set when the client's connection was lost (it will not reconnect).
    lost: Arc<AtomicBool>,
    /// Bounds each publish and each acknowledgement.
    timeout: Duration,
    /// Publish one at a time (after a failure, until a batch succeeds).
    careful: bool,
    /// Events JetStream reported as duplicates (re-sends it had already stored).
    pub duplicates: u64,
}

/// `s` as one subject token.
pub fn subject_token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect();
    if t.is_empty() {
        "_".into()
    } else {
        t
    }
}

/// Where a NATS client connects, and with what credentials: the `nats` sink's settings, and
/// the collector's when it consumes from JetStream.
#[derive(Clone, Debug, Default)]
pub struct NatsServers {
    pub servers: Vec<String>,
    pub credentials: Option<std::path::PathBuf>,
    pub ca: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

/// What a client does when its connection is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterLoss {
    /// Fail over to another server by itself (a consumer, which resumes from its cursor).
    Reconnect,
    /// Stay disconnected, saying so in the returned flag (a publisher that must keep order:
    /// see the module's documentation).
    Stay,
}

/// Never, for a client: its connection task sleeps this long before a reconnect, and is
/// dropped with the client well before.
const NO_RECONNECT: Duration = Duration::from_secs(3600);

/// Connects to the first NATS server of `to` that answers; returns the client and a flag set
/// when its connection is lost.
pub async fn connect(
    to: &NatsServers,
    name: String,
    after_loss: AfterLoss,
) -> Result<(async_nats::Client, Arc<AtomicBool>), String> {
    let lost = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicBool::new(false));
    let mut options = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .name(name);
    if after_loss == AfterLoss::Stay {
        let (lost, on_event) = (lost.clone(), connected.clone());
        let on_delay = connected.clone();
        options = options
            .event_callback(move |event| {
                if on_event.load(Relaxed) && matches!(event, async_nats::Event::Disconnected) {
                    lost.store(true, Relaxed);
                }
                std::future::ready(())
            })
            .reconnect_delay_callback(move |attempts| {
                if on_delay.load(Relaxed) {
                    NO_RECONNECT
                } else if attempts <= 1 {
                    // The first connection tries each server at once.
                    Duration::ZERO
                } else {
                    Duration::from_millis(250)
                }
            });
    }
    if let Some(path) = &to.credentials {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| format!("NATS credentials {}: {e}", path.display()))?;
    }
    if let Some(ca) = &to.ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&to.cert, &to.key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let servers: Vec<async_nats::ServerAddr> = to
        .servers
        .iter()
        .map(|s| s.parse().map_err(|e| format!("NATS server {s:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let client = options
        .connect(servers)
        .await
        .map_err(|e| format!("cannot connect to NATS {}: {e}", to.servers.join(", ")))?;
    connected.store(true, Relaxed);
    Ok((client, lost))
}

impl NatsTransport {
    pub fn new(config: NatsSink, origin: Origin) -> Self {
        NatsTransport {
            token: subject_token(&origin.agent_id),
            config,
            origin,
            context: None,
            lost: Arc::new(AtomicBool::new(false)),
            timeout: Duration::from_secs(5),
            careful: false,
            duplicates: 0,
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
        )
        .await?;
        let (client, lost) = client;
        self.lost = lost;
        let timeout = Duration::from_millis(c.ack_timeout_ms);
        self.timeout = timeout;
        self.context = Some(
            jetstream::context::ContextBuilder::new()
                .timeout(timeout)
                .max_ack_inflight(8_192)
                .backpressure_on_inflight(true)
                .build(client),
        );
        Ok(())
    }

    pub fn disconnect(&mut self) {
        self.context = None;
    }

    fn message(&self, e: &pb::Event) -> (String, HeaderMap, Bytes) {
        let r = render(&self.origin, e);
        let subject = format!("{}.{}.{}", self.config.subject_prefix, self.token, r.kind);
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", r.key.as_str());
        headers.insert("Sovereign-Agent", self.origin.agent_id.as_str());
        headers.insert("Sovereign-Journal", self.origin.journal_id.as_str());
        headers.insert("Sovereign-Seq", e.seq.to_string().as_str());
        let payload = match self.config.format {
            PayloadFormat::Json => Bytes::from(serde_json::to_vec(&r.json).unwrap_or_default()),
            PayloadFormat::Protobuf => {
                let mut e = e.clone();
                e.agent_id.clone_from(&self.origin.agent_id);
                e.agent_journal_id.clone_from(&self.origin.journal_id);
                e.agent_seq = e.seq;
                Bytes::from(e.encode_to_vec())
            }
        };
        (subject, headers, payload)
    }

    pub async fn deliver(&mut self, events: &[pb::Event]) -> Result<(), Failed> {
        let Some(context) = self.context.clone() else {
            return Err(Failed::none("not connected"));
        };
        let messages: Vec<_> = events.iter().map(|e| self.message(e)).collect();
        let result = if self.careful {
            self.one_at_a_time(&context, messages).await
        } else {
            self.pipelined(&context, messages).await
        };
        self.careful = result.is_err();
        result
    }

    async fn one_at_a_time(
        &mut self,
        context: &jetstream::Context,
        messages: Vec<(String, HeaderMap, Bytes)>,
    ) -> Result<(), Failed> {
        for (i, (subject, headers, payload)) in messages.into_iter().enumerate() {
            let fail = |e: String| Failed {
                delivered: i,
                error: e,
            };
            let ack = self
                .publish(context, subject, headers, payload)
                .await
                .map_err(fail)?
                .await
                .map_err(|e| fail(format!("JetStream did not acknowledge: {e}")))?;
            self.duplicates += u64::from(ack.duplicate);
        }
        Ok(())
    }

    async fn pipelined(
        &mut self,
        context: &jetstream::Context,
        messages: Vec<(String, HeaderMap, Bytes)>,
    ) -> Result<(), Failed> {
        let mut pending = Vec::with_capacity(messages.len());
        for (subject, headers, payload) in messages {
            match self.publish(context, subject, headers, payload).await {
                Ok(ack) => pending.push(ack),
                Err(e) => {
                    // What was sent before still counts, in order, if acknowledged.
                    let delivered = self
                        .await_acks(pending)
                        .await
                        .unwrap_or_else(|f| f.delivered);
                    return Err(Failed {
                        delivered,
                        error: e,
                    });
                }
            }
        }
        self.await_acks(pending).await.map(|_| ())
    }

    /// Hands one message to the client, unless its connection was lost (then nothing more
    /// goes out on it: see the module's documentation); bounded by the ack timeout, since a
    /// client that is not writing stops taking messages once its buffer is full.
    async fn publish(
        &self,
        context: &jetstream::Context,
        subject: String,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<jetstream::context::PublishAckFuture, String> {
        if self.lost.load(Relaxed) {
            return Err("the connection to NATS was lost".into());
        }
        match tokio::time::timeout(
            self.timeout,
            context.publish_with_headers(subject, headers, payload),
        )
        .await
        {
            Ok(Ok(ack)) => Ok(ack),
            Ok(Err(e)) => Err(format!("NATS publish: {e}")),
            Err(_) => Err(format!("NATS publish: not taken within {:?}", self.timeout)),
        }
    }

    /// Awaits acknowledgements in order (all are in flight already: they arrive
    /// concurrently); Ok(count) when all came, or how many of the first ones came before the
    /// first failure.
    async fn await_acks(
        &mut self,
        pending: Vec<jetstream::context::PublishAckFuture>,
    ) -> Result<usize, Failed> {
        let mut delivered = 0;
        for ack in pending {
            match ack.await {
                Ok(a) => {
                    self.duplicates += u64::from(a.duplicate);
                    delivered += 1;
                }
                Err(e) => {
                    return Err(Failed {
                        delivered,
                        error: format!("JetStream did not acknowledge: {e}"),
                    })
                }
            }
        }
        Ok(delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::subject_token;

    #[test]
    fn an_agent_id_becomes_one_subject_token() {
        assert_eq!(
            subject_token("node-1.eu-west.example"),
            "node-1_eu-west_example"
        );
        assert_eq!(subject_token("a b*c>"), "a_b_c_");
        assert_eq!(subject_token(""), "_");
    }
}
