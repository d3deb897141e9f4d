//! The sink types behind one interface: connect, deliver a batch (returning once the
//! receiver acknowledged it, or how far it got), disconnect.
use sovereign_agent_proto::agent::v1 as pb;

use super::{
    driver::Failed, nats::NatsTransport, syslog::SyslogTransport, to_collector::CollectorTransport,
    webhook::WebhookTransport,
};

pub enum Transport {
    Collector(CollectorTransport),
    Nats(NatsTransport),
    // Boxed: its TLS state is large and a transport lives for the agent's life, so the
    // indirection costs nothing that matters.
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

    /// Delivers `events` (in journal order); `journal_head` is the journal's next sequence
    /// number now.
    pub async fn deliver(&mut self, events: &[pb::Event], journal_head: u64) -> Result<(), Failed> {
        match self {
            Transport::Collector(t) => t.deliver(events, journal_head).await,
            Transport::Nats(t) => t.deliver(events).await,
            Transport::Syslog(t) => t.deliver(events).await,
            Transport::Webhook(t) => t.deliver(events).await,
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
