//! The collector (`sovereign-collector`): agents push their alerts over mutual TLS; each event
//! is stored once in the collector's own journal (tagged with the agent's identity, the common
//! name of its certificate, and its sequence number there) and acknowledged only once synced;
//! the security team reads every agent's events through the same `StreamEvents` API.
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

use crate::journal::{reader, sink::JournalShared, EncodedBatch, JournalError, JournalWriter};

pub struct Collector {
    writer: Arc<Mutex<JournalWriter>>,
    /// Highest sequence number stored per agent: what makes re-sent events duplicates.
    stored: Arc<Mutex<HashMap<String, u64>>>,
    shared: Arc<JournalShared>,
}

impl Collector {
    /// Opens (or recovers) the collector's journal and learns what each agent has delivered.
    pub fn open(
        opts: crate::journal::JournalOptions,
    ) -> Result<(Self, Arc<JournalShared>), JournalError> {
        let dir = opts.dir.clone();
        let (mut writer, _recovery) = JournalWriter::open(opts)?;
        let mut stored: HashMap<String, u64> = HashMap::new();
        reader::for_each_payload(
            &dir,
            true,
            |_| {},
            |_, payload| {
                if let Ok(e) = pb::Event::decode(payload) {
                    if !e.agent_id.is_empty() {
                        let s = stored.entry(e.agent_id).or_insert(0);
                        *s = (*s).max(e.agent_seq);
                    }
                }
                Ok(())
            },
        )?;
        let shared = JournalShared::of(&mut writer);
        tracing::info!(
            agents = stored.len(),
            next_seq = writer.next_seq(),
            "collector journal open"
        );
        Ok((
            Collector {
                writer: Arc::new(Mutex::new(writer)),
                stored: Arc::new(Mutex::new(stored)),
                shared: shared.clone(),
            },
            shared,
        ))
    }

    /// Writes the final checkpoint.
    pub fn close(&self) {
        if let Ok(mut w) = self.writer.lock() {
            let _ = w.checkpoint();
        }
    }
}

#[tonic::async_trait]
impl CollectorService for Collector {
    type PushStream = ReceiverStream<Result<PushAck, Status>>;

    async fn push(
        &self,
        request: Request<Streaming<PushRequest>>,
    ) -> Result<Response<Self::PushStream>, Status> {
        // The agent's identity: the common name of the client certificate it connected with.
        let agent = crate::serve::tls::client_identity(&request)?;
        tracing::info!(%agent, "agent connected");
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let (writer, stored, shared) = (
            self.writer.clone(),
            self.stored.clone(),
            self.shared.clone(),
        );
        tokio::spawn(async move {
            loop {
                let batch = match inbound.message().await {
                    Ok(Some(b)) => b,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(%agent, "agent disconnected: {}", e.message());
                        break;
                    }
                };
                let agent = agent.clone();
                let (writer, stored, shared) = (writer.clone(), stored.clone(), shared.clone());
                // Store (and sync) before acknowledging: an ack means durable.
                let result = tokio::task::spawn_blocking(move || {
                    let mut stored = stored
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let before = stored.get(&agent).copied();
                    let mut fresh = EncodedBatch::default();
                    let (mut duplicates, mut highest) = (0u64, before);
                    for mut e in batch.events {
                        if before.is_some_and(|b| e.seq <= b) || highest.is_some_and(|h| e.seq <= h)
                        {
                            duplicates += 1;
                            continue;
                        }
                        highest = Some(e.seq);
                        e.agent_id = agent.clone();
                        e.agent_seq = e.seq;
                        e.seq = 0;
                        fresh.push_encoded(&e.encode_to_vec(), e.ts_unix_ns);
                    }
                    let mut w = writer
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    w.append_encoded(&fresh)?;
                    w.sync()?;
                    shared.next_seq.store(w.next_seq(), Ordering::Relaxed);
                    if let Some(h) = highest {
                        stored.insert(agent.clone(), h);
                    }
                    Ok::<_, JournalError>(PushAck {
                        acked_seq: highest.unwrap_or(0),
                        duplicates,
                    })
                })
                .await;
                let ack = match result {
                    Ok(Ok(ack)) => Ok(ack),
                    Ok(Err(e)) => Err(Status::unavailable(format!("cannot store: {e}"))),
                    Err(e) => Err(Status::internal(e.to_string())),
                };
                let failed = ack.is_err();
                if tx.send(ack).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
