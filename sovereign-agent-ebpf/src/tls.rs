//! cgroup_skb/egress: the first payload of each watched TCP connection is examined once;
//! when it looks like a TLS ClientHello (record type 22, version 3.x, handshake type 1) it is
//! copied for user space to read the server name (SNI) from.
use aya_ebpf::{
    bindings::__sk_buff, helpers::generated::bpf_get_socket_cookie, macros::cgroup_skb,
    programs::SkBuffContext,
};
use sovereign_agent_common::{RecordKind, IPPROTO_TCP};

use crate::{
    maps::TLS_SEEN,
    packet::{parse, submit_payload},
};

#[cgroup_skb(egress)]
pub fn tls_egress(ctx: SkBuffContext) -> i32 {
    let Some(h) = parse(&ctx) else { return 1 };
    if h.protocol != IPPROTO_TCP || h.payload_len < 6 {
        return 1;
    }
    // SAFETY: the helper accepts the skb context.
    let cookie = unsafe { bpf_get_socket_cookie((ctx.skb.skb as *mut __sk_buff).cast()) };
    // Only the connection's first payload: one map lookup per later packet, nothing more.
    // SAFETY: only presence matters.
    if unsafe { TLS_SEEN.get(&cookie) }.is_some() {
        return 1;
    }
    let _ = TLS_SEEN.insert(&cookie, &1u8, 0);
    let Ok(head) = ctx.load::<[u8; 6]>(h.payload_off as usize) else {
        return 1;
    };
    if head[0] == 0x16 && head[1] == 0x03 && head[5] == 0x01 {
        submit_payload(
            &ctx,
            RecordKind::TlsClientHello as u32,
            &h,
            &h.dst,
            h.dst_port,
            h.src_port,
        );
    }
    1 // allow
}
