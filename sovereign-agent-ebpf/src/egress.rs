//! cgroup_skb/egress: what leaves a watched socket and names a destination. DNS queries and
//! answers go to [`crate::dns`], the first payload of TCP connections to [`crate::tls`].
//! Every packet is allowed.
use aya_ebpf::{macros::cgroup_skb, programs::SkBuffContext};
use sovereign_agent_common::IPPROTO_TCP;

use crate::packet::parse;

#[cgroup_skb(egress)]
pub fn names_egress(ctx: SkBuffContext) -> i32 {
    let Some(h) = parse(&ctx) else { return 1 };
    if h.payload_len == 0 {
        return 1;
    }
    if !crate::dns::on_egress(&ctx, &h) && h.protocol == IPPROTO_TCP {
        crate::tls::on_segment(&ctx, &h);
    }
    1 // allow
}
