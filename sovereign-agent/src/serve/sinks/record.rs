//! One journal record on its way to a sink: its sequence number, kind and time, and the
//! journal's encoding of the event, decoded only by a transport that needs the fields. The
//! `nats` sink's protobuf payload is that encoding with the agent's identity appended, so a
//! flow it publishes is never decoded nor encoded again: those two were half of its CPU per
//! event.
use prost::Message;
use sovereign_agent_proto::agent::v1 as pb;

use crate::journal::feed::{
    filter::{kind_of, EventFilter},
    peek::peek,
    stream::FromJournal,
};

pub struct Record {
    pub seq: u64,
    pub kind: &'static str,
    pub ts_unix_ns: i64,
    /// The `Event` as the journal holds it: without `seq` (its frame carries it).
    pub payload: Vec<u8>,
}

impl Record {
    /// The decoded event, with its `seq`. A record the journal's checksum accepted but that
    /// does not decode (written by a newer agent with a field of another type, say) is sent
    /// as an event with only its `seq` and time, named `unknown`, rather than held back
    /// forever (a receiver acknowledges in order).
    pub fn event(&self) -> pb::Event {
        let mut e = pb::Event::decode(&self.payload[..]).unwrap_or_else(|_| pb::Event {
            ts_unix_ns: self.ts_unix_ns,
            ..Default::default()
        });
        e.seq = self.seq;
        e
    }
}

/// What a sink's subscription yields.
pub enum SinkItem {
    Record(Record),
    /// Records deleted by retention before the sink delivered them.
    Missed(u64),
}

impl FromJournal for SinkItem {
    fn record(seq: u64, payload: &[u8], filter: &EventFilter) -> Option<Self> {
        let (kind, ts_unix_ns) = match peek(payload) {
            Some(p) if !filter.kind_matches(p.kind) => return None,
            // Only a filter on the flow's fields (verdict, workload, destination) needs the
            // event decoded.
            Some(p) if !filter.flow_conditions() => (p.kind, p.ts_unix_ns),
            _ => {
                let e = pb::Event::decode(payload).ok()?;
                if !filter.matches(&e) {
                    return None;
                }
                (kind_of(&e), e.ts_unix_ns)
            }
        };
        Some(SinkItem::Record(Record {
            seq,
            kind,
            ts_unix_ns,
            payload: payload.to_vec(),
        }))
    }

    fn missed(events: u64, _resumed_at_seq: u64) -> Self {
        SinkItem::Missed(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::Event,
        journal::{convert::to_proto, tests::sample_flow},
    };

    fn filter(f: pb::EventFilter) -> EventFilter {
        EventFilter::compile(&f).expect("filter")
    }

    #[test]
    fn a_record_matches_as_its_decoded_event_would() {
        let e = to_proto(&Event::Flow(Box::new(sample_flow(7))), 0);
        let payload = e.encode_to_vec();
        let by_kind = |kinds: &[&str]| pb::EventFilter {
            kinds: kinds.iter().map(ToString::to_string).collect(),
            ..Default::default()
        };
        let kind = kind_of(&e);
        for f in [
            by_kind(&[]),
            by_kind(&[kind]),
            by_kind(&["alert"]),
            by_kind(&["alert", kind]),
            pb::EventFilter {
                verdict: "violation".into(),
                ..Default::default()
            },
            pb::EventFilter {
                verdict: "allow".into(),
                ..Default::default()
            },
            pb::EventFilter {
                workload: "nothing-runs-this*".into(),
                ..Default::default()
            },
        ] {
            let f = filter(f);
            let item = SinkItem::record(9, &payload, &f);
            assert_eq!(item.is_some(), f.matches(&e), "{f:?}");
            if let Some(SinkItem::Record(r)) = item {
                assert_eq!((r.seq, r.kind, r.ts_unix_ns), (9, kind, e.ts_unix_ns));
                let mut wanted = e.clone();
                wanted.seq = 9;
                assert_eq!(r.event(), wanted);
            }
        }
    }

    #[test]
    fn a_record_that_does_not_decode_is_sent_as_unknown_not_held_back() {
        // A string field that is not UTF-8: the walk over the fields accepts it, the decoder
        // does not.
        // ts_unix_ns = 5, then agent_id = one byte 0xff.
        let payload = [0x10, 0x05, 0x1a, 0x01, 0xff];
        assert!(pb::Event::decode(&payload[..]).is_err());
        let item = SinkItem::record(3, &payload, &filter(Default::default()));
        let Some(SinkItem::Record(r)) = item else {
            panic!("dropped")
        };
        let e = r.event();
        assert_eq!((e.seq, e.ts_unix_ns, kind_of(&e)), (3, 5, "unknown"));
    }
}
