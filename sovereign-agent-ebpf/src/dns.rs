//! DNS in both directions, copied for user space to match: a name is learned only from an
//! answer to a query the same socket sent.
//!
//! - cgroup_skb/ingress: responses (UDP or TCP, source port 53, IPv4 or IPv6, including a
//!   local stub resolver on 127.0.0.53) arriving for a watched socket.
//! - from the egress program ([`crate::egress`]): queries (destination port 53) leaving a
//!   watched socket, and answers (source port 53) that a watched socket sends itself, i.e. a
//!   process of the watched cgroup acting as a DNS server.
//!
//! Everything else passes untouched.
use aya_ebpf::{macros::cgroup_skb, programs::SkBuffContext};
use sovereign_agent_common::RecordKind;

use crate::packet::{parse, submit_payload, Headers};

pub const DNS_PORT: u16 = 53;

#[cgroup_skb(ingress)]
pub fn dns_ingress(ctx: SkBuffContext) -> i32 {
    if let Some(h) = parse(&ctx) {
        if h.src_port == DNS_PORT && h.payload_len > 0 {
            submit_payload(
                &ctx,
                RecordKind::DnsResponse as u32,
                &h,
                &h.src,
                h.src_port,
                h.dst_port,
            );
        }
    }
    1 // allow
}

/// An outgoing packet with a payload: a query to port 53, or an answer from port 53. Returns
/// whether it was DNS.
#[inline(always)]
pub fn on_egress(ctx: &SkBuffContext, h: &Headers) -> bool {
    if h.dst_port == DNS_PORT {
        // peer: the server asked; local: the client's port (the answer's destination port).
        submit_payload(
            ctx,
            RecordKind::DnsQuery as u32,
            h,
            &h.dst,
            h.dst_port,
            h.src_port,
        );
        true
    } else if h.src_port == DNS_PORT {
        // Keyed like the response the client will receive: the server's address and port,
        // the client's port.
        submit_payload(
            ctx,
            RecordKind::DnsServed as u32,
            h,
            &h.src,
            h.src_port,
            h.dst_port,
        );
        true
    } else {
        false
    }
}
