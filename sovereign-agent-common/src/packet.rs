//! The packet record: a DNS message or the start of a TLS ClientHello, for user space to parse.

/// Payload bytes a [`PacketRecord`] carries at most (a DNS response or the start of a
/// ClientHello; longer payloads are cut and `packet_len` says so).
pub const PACKET_DATA_LEN: usize = 2048;

/// A packet's payload for user space to parse (DNS queries and responses, TLS ClientHello
/// segments): a 64-byte header and up to [`PACKET_DATA_LEN`] bytes. Only the first `data_len` bytes of `data` are
/// meaningful; the rest of the reservation is not cleared.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PacketRecord {
    /// [`RecordKind::DnsResponse`](crate::RecordKind::DnsResponse), [`RecordKind::TlsClientHello`](crate::RecordKind::TlsClientHello), [`RecordKind::DnsQuery`](crate::RecordKind::DnsQuery)
    /// or [`RecordKind::DnsServed`](crate::RecordKind::DnsServed).
    pub kind: u32,
    pub family: u16,
    pub protocol: u8,
    pub _pad0: u8,
    pub ts_ns: u64,
    /// cgroup v2 id of the socket's cgroup.
    pub cgroup_id: u64,
    pub cookie: u64,
    /// The DNS server (responses: the one that answered; queries: the one asked; served: this
    /// socket's own address) or the TLS destination. Network byte order.
    pub peer_addr: [u8; 16],
    /// The DNS server's port, or the TLS destination port.
    pub peer_port: u16,
    /// The DNS client's port (for every DNS kind), or the TLS connection's local port.
    pub local_port: u16,
    /// Bytes of payload copied into `data`.
    pub data_len: u32,
    /// Bytes of payload the packet had.
    pub packet_len: u32,
    /// TCP: the sequence number of the payload's first byte; UDP: 0.
    pub tcp_seq: u32,
    pub data: [u8; PACKET_DATA_LEN],
}

/// Size of a [`PacketRecord`]'s header (everything before `data`).
pub const PACKET_HEADER_SIZE: usize = 64;
const _: () = assert!(core::mem::offset_of!(PacketRecord, data) == PACKET_HEADER_SIZE);
