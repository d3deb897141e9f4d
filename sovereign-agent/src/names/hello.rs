//! A connection's ClientHello, put back together from the segments the kernel copied (each
//! with its TCP sequence number): a hello sent in 1-byte or 5-byte pieces is read like one
//! sent whole. Segments may repeat (retransmissions) or come out of order.
use std::num::NonZeroUsize;

use lru::LruCache;
use sovereign_agent_common::{PACKET_DATA_LEN, TLS_HELLO_MAX_SEGMENTS};

use super::sni::{self, SniError};

/// What a connection's first payload said about its server name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hello {
    /// Not complete yet: more segments are expected.
    Pending,
    /// A ClientHello with this server name.
    Name(String),
    /// A complete ClientHello without a server name.
    NoName,
    /// It started as a TLS handshake but could not be read: cut into more segments than the
    /// kernel copies, malformed, or larger than a record copy holds.
    Unreadable(&'static str),
}

struct Assembly {
    first_seq: u32,
    buf: Vec<u8>,
    /// Bytes known at each offset of `buf` (a bitmap would be smaller; hellos are small).
    have: Vec<bool>,
    segments: u32,
}

pub struct HelloAssembler {
    pending: LruCache<u64, Assembly>,
}

impl HelloAssembler {
    pub fn new(connections: NonZeroUsize) -> Self {
        Self {
            pending: LruCache::new(connections),
        }
    }

    /// Adds the segment `data` (starting at `seq`) of the connection `cookie`. The first
    /// segment of a connection the kernel copies is the start of its payload.
    pub fn add(&mut self, cookie: u64, seq: u32, data: &[u8]) -> Hello {
        if !self.pending.contains(&cookie) {
            self.pending.put(
                cookie,
                Assembly {
                    first_seq: seq,
                    buf: Vec::new(),
                    have: Vec::new(),
                    segments: 0,
                },
            );
        }
        let a = self.pending.get_mut(&cookie).expect("just inserted");
        a.segments += 1;
        let offset = seq.wrapping_sub(a.first_seq) as usize;
        if offset < PACKET_DATA_LEN {
            let end = (offset + data.len()).min(PACKET_DATA_LEN);
            if a.buf.len() < end {
                a.buf.resize(end, 0);
                a.have.resize(end, false);
            }
            a.buf[offset..end].copy_from_slice(&data[..end - offset]);
            a.have[offset..end].iter_mut().for_each(|h| *h = true);
        }
        let contiguous = a.have.iter().position(|h| !h).unwrap_or(a.have.len());
        // The record's end, from its header: "no server name" is an answer only once every
        // byte of the record is here (a hello cut right after its compression methods would
        // otherwise read as one without extensions).
        let record_end = match a.buf.get(3..5) {
            Some(len) if contiguous >= 5 => {
                (5 + usize::from(u16::from_be_bytes([len[0], len[1]]))).min(PACKET_DATA_LEN)
            }
            _ => PACKET_DATA_LEN,
        };
        let result = match sni::server_name(&a.buf[..contiguous]) {
            Ok(Some(name)) => Hello::Name(name),
            Ok(None) if contiguous >= record_end => Hello::NoName,
            Ok(None) if a.segments >= TLS_HELLO_MAX_SEGMENTS => {
                Hello::Unreadable("split into more segments than are copied")
            }
            Ok(None) => Hello::Pending,
            Err(SniError::Truncated(_)) if contiguous >= PACKET_DATA_LEN => {
                Hello::Unreadable("server name beyond the bytes copied")
            }
            Err(SniError::Truncated(_)) if a.segments >= TLS_HELLO_MAX_SEGMENTS => {
                Hello::Unreadable("split into more segments than are copied")
            }
            Err(SniError::Truncated(_)) => Hello::Pending,
            Err(SniError::NotClientHello) if contiguous < 6 => Hello::Pending,
            Err(SniError::NotClientHello) => Hello::Unreadable("not a ClientHello"),
            Err(SniError::Malformed(why)) => Hello::Unreadable(why),
        };
        if result != Hello::Pending {
            self.pending.pop(&cookie);
        }
        result
    }

    /// The connection ended (or was connected anew): its unfinished hello, if any.
    pub fn finish(&mut self, cookie: u64) -> Option<Hello> {
        self.pending
            .pop(&cookie)
            .map(|_| Hello::Unreadable("connection ended before the ClientHello was complete"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::sni::tests::client_hello;

    fn feed(hello: &[u8], sizes: impl Fn(usize) -> usize, order: &[usize]) -> Hello {
        let mut pieces = Vec::new();
        let mut at = 0;
        while at < hello.len() {
            let n = sizes(pieces.len()).min(hello.len() - at);
            pieces.push((at, &hello[at..at + n]));
            at += n;
        }
        let mut a = HelloAssembler::new(NonZeroUsize::new(8).unwrap());
        let base = 0xffff_fff0u32; // sequence numbers wrap
        let mut last = Hello::Pending;
        for i in order.iter().copied().chain(0..pieces.len()) {
            let Some((off, data)) = pieces.get(i) else {
                continue;
            };
            last = a.add(7, base.wrapping_add(*off as u32), data);
            if last != Hello::Pending {
                break;
            }
        }
        last
    }

    #[test]
    fn whole_one_byte_and_five_byte_first_segments() {
        let hello = client_hello(Some("llm.sovereign.example"), 3);
        let name = Hello::Name("llm.sovereign.example".into());
        assert_eq!(feed(&hello, |_| 4096, &[]), name);
        // First segment 1 byte, then the rest.
        assert_eq!(feed(&hello, |i| if i == 0 { 1 } else { 4096 }, &[]), name);
        // First segment the 5-byte record header, then the rest.
        assert_eq!(feed(&hello, |i| if i == 0 { 5 } else { 4096 }, &[]), name);
        // Every segment 4 bytes: more pieces than the kernel copies.
        assert!(hello.len() > 4 * TLS_HELLO_MAX_SEGMENTS as usize);
        assert!(matches!(feed(&hello, |_| 4, &[]), Hello::Unreadable(_)));
    }

    #[test]
    fn a_cut_after_the_compression_methods_is_not_taken_for_no_name() {
        let hello = client_hello(Some("api.openai.com"), 2);
        // 5 (record) + 4 (handshake) + 2 + 32 (version, random) + 33 (session id)
        // + 6 (suites) + 2 (compression): the extensions start here.
        let cut = 5 + 4 + 2 + 32 + 33 + 6 + 2;
        assert_eq!(sni::server_name(&hello[..cut]), Ok(None), "the trap");
        assert_eq!(
            feed(&hello, |i| if i == 0 { cut } else { 4096 }, &[]),
            Hello::Name("api.openai.com".into())
        );
    }

    #[test]
    fn retransmitted_and_reordered_segments() {
        let hello = client_hello(Some("api.openai.com"), 1);
        let name = Hello::Name("api.openai.com".into());
        // Pieces 0, 2 then 1 (out of order), then the rest in order (0 repeats).
        assert_eq!(
            feed(&hello, |i| if i < 3 { 3 } else { 4096 }, &[0, 2, 1, 0]),
            name
        );
    }

    #[test]
    fn other_first_bytes_and_malformed_hellos_are_unreadable() {
        let mut a = HelloAssembler::new(NonZeroUsize::new(8).unwrap());
        assert!(matches!(
            a.add(1, 0, b"\x16\x03\x01\x00\x10\x02hello server"),
            Hello::Unreadable(_)
        ));
        assert_eq!(a.add(2, 0, b"\x16"), Hello::Pending);
        assert!(matches!(a.finish(2), Some(Hello::Unreadable(_))));
        assert_eq!(a.finish(2), None);
        assert_eq!(a.add(3, 9, &client_hello(None, 2)), Hello::NoName);
    }
}
