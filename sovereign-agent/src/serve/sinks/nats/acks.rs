//! JetStream's publish acknowledgements for the `nats` sink, read from one subscription per
//! session. Each message is published with the reply subject `<inbox>.<seq>`; JetStream answers
//! there once it stored the message (on a quorum, in a replicated stream). The client library's
//! own JetStream publish made a request per message (a one-shot channel, an entry in its
//! request table, a permit and two timers each, then a generic JSON parse): a third of the
//! sink's CPU per event in a profile. Here an acknowledgement is one map entry, and a batch
//! waits for its sequence numbers with one deadline.
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::Duration,
};

use async_nats::{Client, Message, Subject};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::watch;

use crate::serve::sinks::transport::Failed;

/// What JetStream answered for one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ack {
    /// Stored (or already stored: a re-send inside the stream's duplicate window).
    Stored {
        duplicate: bool,
    },
    Refused(String),
}

type Answers = Arc<Mutex<HashMap<u64, Ack>>>;

/// One session's acknowledgements: the reply subjects to publish with, and the answers.
pub struct Acks {
    inbox: String,
    answers: Answers,
    /// Bumped by the reader after each answer.
    arrived: watch::Receiver<u64>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Acks {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Acks {
    /// Subscribes to a new inbox of `client` and reads its answers until dropped.
    pub async fn start(client: &Client) -> Result<Acks, String> {
        let inbox = client.new_inbox();
        let mut replies = client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|e| format!("NATS subscribe for acknowledgements: {e}"))?;
        let answers = Answers::default();
        let (tx, arrived) = watch::channel(0);
        let into = answers.clone();
        let reader = tokio::spawn(async move {
            while let Some(reply) = replies.next().await {
                let Some(seq) = reply
                    .subject
                    .rsplit('.')
                    .next()
                    .and_then(|s| s.parse().ok())
                else {
                    continue;
                };
                into.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(seq, answer(&reply));
                tx.send_modify(|n| *n += 1);
            }
        });
        Ok(Acks {
            inbox,
            answers,
            arrived,
            reader,
        })
    }

    /// Where JetStream answers for the message of sequence number `seq`.
    pub fn reply_to(&self, seq: u64) -> Subject {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(seq);
        let mut reply = String::with_capacity(self.inbox.len() + 1 + digits.len());
        reply.push_str(&self.inbox);
        reply.push('.');
        reply.push_str(digits);
        Subject::from(reply)
    }

    /// Resolves when JetStream stored each of `seqs` (published in this order), or with how
    /// many of the first were stored when one was refused or `timeout` passed without the
    /// next answer.
    pub fn wait(
        &self,
        seqs: Vec<u64>,
        timeout: Duration,
        duplicates: Arc<AtomicU64>,
    ) -> impl std::future::Future<Output = Result<(), Failed>> + Send + 'static {
        let answers = self.answers.clone();
        let mut arrived = self.arrived.clone();
        async move {
            let mut deadline = tokio::time::Instant::now() + timeout;
            let mut done = 0;
            loop {
                arrived.borrow_and_update();
                let before = done;
                {
                    let mut answers = answers
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    while let Some(seq) = seqs.get(done) {
                        match answers.remove(seq) {
                            Some(Ack::Stored { duplicate }) => {
                                duplicates.fetch_add(u64::from(duplicate), Relaxed);
                                done += 1;
                            }
                            Some(Ack::Refused(why)) => {
                                return Err(Failed {
                                    delivered: done,
                                    error: format!("JetStream refused seq {seq}: {why}"),
                                })
                            }
                            None => break,
                        }
                    }
                }
                let Some(waiting_for) = seqs.get(done) else {
                    return Ok(());
                };
                if done > before {
                    // Answers keep coming: the deadline is for the next one.
                    deadline = tokio::time::Instant::now() + timeout;
                }
                let fail = |error: String| Failed {
                    delivered: done,
                    error,
                };
                match tokio::time::timeout_at(deadline, arrived.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(fail("the acknowledgement reader stopped".into())),
                    Err(_) => {
                        return Err(fail(format!(
                            "JetStream did not acknowledge seq {waiting_for} within {timeout:?}"
                        )))
                    }
                }
            }
        }
    }
}

/// A JetStream publish reply: `{"stream":..,"seq":..,"duplicate":true}` or `{"error":{..}}`.
#[derive(Deserialize)]
struct Reply {
    seq: Option<u64>,
    #[serde(default)]
    duplicate: bool,
    error: Option<ReplyError>,
}

#[derive(Deserialize)]
struct ReplyError {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    description: String,
}

fn answer(reply: &Message) -> Ack {
    if let Some(status) = reply.status {
        // 503: no stream takes this subject (nobody answered the publish).
        return Ack::Refused(match status.as_u16() {
            503 => "no JetStream stream takes this subject".to_string(),
            code => format!(
                "status {code} {}",
                reply.description.as_deref().unwrap_or("")
            ),
        });
    }
    match serde_json::from_slice::<Reply>(&reply.payload) {
        Ok(Reply { error: Some(e), .. }) => {
            Ack::Refused(format!("{} (code {})", e.description, e.code))
        }
        Ok(Reply {
            seq: Some(_),
            duplicate,
            ..
        }) => Ack::Stored { duplicate },
        _ => Ack::Refused(format!(
            "not a publish acknowledgement: {}",
            String::from_utf8_lossy(&reply.payload[..reply.payload.len().min(200)])
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(payload: &str) -> Message {
        Message {
            subject: "_INBOX.x.7".into(),
            reply: None,
            payload: payload.to_string().into(),
            headers: None,
            status: None,
            description: None,
            length: payload.len(),
        }
    }

    #[test]
    fn jetstream_replies_are_read_as_stored_duplicate_or_refused() {
        assert_eq!(
            answer(&reply(r#"{"stream":"S","seq":12}"#)),
            Ack::Stored { duplicate: false }
        );
        assert_eq!(
            answer(&reply(r#"{"stream":"S","seq":12,"duplicate":true}"#)),
            Ack::Stored { duplicate: true }
        );
        let refused = answer(&reply(
            r#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}"#,
        ));
        assert_eq!(
            refused,
            Ack::Refused("maximum messages exceeded (code 503)".into())
        );
        assert!(matches!(answer(&reply("+OK")), Ack::Refused(_)));
        let mut no_stream = reply("");
        no_stream.status = Some(async_nats::StatusCode::NO_RESPONDERS);
        assert_eq!(
            answer(&no_stream),
            Ack::Refused("no JetStream stream takes this subject".into())
        );
    }
}
