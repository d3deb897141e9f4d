//! What an encoded journal record is (its kind and time) without decoding it: a walk over the
//! protobuf fields that allocates nothing. A subscriber that wants alerts reads a journal
//! that is mostly flows; decoding each flow (a dozen strings) only to drop it was most of an
//! alert sink's CPU. The decoded event is still what is judged when the kind matches.
use prost::{
    bytes::Buf,
    encoding::{decode_key, decode_varint, WireType},
};

use super::filter::{flow_kind_name, lifecycle_kind_name};

/// The top level of an encoded `Event`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peeked {
    /// As [`super::filter::kind_of`] names it.
    pub kind: &'static str,
    pub ts_unix_ns: i64,
}

/// `Event` field numbers (proto/sovereign/agent/v1/events.proto).
const TS_UNIX_NS: u32 = 2;
const FLOW: u32 = 10;
const LOSS: u32 = 11;
const LIFECYCLE: u32 = 12;
const ALERT: u32 = 13;
const DNS_REFUSED: u32 = 14;
const FLOOD: u32 = 15;
/// `Flow.kind`.
const FLOW_KIND: u32 = 1;
/// The members of `Lifecycle.kind`.
const LIFECYCLE_KINDS: std::ops::RangeInclusive<u32> = 1..=6;

/// The kind and time of the `Event` in `payload`; None if it is not well-formed protobuf (the
/// caller decodes it, and reports what the decoder says).
pub fn peek(mut payload: &[u8]) -> Option<Peeked> {
    let buf = &mut payload;
    let mut ts_unix_ns = 0;
    let mut kind = "unknown";
    // The flow kind so far: protobuf merges repeated occurrences of a message field, so the
    // kind of several `flow` fields in a row is the last one set.
    let mut flow_kind = 0;
    while buf.has_remaining() {
        let (tag, wire) = decode_key(buf).ok()?;
        match (tag, wire) {
            (TS_UNIX_NS, WireType::Varint) => ts_unix_ns = decode_varint(buf).ok()? as i64,
            (FLOW..=FLOOD, WireType::LengthDelimited) => {
                let body = length_delimited(buf)?;
                if tag != FLOW {
                    // A different member of the `body` oneof replaces a flow.
                    flow_kind = 0;
                }
                kind = match tag {
                    FLOW => {
                        if let Some(k) = last_varint(body, FLOW_KIND)? {
                            flow_kind = k as i32;
                        }
                        flow_kind_name(flow_kind)
                    }
                    LOSS => "loss",
                    LIFECYCLE => match last_field(body, LIFECYCLE_KINDS)? {
                        Some(field) => lifecycle_kind_name(field),
                        // An empty lifecycle merged over another keeps that one's kind.
                        None if kind_is_lifecycle(kind) => kind,
                        None => "unknown",
                    },
                    ALERT => "alert",
                    DNS_REFUSED => "dns_refused",
                    _ => "flood",
                };
            }
            _ => skip(buf, wire)?,
        }
    }
    Some(Peeked { kind, ts_unix_ns })
}

fn kind_is_lifecycle(kind: &str) -> bool {
    LIFECYCLE_KINDS
        .clone()
        .any(|f| lifecycle_kind_name(f) == kind)
}

/// The bytes of a length-delimited field, the reader moved past them.
fn length_delimited<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(decode_varint(buf).ok()?).ok()?;
    if len > buf.len() {
        return None;
    }
    let (field, rest) = buf.split_at(len);
    *buf = rest;
    Some(field)
}

/// The last value of varint field `want` in message `body` (None inside: not present).
fn last_varint(mut body: &[u8], want: u32) -> Option<Option<u64>> {
    let buf = &mut body;
    let mut found = None;
    while buf.has_remaining() {
        let (tag, wire) = decode_key(buf).ok()?;
        if tag == want && wire == WireType::Varint {
            found = Some(decode_varint(buf).ok()?);
        } else {
            skip(buf, wire)?;
        }
    }
    Some(found)
}

/// The number of the last field of `members` in message `body` (a oneof: the last one set
/// wins; fields the schema does not know are skipped, as the decoder does).
fn last_field(mut body: &[u8], members: std::ops::RangeInclusive<u32>) -> Option<Option<u32>> {
    let buf = &mut body;
    let mut last = None;
    while buf.has_remaining() {
        let (tag, wire) = decode_key(buf).ok()?;
        skip(buf, wire)?;
        if members.contains(&tag) {
            last = Some(tag);
        }
    }
    Some(last)
}

fn skip(buf: &mut &[u8], wire: WireType) -> Option<()> {
    let n = match wire {
        WireType::Varint => return decode_varint(buf).ok().map(drop),
        WireType::SixtyFourBit => 8,
        WireType::ThirtyTwoBit => 4,
        WireType::LengthDelimited => return length_delimited(buf).map(drop),
        // Groups are not in this schema: whatever holds one is left to the decoder.
        WireType::StartGroup | WireType::EndGroup => return None,
    };
    if buf.len() < n {
        return None;
    }
    buf.advance(n);
    Some(())
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use sovereign_agent_proto::agent::v1 as pb;

    use super::*;
    use crate::{
        event::Event,
        journal::feed::filter::kind_of,
        journal::{convert::to_proto, tests::sample_flow},
    };

    fn lifecycle(kind: pb::lifecycle::Kind) -> pb::event::Body {
        pb::event::Body::Lifecycle(pb::Lifecycle { kind: Some(kind) })
    }

    /// One event of every kind, and some with defaults left out of the encoding.
    fn every_kind() -> Vec<pb::Event> {
        use pb::lifecycle::Kind;
        let flow = |kind: i32| {
            let mut e = to_proto(&Event::Flow(Box::new(sample_flow(3))), 0);
            if let Some(pb::event::Body::Flow(f)) = &mut e.body {
                f.kind = kind;
            }
            e
        };
        let mut events: Vec<pb::Event> = (0..=7).map(flow).collect();
        let bodies = [
            pb::event::Body::Loss(Default::default()),
            pb::event::Body::Alert(Box::default()),
            pb::event::Body::DnsRefused(Default::default()),
            pb::event::Body::Flood(Default::default()),
            pb::event::Body::Lifecycle(Default::default()),
            lifecycle(Kind::Start(Default::default())),
            lifecycle(Kind::Stop(Default::default())),
            lifecycle(Kind::Policy(Default::default())),
            lifecycle(Kind::Retention(Default::default())),
            lifecycle(Kind::Recovered(Default::default())),
            lifecycle(Kind::Gap(Default::default())),
        ];
        events.extend(bodies.into_iter().map(|b| pb::Event {
            ts_unix_ns: -5,
            body: Some(b),
            ..Default::default()
        }));
        events.push(pb::Event::default());
        events
    }

    #[test]
    fn a_peek_names_every_kind_and_time_as_the_decoder_does() {
        for e in every_kind() {
            let bytes = e.encode_to_vec();
            let peeked = peek(&bytes).expect("well-formed");
            assert_eq!(peeked.kind, kind_of(&e), "{e:?}");
            assert_eq!(peeked.ts_unix_ns, e.ts_unix_ns, "{e:?}");
        }
    }

    #[test]
    fn concatenated_events_peek_as_the_decoder_merges_them() {
        // Protobuf merges a message sent in pieces: the later body wins, a later flow piece
        // without a kind keeps the earlier kind.
        let events = every_kind();
        let kindless_flow = pb::Event {
            body: Some(pb::event::Body::Flow(Box::default())),
            ..Default::default()
        };
        for a in &events {
            for b in events.iter().chain([&kindless_flow]) {
                let mut bytes = a.encode_to_vec();
                b.encode_raw(&mut bytes);
                let merged = pb::Event::decode(&bytes[..]).expect("decodes");
                let peeked = peek(&bytes).expect("well-formed");
                assert_eq!(peeked.kind, kind_of(&merged), "{a:?} then {b:?}");
                assert_eq!(peeked.ts_unix_ns, merged.ts_unix_ns);
            }
        }
    }

    #[test]
    fn a_damaged_record_is_left_to_the_decoder() {
        let bytes = every_kind()[1].encode_to_vec();
        for cut in 1..bytes.len() {
            let peeked = peek(&bytes[..cut]);
            if peeked.is_some() {
                // Cut at a field boundary: then the decoder reads it too, the same way.
                let e = pb::Event::decode(&bytes[..cut]).expect("a field boundary decodes");
                assert_eq!(peeked.map(|p| p.kind), Some(kind_of(&e)));
            }
        }
    }
}
