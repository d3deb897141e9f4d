//! sockops: an outbound TCP connection became ESTABLISHED, and later CLOSED, with its byte
//! counts. sockops is attached to the cgroup (so it sees only the watched sockets) and exposes
//! `bytes_acked`/`bytes_received` through the stable `bpf_sock_ops` context: no kernel struct
//! is read, so no BTF or struct offsets are needed.
//!
//! Those counters count sequence space, not payload: `bytes_acked` includes our SYN and our FIN
//! once acknowledged, `bytes_received` the peer's FIN. To report payload bytes exactly, the
//! program records every state the socket passes through, and while it is in FIN_WAIT1/2 (the
//! only states where the peer's FIN leaves no trace in the state sequence) it watches incoming
//! headers for the FIN, switching that per-packet callback off as soon as it has seen one.
//!
//! State callbacks are asked for only on sockets whose connect was written (their owner is in
//! `TCP_SOCKETS`). So a state change of a socket without an entry means its entry was evicted
//! (more open sockets than entries, perhaps on purpose, to hide one connection's close): its
//! close is still written, flagged, with the bytes derived from the last state alone.
use aya_ebpf::{
    helpers::generated::bpf_get_socket_cookie, macros::sock_ops, programs::SockOpsContext,
};
use sovereign_agent_common::{
    RecordKind, AF_INET, AF_INET6, CLOSE_FLAG_OWNER_EVICTED, CLOSE_FLAG_WAS_ESTABLISHED,
    IPPROTO_TCP,
};

use crate::{
    emit::{ipv4_bytes, ipv6_bytes, record, submit_priority},
    maps::{TcpSocket, TCP_SOCKETS},
};

// From include/uapi/linux/bpf.h (stable UAPI).
const BPF_SOCK_OPS_TCP_CONNECT_CB: u32 = 3;
const BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB: u32 = 4;
const BPF_SOCK_OPS_STATE_CB: u32 = 10;
const BPF_SOCK_OPS_PARSE_HDR_OPT_CB: u32 = 13;
const BPF_SOCK_OPS_STATE_CB_FLAG: i32 = 1 << 2;
const BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG: i32 = 1 << 4;
const BPF_TCP_ESTABLISHED: u32 = 1;
const BPF_TCP_FIN_WAIT1: u32 = 4;
const BPF_TCP_FIN_WAIT2: u32 = 5;
const BPF_TCP_CLOSE: u32 = 7;
const BPF_TCP_CLOSE_WAIT: u32 = 8;
const BPF_TCP_LAST_ACK: u32 = 9;
const BPF_TCP_TIME_WAIT: u32 = 6;
const BPF_TCP_CLOSING: u32 = 11;
const TCPHDR_FIN: u32 = 0x01;
const AF_INET6_U32: u32 = AF_INET6 as u32;

const fn bit(state: u32) -> u32 {
    1 << state
}

#[sock_ops]
pub fn tcp_state(ctx: SockOpsContext) -> u32 {
    match ctx.op() {
        // Before the SYN: ask for state callbacks so a refused connect also yields a close;
        // only for a connect that was written (its owner kept), so that a later callback
        // without an entry is an eviction, never a connect the budget suppressed.
        BPF_SOCK_OPS_TCP_CONNECT_CB => {
            if TCP_SOCKETS.get_ptr(cookie(&ctx)).is_some() {
                let _ = ctx.set_cb_flags(ctx.cb_flags() as i32 | BPF_SOCK_OPS_STATE_CB_FLAG);
            }
        }
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB => emit(&ctx, RecordKind::Established, 0),
        BPF_SOCK_OPS_STATE_CB => on_state_change(&ctx, ctx.arg(0), ctx.arg(1)),
        BPF_SOCK_OPS_PARSE_HDR_OPT_CB => on_incoming_header(&ctx),
        _ => {}
    }
    1
}

fn cookie(ctx: &SockOpsContext) -> u64 {
    // SAFETY: the helper accepts a sockops context.
    unsafe { bpf_get_socket_cookie(ctx.ops.cast()) }
}

#[inline(always)]
fn on_state_change(ctx: &SockOpsContext, old: u32, new: u32) {
    let cookie = cookie(ctx);
    let Some(socket) = TCP_SOCKETS.get_ptr_mut(cookie) else {
        if new == BPF_TCP_CLOSE {
            on_evicted_close(ctx, cookie, old);
        }
        return;
    };
    // SAFETY: pointer into the map value, valid for this program run.
    let socket = unsafe { &mut *socket };
    socket.states |= bit(old) | bit(new);
    if new == BPF_TCP_FIN_WAIT1 {
        // Kernels before 5.10 refuse the flag: the close then assumes a FIN_WAIT2 close
        // followed the peer's FIN (see `peer_fin`).
        let _ = ctx.set_cb_flags(ctx.cb_flags() as i32 | BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG);
    } else if new == BPF_TCP_CLOSE {
        let s = *socket;
        let _ = TCP_SOCKETS.remove(cookie);
        on_close(ctx, cookie, &s, old);
    }
}

#[inline(always)]
fn on_incoming_header(ctx: &SockOpsContext) {
    // SAFETY: context field, valid in header callbacks (5.10+).
    let tcp_flags = unsafe { (*ctx.ops).skb_tcp_flags };
    if tcp_flags & TCPHDR_FIN == 0 {
        return;
    }
    if let Some(socket) = TCP_SOCKETS.get_ptr_mut(cookie(ctx)) {
        // SAFETY: pointer into the map value.
        unsafe { (*socket).peer_fin = 1 };
    }
    let _ = ctx.set_cb_flags(ctx.cb_flags() as i32 & !BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG);
}

#[inline(always)]
fn on_close(ctx: &SockOpsContext, cookie: u64, socket: &TcpSocket, old: u32) {
    let states = socket.states | bit(old);
    let established = states & bit(BPF_TCP_ESTABLISHED) != 0;
    // SAFETY: full socket in STATE_CB; u32/u64 context fields.
    let (acked, received, snd_una, snd_nxt) = unsafe {
        let o = ctx.ops;
        (
            (*o).bytes_acked,
            (*o).bytes_received,
            (*o).snd_una,
            (*o).snd_nxt,
        )
    };
    // Our FIN consumed one byte of sequence space once acknowledged: certainly so after
    // FIN_WAIT2; from LAST_ACK or CLOSING when nothing is outstanding.
    let our_fin_acked = states & bit(BPF_TCP_FIN_WAIT2) != 0
        || ((old == BPF_TCP_LAST_ACK || old == BPF_TCP_CLOSING) && snd_una == snd_nxt);
    // The peer's FIN: visible in the states (CLOSE_WAIT, CLOSING, LAST_ACK), or seen in a
    // header during FIN_WAIT1/2 (kernels before 5.10 have no header callbacks: there a peer
    // FIN received in FIN_WAIT2 is counted in bytes_received, one byte too many).
    let peer_fin =
        states & (bit(BPF_TCP_CLOSE_WAIT) | bit(BPF_TCP_CLOSING) | bit(BPF_TCP_LAST_ACK)) != 0
            || socket.peer_fin != 0;
    let mut rec = flow_record(ctx, RecordKind::Close, cookie, &socket.owner);
    rec.flags = if established {
        CLOSE_FLAG_WAS_ESTABLISHED
    } else {
        0
    };
    rec.bytes_sent = acked
        .saturating_sub(u64::from(established))
        .saturating_sub(u64::from(our_fin_acked));
    rec.bytes_received = received.saturating_sub(u64::from(peer_fin));
    submit_priority(&rec);
}

/// The close of a socket whose entry was evicted: no owner, and only the last state to tell
/// which FINs the counters include.
#[inline(always)]
fn on_evicted_close(ctx: &SockOpsContext, cookie: u64, old: u32) {
    // SAFETY: full socket in STATE_CB; u32/u64 context fields.
    let (acked, received, snd_una, snd_nxt) = unsafe {
        let o = ctx.ops;
        (
            (*o).bytes_acked,
            (*o).bytes_received,
            (*o).snd_una,
            (*o).snd_nxt,
        )
    };
    // Our SYN was acknowledged: the connection was established.
    let established = acked > 0;
    // TIME_WAIT and FIN_WAIT2 follow our acknowledged FIN; LAST_ACK and CLOSING have it
    // acknowledged when nothing is outstanding.
    let our_fin_acked = old == BPF_TCP_TIME_WAIT
        || old == BPF_TCP_FIN_WAIT2
        || ((old == BPF_TCP_LAST_ACK || old == BPF_TCP_CLOSING) && snd_una == snd_nxt);
    // The peer's FIN: in LAST_ACK and CLOSING certainly; from FIN_WAIT2 (and TIME_WAIT)
    // the close usually follows it (else a FIN_WAIT2 timeout: one byte too few received).
    let peer_fin = old == BPF_TCP_LAST_ACK
        || old == BPF_TCP_CLOSING
        || old == BPF_TCP_TIME_WAIT
        || old == BPF_TCP_FIN_WAIT2;
    let nobody = crate::maps::Owner {
        pid: 0,
        tgid: 0,
        uid: 0,
        gid: 0,
        cgroup_id: 0,
        comm: [0; 16],
    };
    let mut rec = flow_record(ctx, RecordKind::Close, cookie, &nobody);
    rec.flags = CLOSE_FLAG_OWNER_EVICTED
        | if established {
            CLOSE_FLAG_WAS_ESTABLISHED
        } else {
            0
        };
    rec.bytes_sent = acked
        .saturating_sub(u64::from(established))
        .saturating_sub(u64::from(our_fin_acked));
    rec.bytes_received = received.saturating_sub(u64::from(peer_fin));
    submit_priority(&rec);
}

#[inline(always)]
fn emit(ctx: &SockOpsContext, kind: RecordKind, flags: u8) {
    let cookie = cookie(ctx);
    // The socket's owner as recorded at connect(). Without one (its connect was over the
    // workload's budget, or came before the programs were attached) there is nobody to name:
    // the callback usually runs in softirq context, where the current task is unrelated, and
    // older kernels (6.1, found by the VM tests: docs/kernel.md) refuse the current-task
    // helpers in sockops programs at load time.
    // SAFETY: the value is copied out before any other map operation.
    let Some(owner) = (unsafe { TCP_SOCKETS.get(cookie) }).map(|socket| socket.owner) else {
        return;
    };
    let mut rec = flow_record(ctx, kind, cookie, &owner);
    rec.flags = flags;
    submit_priority(&rec);
}

#[inline(always)]
fn flow_record(
    ctx: &SockOpsContext,
    kind: RecordKind,
    cookie: u64,
    owner: &crate::maps::Owner,
) -> sovereign_agent_common::FlowRecord {
    let family = if ctx.family() == AF_INET6_U32 {
        AF_INET6
    } else {
        AF_INET
    };
    let mut rec = record(kind as u32, owner);
    rec.family = family;
    rec.protocol = IPPROTO_TCP;
    rec.cookie = cookie;
    rec.dst_addr = if family == AF_INET {
        ipv4_bytes(ctx.remote_ip4())
    } else {
        // SAFETY: context field of four words.
        ipv6_bytes(unsafe { (*ctx.ops).remote_ip6.as_ptr() })
    };
    rec.dst_port = remote_port(ctx.remote_port());
    rec.src_port = ctx.local_port() as u16;
    rec
}

/// `bpf_sock_ops.remote_port` holds the network-order port in the upper 16 bits on
/// little-endian hosts (the kernel loads `skc_dport` and shifts it left by 16), and in the
/// lower 16 bits on big-endian ones. `local_port` is plain host order.
#[inline(always)]
fn remote_port(raw: u32) -> u16 {
    #[cfg(target_endian = "little")]
    let be = (raw >> 16) as u16;
    #[cfg(target_endian = "big")]
    let be = raw as u16;
    u16::from_be(be)
}
