//! The events the agent emits, one JSON object per line. Field names are a public contract
//! (docs/events.md): later stages, the journal and external tools rely on them.
//!
//! [`kind`] (kinds, protocol, family), [`flow`] (flow events and folded flows),
//! [`notices`] (loss, flood, refused answers), [`alert`], [`lifecycle`] (the agent's own
//! history); [`Event`] is any of them.
mod alert;
mod flow;
mod kind;
mod lifecycle;
mod notices;

use serde::Serialize;

pub use alert::*;
pub use flow::*;
pub use kind::*;
pub use lifecycle::*;
pub use notices::*;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event {
    Flow(Box<FlowEvent>),
    Loss(LossEvent),
    Lifecycle(Box<LifecycleEvent>),
    Alert(Box<AlertEvent>),
    DnsRefused(Box<DnsRefusedEvent>),
    Flood(Box<FloodEvent>),
}

impl Event {
    pub fn as_flow(&self) -> Option<&FlowEvent> {
        match self {
            Event::Flow(f) => Some(f),
            _ => None,
        }
    }

    /// Unix nanoseconds of the event.
    pub fn ts_unix_ns(&self) -> i64 {
        match self {
            Event::Flow(f) => f.ts_unix_ns,
            Event::Loss(l) => l.ts_unix_ns,
            Event::Lifecycle(l) => l.ts_unix_ns,
            Event::Alert(a) => a.ts_unix_ns,
            Event::DnsRefused(d) => d.ts_unix_ns,
            Event::Flood(f) => f.ts_unix_ns,
        }
    }
}

#[cfg(test)]
mod tests;
