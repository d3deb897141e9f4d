//! Reading IP and TCP/UDP headers in cgroup_skb programs (the skb starts at the IP header)
//! and copying a payload into a [`PacketRecord`] in the ring buffer.
use aya_ebpf::{
    helpers::generated::{
        bpf_get_socket_cookie, bpf_ktime_get_ns, bpf_skb_cgroup_id, bpf_skb_load_bytes,
    },
    programs::SkBuffContext,
};
use sovereign_agent_common::{
    PacketRecord, RecordKind, AF_INET, AF_INET6, BUDGET_CLASS_OTHER, IPPROTO_TCP, IPPROTO_UDP,
    PACKET_DATA_LEN, SUPPRESSED_DNS, SUPPRESSED_TLS,
};

use crate::{
    budget::{admit_packet, Suppressed},
    emit::count_loss,
    maps::EVENTS,
};

const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86DD;

/// What the headers say.
pub struct Headers {
    pub family: u16,
    pub protocol: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP: sequence number of the first payload byte; UDP: 0.
    pub tcp_seq: u32,
    /// Offset of the transport payload from the start of the skb.
    pub payload_off: u32,
    pub payload_len: u32,
}

#[inline(always)]
fn load<const N: usize>(ctx: &SkBuffContext, offset: u32) -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    // SAFETY: buf is N writable bytes.
    let r = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            offset,
            buf.as_mut_ptr().cast(),
            N as u32,
        )
    };
    (r == 0).then_some(buf)
}

/// `N` bytes at `offset`, read from the packet directly when they are in its linear part
/// (every header of a locally made packet is), else copied by the helper. Direct reads are
/// what makes a packet that is not ours cheap: these programs run on every packet of every
/// watched socket, and the two helper calls of a header parse cost ~200 ns a packet, against
/// ~60 ns for a program that returns at once (`cargo xtask bench`, docs/performance.md).
#[inline(always)]
fn header<const N: usize>(ctx: &SkBuffContext, offset: u32) -> Option<[u8; N]> {
    let skb = ctx.skb.skb;
    // SAFETY: context fields of __sk_buff; cgroup_skb programs may read the packet between
    // `data` and `data_end` (the verifier checks the bound below).
    let (start, end) = unsafe { ((*skb).data as usize, (*skb).data_end as usize) };
    let at = start + offset as usize;
    if at + N > end {
        return load(ctx, offset);
    }
    // SAFETY: [at, at + N) is inside the packet's linear data, checked just above.
    Some(unsafe { core::ptr::read_unaligned(at as *const [u8; N]) })
}

/// Parses IPv4 (with options) or IPv6 (no extension headers) and then TCP or UDP.
#[inline(always)]
pub fn parse(ctx: &SkBuffContext) -> Option<Headers> {
    // SAFETY: context fields of __sk_buff.
    let (proto, len) = unsafe { ((*ctx.skb.skb).protocol, (*ctx.skb.skb).len) };
    let (family, protocol, l4, src, dst) = match u32::from(u16::from_be(proto as u16)) {
        ETH_P_IP => {
            let h: [u8; 20] = header(ctx, 0)?;
            let ihl = u32::from(h[0] & 0x0f) * 4;
            let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
            s[..4].copy_from_slice(&h[12..16]);
            d[..4].copy_from_slice(&h[16..20]);
            (AF_INET, h[9], ihl, s, d)
        }
        ETH_P_IPV6 => {
            let h: [u8; 40] = header(ctx, 0)?;
            let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
            s.copy_from_slice(&h[8..24]);
            d.copy_from_slice(&h[24..40]);
            (AF_INET6, h[6], 40, s, d)
        }
        _ => return None,
    };
    if l4 < 20 {
        return None;
    }
    let (src_port, dst_port, tcp_seq, header_len) = match protocol {
        IPPROTO_UDP => {
            let u: [u8; 8] = header(ctx, l4)?;
            (
                u16::from_be_bytes([u[0], u[1]]),
                u16::from_be_bytes([u[2], u[3]]),
                0,
                8,
            )
        }
        IPPROTO_TCP => {
            let t: [u8; 20] = header(ctx, l4)?;
            let doff = u32::from(t[12] >> 4) * 4;
            (
                u16::from_be_bytes([t[0], t[1]]),
                u16::from_be_bytes([t[2], t[3]]),
                u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
                doff,
            )
        }
        _ => return None,
    };
    let payload_off = l4 + header_len;
    let payload_len = len.checked_sub(payload_off)?;
    Some(Headers {
        family,
        protocol,
        src,
        dst,
        src_port,
        dst_port,
        tcp_seq,
        payload_off,
        payload_len,
    })
}

/// Copies up to [`PACKET_DATA_LEN`] payload bytes into a new ring-buffer record, or counts a
/// loss when the ring is full, or a suppression when the socket's cgroup is over its budget.
#[inline(always)]
pub fn submit_payload(
    ctx: &SkBuffContext,
    kind: u32,
    h: &Headers,
    peer: &[u8; 16],
    peer_port: u16,
    local_port: u16,
) {
    let skb = ctx.skb.skb;
    // SAFETY: the helper accepts the program's own skb.
    let cgroup_id = unsafe { bpf_skb_cgroup_id(skb) };
    let what = if kind == RecordKind::TlsClientHello as u32 {
        SUPPRESSED_TLS
    } else {
        SUPPRESSED_DNS
    };
    let suppressed = Suppressed {
        what,
        family: h.family,
        addr: peer,
        port: peer_port,
    };
    if !admit_packet(BUDGET_CLASS_OTHER, cgroup_id, &suppressed) {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<PacketRecord>(0) else {
        count_loss();
        return;
    };
    let mut n = h.payload_len;
    if n > PACKET_DATA_LEN as u32 {
        n = PACKET_DATA_LEN as u32;
    }
    // Callers pass a non-empty payload. Written so the verifier can see 1 <= n <= 2048
    // (PACKET_DATA_LEN is a power of two): a plain `n > 0` test is folded away by the compiler.
    let n = (n.wrapping_sub(1) & (PACKET_DATA_LEN as u32 - 1)) + 1;
    let p = entry.as_mut_ptr();
    // SAFETY: p points at a reserved PacketRecord; every header field is written, and `n`
    // bytes (1..=PACKET_DATA_LEN) of `data`.
    unsafe {
        (*p).kind = kind;
        (*p).family = h.family;
        (*p).protocol = h.protocol;
        (*p)._pad0 = 0;
        (*p).ts_ns = bpf_ktime_get_ns();
        (*p).cgroup_id = cgroup_id;
        (*p).cookie = bpf_get_socket_cookie(skb.cast());
        (*p).peer_addr = *peer;
        (*p).peer_port = peer_port;
        (*p).local_port = local_port;
        (*p).packet_len = h.payload_len;
        (*p).tcp_seq = h.tcp_seq;
        let copied = bpf_skb_load_bytes(
            skb as *const _,
            h.payload_off,
            (*p).data.as_mut_ptr().cast(),
            n,
        ) == 0;
        (*p).data_len = if copied { n } else { 0 };
    }
    entry.submit(crate::emit::wakeup_flags_now());
}
