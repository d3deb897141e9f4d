//! cgroup/connect4 and cgroup/connect6: every connect() of a TCP or UDP socket in the cgroup.
use aya_ebpf::{
    helpers::generated::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use sovereign_agent_common::{
    RecordKind, AF_INET, AF_INET6, BUDGET_CLASS_OTHER, BUDGET_CLASS_TCP, DNS_PORT, IPPROTO_TCP,
    IPPROTO_UDP, SUPPRESSED_TCP_CONNECT, SUPPRESSED_UDP,
};

use crate::{
    budget::{admit_connect, admit_task, Suppressed},
    emit::{current_owner, ipv4_bytes, ipv6_bytes, record, submit, submit_priority},
    enforce::refused,
    maps::{TcpSocket, DNS_NETNS, TCP_SOCKETS, TLS_HELLO},
};

const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    if let Some(rule) = decide(&ctx, AF_INET) {
        on_refused(&ctx, AF_INET, rule);
        return REFUSE;
    }
    on_connect(&ctx, AF_INET);
    ALLOW
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    if let Some(rule) = decide(&ctx, AF_INET6) {
        on_refused(&ctx, AF_INET6, rule);
        return REFUSE;
    }
    on_connect(&ctx, AF_INET6);
    ALLOW
}

/// What a cgroup sock_addr program returns: the call goes on, or fails with `EPERM`.
pub const ALLOW: i32 = 1;
pub const REFUSE: i32 = 0;

/// The enforce decision for a TCP or UDP socket's destination. The refused path and the
/// recording path are separate branches, so that their locals never share the frame:
/// connect6 is near the verifier's 512-byte limit (Linux 6.1 refused it when they did).
#[inline(always)]
pub fn decide(ctx: &SockAddrContext, family: u16) -> Option<u32> {
    transport(ctx)?;
    let (dst_addr, _) = destination(ctx, family);
    refused(family, &dst_addr)
}

/// Records a connect refused under the policy's rule `rule`, within the workload's budgets
/// like a connect; nothing is tracked (no connection follows).
#[inline(always)]
fn on_refused(ctx: &SockAddrContext, family: u16, rule: u32) {
    let Some(protocol) = transport(ctx) else {
        return;
    };
    let owner = current_owner();
    // SAFETY: the helper accepts a cgroup_sock_addr context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    let (dst_addr, dst_port) = destination(ctx, family);
    let tcp = protocol == IPPROTO_TCP;
    let suppressed = Suppressed {
        what: if tcp {
            SUPPRESSED_TCP_CONNECT
        } else {
            SUPPRESSED_UDP
        },
        family,
        addr: &dst_addr,
        port: dst_port,
    };
    let admitted = if tcp {
        admit_connect(&owner, protocol, &suppressed)
    } else {
        admit_task(BUDGET_CLASS_OTHER, &owner, &suppressed)
    };
    if !admitted {
        return;
    }
    let mut rec = record(RecordKind::Refused as u32, &owner);
    rec.family = family;
    rec.protocol = protocol;
    rec.cookie = cookie;
    rec.dst_addr = dst_addr;
    rec.dst_port = dst_port;
    rec.count = rule;
    if tcp {
        submit_priority(&rec);
    } else {
        submit(&rec);
    }
}

/// TCP or UDP from the socket type; other protocols (e.g. ICMP datagram sockets) are skipped.
#[inline(always)]
pub fn transport(ctx: &SockAddrContext) -> Option<u8> {
    // SAFETY: reading context fields the verifier allows for cgroup_sock_addr programs.
    let (sock_type, protocol) = unsafe { ((*ctx.sock_addr).type_, (*ctx.sock_addr).protocol) };
    match (sock_type, protocol as u8) {
        (SOCK_STREAM, 0 | IPPROTO_TCP) => Some(IPPROTO_TCP),
        (SOCK_DGRAM, 0 | IPPROTO_UDP) => Some(IPPROTO_UDP),
        _ => None,
    }
}

#[inline(always)]
pub fn destination(ctx: &SockAddrContext, family: u16) -> ([u8; 16], u16) {
    // SAFETY: context fields of cgroup_sock_addr; ports are stored in network byte order.
    unsafe {
        let sa = ctx.sock_addr;
        let port = u16::from_be(core::ptr::read_volatile(&(*sa).user_port) as u16);
        let addr = if family == AF_INET {
            ipv4_bytes(core::ptr::read_volatile(&(*sa).user_ip4))
        } else {
            ipv6_bytes((*sa).user_ip6.as_ptr())
        };
        (addr, port)
    }
}

/// Remembers which network namespace a socket asking port 53 is in: an answer from a loopback
/// resolver verifies only in the namespace the operator trusts.
#[inline(always)]
pub fn note_dns_netns(ctx: &SockAddrContext, cookie: u64, dst_port: u16) {
    if dst_port == DNS_PORT {
        // SAFETY: the helper accepts a cgroup_sock_addr context (Linux 5.7+).
        let netns = unsafe { bpf_get_netns_cookie(ctx.sock_addr.cast()) };
        let _ = DNS_NETNS.insert(cookie, netns, 0);
    }
}

#[inline(always)]
fn on_connect(ctx: &SockAddrContext, family: u16) {
    let Some(protocol) = transport(ctx) else {
        return;
    };
    let owner = current_owner();
    // SAFETY: the helper accepts a cgroup_sock_addr context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    let (dst_addr, dst_port) = destination(ctx, family);
    note_dns_netns(ctx, cookie, dst_port);
    let tcp = protocol == IPPROTO_TCP;
    let (class, what) = if tcp {
        (BUDGET_CLASS_TCP, SUPPRESSED_TCP_CONNECT)
    } else {
        (BUDGET_CLASS_OTHER, SUPPRESSED_UDP)
    };
    let suppressed = Suppressed {
        what,
        family,
        addr: &dst_addr,
        port: dst_port,
    };
    let admitted = if tcp {
        admit_connect(&owner, protocol, &suppressed)
    } else {
        admit_task(class, &owner, &suppressed)
    };
    if !admitted {
        // Over budget: counted there (a repeat under its destination). Not tracked either,
        // so its established and close (which would be the only records of this
        // connection) are not written.
        return;
    }

    let mut rec = record(RecordKind::Connect as u32, &owner);
    rec.family = family;
    rec.protocol = protocol;
    rec.cookie = cookie;
    rec.dst_addr = dst_addr;
    rec.dst_port = dst_port;
    if tcp {
        submit_priority(&rec);
    } else {
        submit(&rec);
    }

    if tcp {
        // Remember who connected: established/close callbacks may run in softirq context.
        let socket = TcpSocket {
            owner,
            states: 0,
            peer_fin: 0,
        };
        let _ = TCP_SOCKETS.insert(cookie, socket, 0);
        // A socket disconnected (AF_UNSPEC) and connected again starts a new connection:
        // its first payload is examined afresh, never named by the previous connection's.
        let _ = TLS_HELLO.remove(cookie);
    }
}
