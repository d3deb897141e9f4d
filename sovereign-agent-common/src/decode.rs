//! Decoding in user space (feature `user`): a ring-buffer record's kind checked with
//! `TryFrom`, never transmuted; views of packet and process records.
use alloc::string::String;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::*;

/// A kernel address field (`family`, 16 bytes; IPv4 in the first four) as an address. An
/// IPv4-mapped IPv6 address (a dual-stack socket reaching an IPv4 host) is the IPv4 one.
pub fn ip_of(family: u16, addr: &[u8; 16]) -> IpAddr {
    if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    } else {
        let v6 = Ipv6Addr::from(*addr);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

/// A task name (`comm`, NUL-padded, not necessarily UTF-8) as text.
pub fn comm_string(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|b| *b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

// SAFETY: #[repr(C)] plain old data: only integers and byte arrays, padding explicit.
unsafe impl aya::Pod for FlowRecord {}
// SAFETY: #[repr(C)] plain old data: only integers and byte arrays, padding explicit.
unsafe impl aya::Pod for SendKey {}
// SAFETY: #[repr(C)] plain old data: only integers and byte arrays, padding explicit.
unsafe impl aya::Pod for SendTally {}
// SAFETY: #[repr(C)] plain old data: only integers and byte arrays, padding explicit.
unsafe impl aya::Pod for BudgetKey {}
// SAFETY: #[repr(C)] plain old data: only integers and byte arrays, padding explicit.
unsafe impl aya::Pod for Budget {}
// SAFETY: plain integers and byte arrays with no padding.
unsafe impl aya::Pod for EnforceClass {}
// SAFETY: as above.
unsafe impl aya::Pod for EnforceAction {}
// SAFETY: as above.
unsafe impl aya::Pod for EnforceKeyV4 {}
// SAFETY: as above.
unsafe impl aya::Pod for EnforceKeyV6 {}
// SAFETY: #[repr(C)] plain old data: only integers and byte arrays, padding explicit.
unsafe impl aya::Pod for FloodTally {}
// SAFETY: as above (32 bytes, no implicit padding: asserted).
unsafe impl aya::Pod for DestinationKey {}
// SAFETY: as above.
unsafe impl aya::Pod for RepeatTally {}

/// Why a ring-buffer item could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a [`FlowRecord`].
    Truncated { len: usize },
    /// A kind this build does not know (a newer kernel object?).
    UnknownKind(u32),
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated { len } => {
                write!(f, "record of {len} bytes, expected {FLOW_RECORD_SIZE}")
            }
            Self::UnknownKind(kind) => write!(f, "unknown record kind {kind}"),
        }
    }
}

/// A decoded flow record: the kind is checked, the bytes copied out of the ring buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub kind: RecordKind,
    pub record: FlowRecord,
}

impl TryFrom<&[u8]> for Decoded {
    type Error = DecodeError;
    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < FLOW_RECORD_SIZE {
            return Err(DecodeError::Truncated { len: bytes.len() });
        }
        // SAFETY: length checked above; FlowRecord is Pod, any bit pattern is valid, and
        // read_unaligned does not assume the ring buffer's alignment.
        let record: FlowRecord =
            unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<FlowRecord>()) };
        let kind = RecordKind::try_from(record.kind).map_err(DecodeError::UnknownKind)?;
        Ok(Self { kind, record })
    }
}

/// A packet record's header fields and its payload bytes (borrowed from the ring buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketView<'a> {
    pub kind: RecordKind,
    pub family: u16,
    pub protocol: u8,
    pub ts_ns: u64,
    pub cgroup_id: u64,
    pub cookie: u64,
    pub peer_addr: [u8; 16],
    pub peer_port: u16,
    pub local_port: u16,
    /// Payload length of the packet (more than `data.len()` when it was cut).
    pub packet_len: u32,
    /// TCP: sequence number of `data[0]`.
    pub tcp_seq: u32,
    pub data: &'a [u8],
}

/// A process record's fields, its path borrowed from the ring buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessView<'a> {
    pub kind: RecordKind,
    pub tid: u32,
    pub ts_ns: u64,
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub comm: [u8; 16],
    pub path: &'a [u8],
    pub path_truncated: bool,
}

/// Any ring-buffer record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    Flow(Decoded),
    Packet(PacketView<'a>),
    Process(ProcessView<'a>),
}

impl<'a> TryFrom<&'a [u8]> for Record<'a> {
    type Error = DecodeError;
    fn try_from(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let Some(raw_kind) = bytes.get(..4) else {
            return Err(DecodeError::Truncated { len: bytes.len() });
        };
        let raw_kind = u32::from_ne_bytes([raw_kind[0], raw_kind[1], raw_kind[2], raw_kind[3]]);
        let kind = RecordKind::try_from(raw_kind).map_err(DecodeError::UnknownKind)?;
        if kind.is_process() {
            return process_view(kind, bytes).map(Record::Process);
        }
        if !kind.is_packet() {
            return Decoded::try_from(bytes).map(Record::Flow);
        }
        if bytes.len() < PACKET_HEADER_SIZE {
            return Err(DecodeError::Truncated { len: bytes.len() });
        }
        let u16_at = |o: usize| u16::from_ne_bytes([bytes[o], bytes[o + 1]]);
        let u32_at =
            |o: usize| u32::from_ne_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
        let mut peer_addr = [0u8; 16];
        peer_addr.copy_from_slice(&bytes[32..48]);
        let data_len = (u32_at(52) as usize).min(PACKET_DATA_LEN);
        let data = bytes
            .get(PACKET_HEADER_SIZE..PACKET_HEADER_SIZE + data_len)
            .ok_or(DecodeError::Truncated { len: bytes.len() })?;
        Ok(Record::Packet(PacketView {
            kind,
            family: u16_at(4),
            protocol: bytes[6],
            ts_ns: u64_at(8),
            cgroup_id: u64_at(16),
            cookie: u64_at(24),
            peer_addr,
            peer_port: u16_at(48),
            local_port: u16_at(50),
            packet_len: u32_at(56),
            tcp_seq: u32_at(60),
            data,
        }))
    }
}

fn process_view(kind: RecordKind, bytes: &[u8]) -> Result<ProcessView<'_>, DecodeError> {
    if bytes.len() < PROCESS_RECORD_SIZE {
        return Err(DecodeError::Truncated { len: bytes.len() });
    }
    let u32_at =
        |o: usize| u32::from_ne_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
    let mut comm = [0u8; 16];
    comm.copy_from_slice(&bytes[40..56]);
    let path_len = (u32_at(56) as usize).min(PROCESS_PATH_LEN);
    Ok(ProcessView {
        kind,
        tid: u32_at(4),
        ts_ns: u64_at(8),
        tgid: u32_at(16),
        ppid: u32_at(20),
        uid: u32_at(24),
        gid: u32_at(28),
        cgroup_id: u64_at(32),
        comm,
        path: &bytes[64..64 + path_len],
        path_truncated: u32_at(60) != 0,
    })
}

impl FlowRecord {
    /// The record as the bytes the kernel writes (for tests and fixtures).
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: Pod, no padding; the slice borrows self.
        unsafe { core::slice::from_raw_parts((self as *const Self).cast::<u8>(), FLOW_RECORD_SIZE) }
    }
}
