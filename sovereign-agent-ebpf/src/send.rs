//! cgroup/sendmsg4 and cgroup/sendmsg6: datagrams sent with an explicit destination
//! (unconnected UDP: DNS, QUIC, ...). The first datagram of each (socket, destination) pair is
//! reported; the rest are only counted in `UDP_SENDS`, so a flood cannot flood the ring buffer.
use aya_ebpf::{
    helpers::generated::bpf_get_socket_cookie, macros::cgroup_sock_addr, programs::SockAddrContext,
};
use sovereign_agent_common::{
    RecordKind, SendKey, SendTally, AF_INET, AF_INET6, BUDGET_CLASS_OTHER, IPPROTO_UDP,
    SUPPRESSED_UDP,
};

use crate::{
    budget::{admit_task, Suppressed},
    connect::{decide, destination, note_dns_netns, transport, ALLOW, REFUSE},
    emit::{current_owner, record, submit},
    maps::{UDP_SENDS, UDP_SOCKETS},
};

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    if let Some(rule) = decide(&ctx, AF_INET) {
        on_refused_datagram(&ctx, AF_INET, rule);
        return REFUSE;
    }
    on_sendmsg(&ctx, AF_INET);
    ALLOW
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    if let Some(rule) = decide(&ctx, AF_INET6) {
        on_refused_datagram(&ctx, AF_INET6, rule);
        return REFUSE;
    }
    on_sendmsg(&ctx, AF_INET6);
    ALLOW
}

/// Each refused datagram is a record, within the workload's budget (never folded into the
/// socket's sends: nothing was sent).
#[inline(always)]
fn on_refused_datagram(ctx: &SockAddrContext, family: u16, rule: u32) {
    if transport(ctx) != Some(IPPROTO_UDP) {
        return;
    }
    // SAFETY: the helper accepts a cgroup_sock_addr context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    let (dst_addr, dst_port) = destination(ctx, family);
    let owner = current_owner();
    let suppressed = Suppressed {
        what: SUPPRESSED_UDP,
        family,
        addr: &dst_addr,
        port: dst_port,
    };
    if !admit_task(BUDGET_CLASS_OTHER, &owner, &suppressed) {
        return;
    }
    let mut rec = record(RecordKind::Refused as u32, &owner);
    rec.family = family;
    rec.protocol = IPPROTO_UDP;
    rec.cookie = cookie;
    rec.dst_addr = dst_addr;
    rec.dst_port = dst_port;
    rec.count = rule;
    submit(&rec);
}

#[inline(always)]
fn on_sendmsg(ctx: &SockAddrContext, family: u16) {
    if transport(ctx) != Some(IPPROTO_UDP) {
        return;
    }
    // SAFETY: the helper accepts a cgroup_sock_addr context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    let (dst_addr, dst_port) = destination(ctx, family);
    note_dns_netns(ctx, cookie, dst_port);
    let key = SendKey {
        cookie,
        dst_addr,
        dst_port,
        family,
        _pad: 0,
    };
    if let Some(tally) = UDP_SENDS.get_ptr_mut(key) {
        // SAFETY: pointer into the map value; a racing increment from another CPU may be
        // lost, which only undercounts a flood (the atomic add would need a newer verifier).
        unsafe { (*tally).count += 1 };
        return;
    }
    let owner = current_owner();
    let suppressed = Suppressed {
        what: SUPPRESSED_UDP,
        family,
        addr: &dst_addr,
        port: dst_port,
    };
    if !admit_task(BUDGET_CLASS_OTHER, &owner, &suppressed) {
        // Over budget: counted there, and not folded either (every later datagram to this
        // destination is judged against the budget again).
        return;
    }
    let _ = UDP_SENDS.insert(key, SendTally { count: 1 }, 0);
    let _ = UDP_SOCKETS.insert(cookie, 1u8, 0);

    let mut rec = record(RecordKind::Send as u32, &owner);
    rec.family = family;
    rec.protocol = IPPROTO_UDP;
    rec.cookie = cookie;
    rec.dst_addr = dst_addr;
    rec.dst_port = dst_port;
    rec.count = 1;
    submit(&rec);
}
