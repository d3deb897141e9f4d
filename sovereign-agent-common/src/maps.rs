//! The maps and kernel globals the two sides share by name, with their sizes: the ring
//! buffers, the loss counter, DNS sockets' network namespaces, UDP sends folded per destination,
//! TCP sockets, and the reader's wake-up pacing.

/// Name of the ring buffer map that carries [`FlowRecord`](crate::FlowRecord)s.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the per-CPU `u64` array (one slot) counting records the kernel could not reserve.
pub const LOSSES_MAP: &str = "LOSSES";
/// Name of the second, smaller ring buffer: TCP connect, established and close records and
/// flood notices. Nothing a UDP, DNS or TLS flood writes goes there, so such a flood cannot
/// make a TCP connection's records be lost.
pub const PRIORITY_MAP: &str = "PRIORITY";
/// Default size of [`PRIORITY_MAP`] (bytes, a power of two and a multiple of the page size).
pub const DEFAULT_PRIORITY_RING_BYTES: u32 = 8 * 1024 * 1024;

/// Name of the LRU hash map of the network namespace each socket that sent to port 53 is in:
/// socket cookie → netns cookie (`bpf_get_netns_cookie`, cgroup/connect4|6 and sendmsg4|6). A
/// loopback resolver is somebody else in another network namespace: its answers verify only
/// for a query asked in the namespace the operator trusts (user space compares).
pub const DNS_NETNS_MAP: &str = "DNS_NETNS";
/// Entries of [`DNS_NETNS_MAP`]; an evicted socket's netns is unknown (its loopback answers
/// then verify nothing).
pub const DNS_NETNS_ENTRIES: u32 = 16_384;
/// The DNS port, for [`DNS_NETNS_MAP`].
pub const DNS_PORT: u16 = 53;

/// Name of the LRU hash map that folds repeated UDP sends: [`SendKey`] → [`SendTally`].
pub const UDP_SENDS_MAP: &str = "UDP_SENDS";
/// Name of the LRU hash map of the outbound TCP sockets whose connect the programs saw, by
/// socket cookie. User space only asks whether a cookie is in it.
pub const TCP_SOCKETS_MAP: &str = "TCP_SOCKETS";
/// Size of a `TCP_SOCKETS` value (the eBPF crate's `TcpSocket`; the map's definition is checked
/// against it when user space opens the map).
pub const TCP_SOCKET_VALUE_SIZE: usize = 48;

/// Kernel globals (`u64` in .rodata, set at load time) that pace reader wake-ups. A submit
/// wakes the reader when `WAKEUP_BYTES` or more are waiting, or when this CPU has not woken it
/// for `WAKEUP_INTERVAL_NS`; otherwise the record waits for the next wake-up or for user
/// space's own drain timer. Sparse events are read at once; a busy host costs a bounded number
/// of wake-ups instead of one per record. Both 0: wake on every record.
pub const WAKEUP_BYTES_GLOBAL: &str = "WAKEUP_BYTES";
pub const WAKEUP_INTERVAL_NS_GLOBAL: &str = "WAKEUP_INTERVAL_NS";

/// Name of the array map (1 × u32) in which user space says that its reader is polling the
/// ring buffers on its own timer (1) rather than waiting to be woken (0). While it polls,
/// submits never wake it: a wake-up runs inside the submitting program, on the watched
/// thread's time (about half of `connect4`'s cost under load), and a busy reader does not
/// need it. The reader clears the flag and drains once more before it waits again.
pub const READER_POLLING_MAP: &str = "READER_POLLING";

/// Default ring buffer size (bytes, a power of two and a multiple of the page size).
pub const DEFAULT_RING_BYTES: u32 = 4 * 1024 * 1024;

/// Segments of one connection's first payload that the egress program copies at most (a
/// ClientHello sent in smaller pieces is reported as unreadable rather than followed forever).
pub const TLS_HELLO_MAX_SEGMENTS: u32 = 16;

/// Key of [`UDP_SENDS_MAP`]: one (socket, destination) pair.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SendKey {
    pub cookie: u64,
    pub dst_addr: [u8; 16],
    pub dst_port: u16,
    pub family: u16,
    pub _pad: u32,
}

/// Value of [`UDP_SENDS_MAP`]: datagrams sent on the pair so far (including the first, which
/// was reported as a `Send` record).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendTally {
    pub count: u64,
}
