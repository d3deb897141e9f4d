//! The `collector` sink: `sovereign-collector`'s Push stream (mutual TLS). Each batch is
//! acknowledged with the highest sequence number of this journal the collector holds.
use sovereign_agent_proto::collector::v1::{
    collector_service_client::CollectorServiceClient, PushAck, PushRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::config::CollectorSink;
use futures_util::FutureExt;

use crate::serve::sinks::{
    record::Record,
    transport::{answered, Acknowledgement, Failed, Pending, Transport},
};

pub struct CollectorTransport {
    config: CollectorSink,
    journal_id: String,
    stream: Option<(mpsc::Sender<PushRequest>, tonic::Streaming<PushAck>)>,
}

impl CollectorTransport {
    pub fn new(config: CollectorSink, journal_id: String) -> Self {
        CollectorTransport {
            config,
            journal_id,
            stream: None,
        }
    }

    pub async fn connect(&mut self) -> Result<(), String> {
        let c = &self.config;
        let channel = crate::serve::tls::tls_channel(&c.url, &c.ca, &c.cert, &c.key).await?;
        let mut client = CollectorServiceClient::new(channel);
        let (tx, rx) = mpsc::channel::<PushRequest>(2);
        let acks = client
            .push(ReceiverStream::new(rx))
            .await
            .map_err(|s| format!("collector refused the push: {}", s.message()))?
            .into_inner();
        self.stream = Some((tx, acks));
        Ok(())
    }

    pub fn disconnect(&mut self) {
        self.stream = None;
    }

    pub async fn deliver(&mut self, events: &[Record], journal_head: u64) -> Result<(), Failed> {
        let (tx, acks) = self
            .stream
            .as_mut()
            .ok_or_else(|| Failed::none("not connected"))?;
        let last = events.last().map_or(0, |e| e.seq);
        let request = PushRequest {
            events: events.iter().map(Record::event).collect(),
            journal_id: self.journal_id.clone(),
            journal_next_seq: journal_head,
        };
        if tx.send(request).await.is_err() {
            return Err(Failed::none("the collector closed the stream"));
        }
        let ack = match acks.message().await {
            Ok(Some(ack)) => ack,
            Ok(None) => return Err(Failed::none("the collector ended the stream")),
            Err(s) => return Err(Failed::none(format!("collector: {}", s.message()))),
        };
        check_ack(ack.acked_seq, last, journal_head).map_err(Failed::none)
    }
}

/// Whether an acknowledgement covers a batch ending at `last` and is believable: the
/// collector may hold more of this journal than the batch (a re-send after a lost
/// acknowledgement), but never more than this journal ever wrote. An ack beyond the head
/// means someone pushed under this agent's certificate and journal id: the batch was dropped
/// as duplicates, so it is an error, not a delivery.
fn check_ack(acked: u64, last: u64, journal_head: u64) -> Result<(), String> {
    if acked >= journal_head {
        return Err(format!(
            "the collector claims to hold seq {acked} of this journal, whose head is {journal_head}: \
             it holds records this journal never wrote (pushed with this agent's certificate \
             and journal id by someone else?); the batch up to seq {last} was not stored"
        ));
    }
    if acked < last {
        return Err(format!(
            "the collector acknowledged up to seq {acked}, not the batch up to {last}"
        ));
    }
    Ok(())
}

impl Transport for CollectorTransport {
    fn connect(&mut self) -> Pending<'_, Result<(), String>> {
        Box::pin(CollectorTransport::connect(self))
    }

    fn send<'a>(
        &'a mut self,
        events: &'a [Record],
        journal_head: u64,
    ) -> Pending<'a, Acknowledgement> {
        Box::pin(self.deliver(events, journal_head).map(answered))
    }

    fn disconnect(&mut self) {
        CollectorTransport::disconnect(self);
    }
}

#[cfg(test)]
mod tests {
    use super::check_ack;

    #[test]
    fn an_ack_beyond_the_journal_head_is_an_error_not_a_delivery() {
        assert!(check_ack(20, 20, 21).is_ok());
        // A re-send: the collector already had more of this journal.
        assert!(check_ack(25, 20, 30).is_ok());
        // Forged: the collector holds a seq this journal never wrote.
        let e = check_ack(u64::MAX, 20, 30).unwrap_err();
        assert!(e.contains("never wrote"), "{e}");
        assert!(check_ack(19, 20, 30).is_err());
    }
}
