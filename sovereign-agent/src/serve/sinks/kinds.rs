//! The sink types, one arm each: the [`Transport`] the driver delivers through. Adding a sink
//! type is its module and one arm here (and its configuration, in `config.rs`).
use super::{
    nats::NatsTransport, record::Record, syslog::SyslogTransport, to_collector::CollectorTransport,
    transport::Acknowledgement, webhook::WebhookTransport,
};

pub enum Transport {
    Collector(CollectorTransport),
    // Boxed, as the syslog one (its subjects and header template): a transport lives for
    // the agent's life, so the indirection costs nothing that matters.
    Nats(Box<NatsTransport>),
    // Boxed: its TLS state is large.
    Syslog(Box<SyslogTransport>),
    Webhook(WebhookTransport),
}

impl Transport {
    pub async fn connect(&mut self) -> Result<(), String> {
        match self {
            Transport::Collector(t) => t.connect().await,
            Transport::Nats(t) => t.connect().await,
            Transport::Syslog(t) => t.connect().await,
            Transport::Webhook(t) => t.connect(),
        }
    }

    /// Sends `events` (in journal order; `journal_head` is the journal's next sequence
    /// number now). A transport that pipelines returns once they are on their way; the others
    /// once the receiver answered (their acknowledgement is then ready).
    pub async fn send(&mut self, events: &[Record], journal_head: u64) -> Acknowledgement {
        let answered = match self {
            Transport::Nats(t) => return t.send(events).await,
            Transport::Collector(t) => t.deliver(events, journal_head).await,
            Transport::Syslog(t) => t.deliver(events).await,
            Transport::Webhook(t) => t.deliver(events).await,
        };
        Box::pin(std::future::ready(answered))
    }

    /// Batches that may be sent and not yet acknowledged.
    pub fn window(&self) -> usize {
        match self {
            Transport::Nats(t) => t.window(),
            _ => 1,
        }
    }

    pub fn disconnect(&mut self) {
        match self {
            Transport::Collector(t) => t.disconnect(),
            Transport::Nats(t) => t.disconnect(),
            Transport::Syslog(t) => t.disconnect(),
            Transport::Webhook(_) => {}
        }
    }
}
