//! Events to and from their protobuf form (`sovereign.agent.v1.Event`), the journal's
//! record encoding. Decoding gives back exactly the event that was written, so `journal
//! export` prints the same JSON as the live output.
//!
//! [`to_proto`](mod@to_proto) and [`from_proto`](mod@from_proto) convert whole messages; [`wire`] encodes flows, the hot
//! path, straight from the event; [`view`] reads flows back as borrowed views for replay and
//! export. All of them produce and read the same bytes.

use prost::Message;
use sovereign_agent_proto::agent::v1 as pb;

mod error;
mod from_proto;
#[cfg(test)]
mod tests;
mod to_proto;
mod varint;
mod view;
mod wire;

pub use error::ConvertError;
pub use from_proto::from_proto;
pub use to_proto::to_proto;
pub use view::{flow_view, record_agent, FlowView, VerdictView};

use varint::varint;
use wire::encode_flow_event;

use crate::event::Event;

/// Encodes `event` (its `seq` is the frame's, not stored here) into `out`.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    match event {
        Event::Flow(f) => encode_flow_event(f, out),
        other => to_proto(other, 0)
            .encode(out)
            .expect("a Vec grows as needed"),
    }
}

pub fn decode(payload: &[u8]) -> Result<Event, ConvertError> {
    from_proto(pb::Event::decode(payload)?)
}

/// Whether a record's payload is a lifecycle record, without decoding it: the top-level
/// field numbers are scanned (verification needs retention records only, and must be fast).
pub fn is_lifecycle(payload: &[u8]) -> bool {
    let mut b = payload;
    while !b.is_empty() {
        let Some((key, rest)) = varint(b) else {
            return false;
        };
        let (field, wire) = (key >> 3, key & 7);
        if field == 12 {
            return true;
        }
        b = match wire {
            0 => match varint(rest) {
                Some((_, r)) => r,
                None => return false,
            },
            1 => rest.get(8..).unwrap_or(&[]),
            2 => match varint(rest) {
                Some((len, r)) => r.get(len as usize..).unwrap_or(&[]),
                None => return false,
            },
            5 => rest.get(4..).unwrap_or(&[]),
            _ => return false,
        };
    }
    false
}
