//! cgroup/sock_release: a UDP socket that sent unconnected datagrams is closed. The record
//! tells user space to collect that socket's folded counts from `UDP_SENDS`.
use aya_ebpf::{
    helpers::generated::bpf_get_socket_cookie, macros::cgroup_sock, programs::SockContext,
};
use sovereign_agent_common::{RecordKind, IPPROTO_UDP};

use crate::{
    emit::{current_owner, record, submit},
    maps::UDP_SOCKETS,
};

#[cgroup_sock(sock_release)]
pub fn sock_release(ctx: SockContext) -> i32 {
    // Only UDP sockets are in UDP_SOCKETS (the kernel resolves a protocol of 0 to 17): every
    // TCP socket's release returns here, without a cookie and a map lookup.
    // SAFETY: context field of bpf_sock.
    if unsafe { (*ctx.sock).protocol } != u32::from(IPPROTO_UDP) {
        return 1;
    }
    // SAFETY: the helper accepts a cgroup_sock context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock.cast()) };
    // SAFETY: only the presence of the key matters.
    if unsafe { UDP_SOCKETS.get(cookie) }.is_some() {
        let _ = UDP_SOCKETS.remove(cookie);
        let mut rec = record(RecordKind::UdpRelease as u32, &current_owner());
        rec.protocol = IPPROTO_UDP;
        rec.cookie = cookie;
        submit(&rec);
    }
    1
}
