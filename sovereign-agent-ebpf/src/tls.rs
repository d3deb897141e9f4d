//! The start of each watched TCP connection, for user space to read the TLS server name
//! (SNI) from. A connection whose first payload byte is a TLS handshake record (0x16) has its
//! first segments copied, each with its TCP sequence number, until the ClientHello record is
//! complete (its length is in its 5-byte header), 2048 bytes are covered, or
//! [`TLS_HELLO_MAX_SEGMENTS`] segments were copied: a ClientHello split into tiny segments is
//! still found, and one split into more pieces than that is reported as unreadable by user
//! space, not silently missed. Any other first byte ends the examination at once, and every
//! later packet of the connection costs one map lookup.
use aya_ebpf::{helpers::generated::bpf_get_socket_cookie, programs::SkBuffContext};
use sovereign_agent_common::{RecordKind, PACKET_DATA_LEN, TLS_HELLO_MAX_SEGMENTS};

use crate::{
    maps::{HelloState, HELLO_DONE, TLS_HELLO},
    packet::{submit_payload, Headers},
};

const TLS_HANDSHAKE: u8 = 0x16;
const RECORD_HEADER: u32 = 5;

#[inline(always)]
pub fn on_segment(ctx: &SkBuffContext, h: &Headers) {
    // SAFETY: the helper accepts the skb context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) };
    let Some(state) = TLS_HELLO.get_ptr_mut(cookie) else {
        first_segment(ctx, h, cookie);
        return;
    };
    // SAFETY: pointer into the map value, valid for this program run.
    let state = unsafe { &mut *state };
    if state.segments == HELLO_DONE {
        return;
    }
    let offset = h.tcp_seq.wrapping_sub(state.first_seq);
    if offset >= state.wanted {
        state.segments = HELLO_DONE; // past the ClientHello: the rest is not ours to read
        return;
    }
    // The record's length field is stream bytes 3 and 4: learn it from the segment that has
    // them when the first segment was shorter than the record header.
    if state.wanted == PACKET_DATA_LEN as u32
        && offset <= 3
        && offset + h.payload_len >= RECORD_HEADER
    {
        if let Ok(len) = ctx.load::<[u8; 2]>((h.payload_off + 3 - offset) as usize) {
            state.wanted = wanted(len);
        }
    }
    submit(ctx, h);
    state.segments += 1;
    if state.segments >= TLS_HELLO_MAX_SEGMENTS || offset + h.payload_len >= state.wanted {
        state.segments = HELLO_DONE;
    }
}

#[inline(always)]
fn first_segment(ctx: &SkBuffContext, h: &Headers, cookie: u64) {
    let mut state = HelloState {
        first_seq: h.tcp_seq,
        wanted: PACKET_DATA_LEN as u32,
        segments: HELLO_DONE,
        _pad: 0,
    };
    let Ok(first) = ctx.load::<u8>(h.payload_off as usize) else {
        let _ = TLS_HELLO.insert(cookie, state, 0);
        return;
    };
    if first == TLS_HANDSHAKE {
        if h.payload_len >= RECORD_HEADER {
            if let Ok(len) = ctx.load::<[u8; 2]>((h.payload_off + 3) as usize) {
                state.wanted = wanted(len);
            }
        }
        submit(ctx, h);
        if h.payload_len < state.wanted {
            state.segments = 1;
        }
    }
    let _ = TLS_HELLO.insert(cookie, state, 0);
}

/// Stream bytes of a record whose length field is `len`, at most what a record carries.
#[inline(always)]
fn wanted(len: [u8; 2]) -> u32 {
    let total = RECORD_HEADER + u32::from(u16::from_be_bytes(len));
    if total > PACKET_DATA_LEN as u32 {
        PACKET_DATA_LEN as u32
    } else {
        total
    }
}

#[inline(always)]
fn submit(ctx: &SkBuffContext, h: &Headers) {
    submit_payload(
        ctx,
        RecordKind::TlsClientHello as u32,
        h,
        &h.dst,
        h.dst_port,
        h.src_port,
    );
}
