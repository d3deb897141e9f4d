//! cgroup_skb/ingress: DNS responses (UDP or TCP, source port 53, IPv4 or IPv6, including a
//! local stub resolver on 127.0.0.53) arriving for a watched socket are copied for user space
//! to parse. Everything else passes untouched.
use aya_ebpf::{macros::cgroup_skb, programs::SkBuffContext};
use sovereign_agent_common::RecordKind;

use crate::packet::{parse, submit_payload};

const DNS_PORT: u16 = 53;

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
