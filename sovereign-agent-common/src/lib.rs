//! Records shared by the kernel programs (`sovereign-agent-ebpf`) and user space.
//!
//! Every record the kernel writes into the ring buffer is one [`FlowRecord`]: fixed-width
//! integers and byte arrays only, explicit padding, the `u32` kind first. User space never
//! transmutes a kernel value into an enum: it decodes with [`TryFrom`] and rejects what it
//! does not know (feature `user`).
#![no_std]

#[cfg(feature = "user")]
extern crate alloc;

/// Name of the ring buffer map that carries [`FlowRecord`]s.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the per-CPU `u64` array (one slot) counting records the kernel could not reserve.
pub const LOSSES_MAP: &str = "LOSSES";
/// Name of the second, smaller ring buffer: TCP connect, established and close records and
/// flood notices. Nothing a UDP, DNS or TLS flood writes goes there, so such a flood cannot
/// make a TCP connection's records be lost.
pub const PRIORITY_MAP: &str = "PRIORITY";
/// Default size of [`PRIORITY_MAP`] (bytes, a power of two and a multiple of the page size).
pub const DEFAULT_PRIORITY_RING_BYTES: u32 = 8 * 1024 * 1024;
/// Name of the LRU hash map of per-workload budgets: [`BudgetKey`] → [`Budget`].
pub const BUDGETS_MAP: &str = "BUDGETS";
/// Entries of [`BUDGETS_MAP`].
pub const BUDGET_ENTRIES: u32 = 16_384;
/// Name of the per-CPU array ([`SUPPRESSED_KINDS`] × `u64`) counting every suppressed record
/// by what it would have reported, attributed or not.
pub const SUPPRESSED_MAP: &str = "SUPPRESSED";

/// Kernel globals (`u64` in .rodata, set at load time) of the per-workload budgets (generic
/// cell rate: one record per `INTERVAL_NS`, bursts of `BURST_NS / INTERVAL_NS` records). An
/// interval of 0 turns that budget off; both off, nothing is suppressed.
pub const BUDGET_PROCESS_INTERVAL_NS_GLOBAL: &str = "BUDGET_PROCESS_INTERVAL_NS";
pub const BUDGET_PROCESS_BURST_NS_GLOBAL: &str = "BUDGET_PROCESS_BURST_NS";
pub const BUDGET_CGROUP_INTERVAL_NS_GLOBAL: &str = "BUDGET_CGROUP_INTERVAL_NS";
pub const BUDGET_CGROUP_BURST_NS_GLOBAL: &str = "BUDGET_CGROUP_BURST_NS";

/// What a suppressed record would have reported (index into [`Budget::suppressed`] and
/// [`SUPPRESSED_MAP`]).
pub const SUPPRESSED_TCP_CONNECT: usize = 0;
/// A UDP connect() or the first datagram to a new destination.
pub const SUPPRESSED_UDP: usize = 1;
/// A DNS query or answer packet.
pub const SUPPRESSED_DNS: usize = 2;
/// A segment of a TLS ClientHello.
pub const SUPPRESSED_TLS: usize = 3;
/// A fork, exec (with its arguments) or exit record.
pub const SUPPRESSED_PROCESS: usize = 4;
pub const SUPPRESSED_KINDS: usize = 5;

/// Budgets are kept per process and per cgroup, and for TCP connects apart from everything
/// else: a UDP or packet flood never spends a workload's TCP budget.
pub const BUDGET_SCOPE_PROCESS: u32 = 1;
pub const BUDGET_SCOPE_CGROUP: u32 = 2;
pub const BUDGET_CLASS_TCP: u32 = 0;
pub const BUDGET_CLASS_OTHER: u32 = 1;
/// Process records (fork, exec with its arguments, exit): per cgroup only, with a rate of
/// their own ([`BUDGET_PROCESS_RECORDS_INTERVAL_NS_GLOBAL`]), so an exec storm spends neither
/// its flows' budget nor a budget entry per short-lived process.
pub const BUDGET_CLASS_PROCESS_RECORDS: u32 = 3;
pub const BUDGET_PROCESS_RECORDS_INTERVAL_NS_GLOBAL: &str = "BUDGET_PROCESS_RECORDS_INTERVAL_NS";
pub const BUDGET_PROCESS_RECORDS_BURST_NS_GLOBAL: &str = "BUDGET_PROCESS_RECORDS_BURST_NS";

/// Key of [`BUDGETS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BudgetKey {
    /// The process id ([`BUDGET_SCOPE_PROCESS`]) or the cgroup id ([`BUDGET_SCOPE_CGROUP`]).
    pub id: u64,
    pub scope: u32,
    /// [`BUDGET_CLASS_TCP`] or [`BUDGET_CLASS_OTHER`].
    pub class: u32,
}

/// Value of [`BUDGETS_MAP`]: the budget's state (shared by every CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// Theoretical arrival time of the next record (generic cell rate algorithm).
    pub tat_ns: u64,
    /// When the last flood notice for this entry was written (at most one a second).
    pub notice_ns: u64,
    pub cgroup_id: u64,
    pub uid: u32,
    pub _pad: u32,
    /// Task name when the entry was created.
    pub comm: [u8; 16],
}

/// Name of the per-CPU LRU hash map of what each budget suppressed: [`BudgetKey`] →
/// [`FloodTally`] (per CPU, so counts are exact without atomics; user space sums them). A
/// suppressed record is counted under its process's key when the program knows the process
/// (socket calls), else under its cgroup's (packets).
pub const FLOODS_MAP: &str = "FLOODS";

/// Value of [`FLOODS_MAP`] on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodTally {
    /// Suppressed records by `SUPPRESSED_*` index, cumulative.
    pub suppressed: [u64; SUPPRESSED_KINDS],
    /// First and last suppression on this CPU (monotonic ns).
    pub first_ns: u64,
    pub last_ns: u64,
    /// The last suppressed destination on this CPU (network byte order; port in host order).
    pub sample_addr: [u8; 16],
    pub sample_port: u16,
    pub sample_family: u16,
    pub _pad: u32,
}

const _: () = assert!(size_of::<Budget>() == 48);
const _: () = assert!(size_of::<FloodTally>() == 80);

/// Nanoseconds between two flood notices of one budget entry.
pub const FLOOD_NOTICE_INTERVAL_NS: u64 = 1_000_000_000;

/// A budget may fold repeats; it never hides a destination. Over its budget, a workload's TCP
/// connect to a destination it has not reached within [`DESTINATION_WINDOW_NS`] is still
/// written (up to a bound of its own, the cgroup's [`BUDGET_CLASS_NEW_DESTINATION`] budget);
/// a repeat to a destination it has reached is counted under that destination
/// ([`DESTINATION_REPEATS_MAP`]) and reported as a `flood` event naming it.
///
/// Name of the LRU hash map of the destinations each cgroup's TCP connects reached:
/// [`DestinationKey`] → monotonic ns of the last connect to it that was written.
pub const DESTINATIONS_MAP: &str = "DESTINATIONS";
/// Entries of [`DESTINATIONS_MAP`]. An evicted destination is new again: its next connect is
/// written (the safe direction).
pub const DESTINATION_ENTRIES: u32 = 65_536;
/// Entries of [`DESTINATION_REPEATS_MAP`] (per CPU: 32 bytes each per CPU): destinations whose
/// repeats are being folded at once. An evicted one is reported up to its last poll; what it
/// folded after is in the global counter.
pub const DESTINATION_REPEAT_ENTRIES: u32 = 16_384;
/// How long a written connect makes its destination known.
pub const DESTINATION_WINDOW_NS: u64 = 60_000_000_000;
/// Name of the per-CPU LRU hash map of the repeats each budget folded per destination:
/// [`DestinationKey`] → [`RepeatTally`].
pub const DESTINATION_REPEATS_MAP: &str = "DESTINATION_REPEATS";
/// The budget class (cgroup scope) of TCP connects to new destinations beyond the workload's
/// own budgets.
pub const BUDGET_CLASS_NEW_DESTINATION: u32 = 2;
/// Kernel globals of that budget (same form as the others); an interval of 0: no bound (every
/// new destination is written).
pub const BUDGET_NEW_DESTINATION_INTERVAL_NS_GLOBAL: &str = "BUDGET_NEW_DESTINATION_INTERVAL_NS";
pub const BUDGET_NEW_DESTINATION_BURST_NS_GLOBAL: &str = "BUDGET_NEW_DESTINATION_BURST_NS";
/// The scope of a [`RecordKind::Repeats`] notice's flood report: one destination of one cgroup.
pub const BUDGET_SCOPE_DESTINATION: u32 = 3;

/// Key of [`DESTINATIONS_MAP`] and [`DESTINATION_REPEATS_MAP`]: a cgroup and where it connected.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DestinationKey {
    pub cgroup_id: u64,
    /// Network byte order; IPv4 in the first 4 bytes, the rest zero.
    pub addr: [u8; 16],
    /// Host byte order.
    pub port: u16,
    pub family: u16,
    pub protocol: u8,
    pub _pad: [u8; 3],
}

/// Value of [`DESTINATION_REPEATS_MAP`] on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepeatTally {
    /// Connects folded, cumulative.
    pub connects: u64,
    /// First and last fold on this CPU (monotonic ns).
    pub first_ns: u64,
    pub last_ns: u64,
    /// When this CPU last wrote a [`RecordKind::Repeats`] notice for the key.
    pub notice_ns: u64,
}

const _: () = assert!(size_of::<DestinationKey>() == 32);
const _: () = assert!(size_of::<RepeatTally>() == 32);
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

/// Address families as the kernel numbers them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
/// IP protocol numbers.
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// `close` flag: the TCP connection reached ESTABLISHED before it closed.
pub const CLOSE_FLAG_WAS_ESTABLISHED: u8 = 1;
/// `close` flag: the socket's entry in [`TCP_SOCKETS_MAP`] was evicted (more open sockets
/// than entries) before it closed: the record has no owner (user space restores it from the
/// connect) and the byte counts are derived from the last state alone.
pub const CLOSE_FLAG_OWNER_EVICTED: u8 = 2;
/// Default entries of [`TCP_SOCKETS_MAP`] (`tcp_socket_entries`).
pub const DEFAULT_TCP_SOCKET_ENTRIES: u32 = 65_536;

/// What a [`FlowRecord`] reports. The numeric values are the wire format: never renumber.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// connect() on a TCP or UDP socket (cgroup/connect4, cgroup/connect6).
    Connect = 1,
    /// First datagram from an unconnected UDP socket to one destination (cgroup/sendmsg4|6).
    Send = 2,
    /// An outbound TCP connection became ESTABLISHED (sockops).
    Established = 3,
    /// An outbound TCP connection closed; carries byte counts (sockops state callback).
    Close = 4,
    /// A UDP socket that sent unconnected datagrams was released (cgroup/sock_release):
    /// user space collects its folded send counts from [`UDP_SENDS_MAP`].
    UdpRelease = 5,
    /// A DNS response (UDP or TCP, source port 53) arrived for a watched socket: a
    /// [`PacketRecord`] (cgroup_skb/ingress).
    DnsResponse = 6,
    /// A segment of the start of a watched TCP connection whose first byte is a TLS
    /// handshake record: a [`PacketRecord`] with the segment's TCP sequence number
    /// (cgroup_skb/egress). User space reassembles the ClientHello from these.
    TlsClientHello = 7,
    /// A DNS query (UDP or TCP, destination port 53) leaving a watched socket: a
    /// [`PacketRecord`] (cgroup_skb/egress). Answers are accepted only for these.
    DnsQuery = 8,
    /// A DNS answer (source port 53) leaving a watched socket: a process in the watched
    /// cgroup is answering DNS itself. A [`PacketRecord`] (cgroup_skb/egress).
    DnsServed = 9,
    /// A new process (not a thread): a [`ProcessRecord`] whose `tgid` is the child and
    /// `ppid` the parent (tracepoint task/task_newtask).
    Fork = 10,
    /// A process executed a program: a [`ProcessRecord`] with the path as exec'd
    /// (tracepoint sched/sched_process_exec).
    Exec = 11,
    /// A process ended (its leader thread exited): a [`ProcessRecord`]
    /// (tracepoint sched/sched_process_exit).
    Exit = 12,
    /// The arguments of an execve/execveat about to run: a [`ProcessRecord`] whose `path`
    /// holds them NUL-separated (tracepoints syscalls/sys_enter_execve[at]). The
    /// [`RecordKind::Exec`] of the same thread follows when the exec succeeds.
    Argv = 13,
    /// A budget suppressed records (at most one notice a second per [`BudgetKey`]): a
    /// [`FlowRecord`] whose `family` is the key's scope, `flags` its class, `tgid` the
    /// process (process scope) and `cgroup_id` the cgroup. User space reads the counts from
    /// [`BUDGETS_MAP`]. Written to [`PRIORITY_MAP`].
    Flood = 14,
    /// A budget folded repeated TCP connects to a destination the workload had reached (at
    /// most one notice a second per [`DestinationKey`] and CPU): a [`FlowRecord`] of the
    /// last folded connect (who, cgroup, destination). User space reads the counts from
    /// [`DESTINATION_REPEATS_MAP`]. Written to [`PRIORITY_MAP`].
    Repeats = 15,
}

impl RecordKind {
    /// Kinds carried by a [`PacketRecord`] (the rest are [`FlowRecord`]s).
    pub const fn is_packet(self) -> bool {
        matches!(
            self,
            Self::DnsResponse | Self::TlsClientHello | Self::DnsQuery | Self::DnsServed
        )
    }

    /// Kinds carried by a [`ProcessRecord`].
    pub const fn is_process(self) -> bool {
        matches!(self, Self::Fork | Self::Exec | Self::Exit | Self::Argv)
    }
}

impl TryFrom<u32> for RecordKind {
    type Error = u32;
    fn try_from(value: u32) -> Result<Self, u32> {
        Ok(match value {
            1 => Self::Connect,
            2 => Self::Send,
            3 => Self::Established,
            4 => Self::Close,
            5 => Self::UdpRelease,
            6 => Self::DnsResponse,
            7 => Self::TlsClientHello,
            8 => Self::DnsQuery,
            9 => Self::DnsServed,
            10 => Self::Fork,
            11 => Self::Exec,
            12 => Self::Exit,
            13 => Self::Argv,
            14 => Self::Flood,
            15 => Self::Repeats,
            other => return Err(other),
        })
    }
}

/// One ring-buffer record (104 bytes). Layout is part of the kernel/user contract: fields are
/// ordered so that no implicit padding exists; `_pad` fields are always zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowRecord {
    /// A [`RecordKind`] value.
    pub kind: u32,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub protocol: u8,
    /// `close`: [`CLOSE_FLAG_WAS_ESTABLISHED`]; otherwise zero.
    pub flags: u8,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Thread id (the kernel's "pid") of the task that caused the record.
    pub pid: u32,
    /// Process id (the kernel's "tgid").
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    /// cgroup v2 id (the inode number of the cgroup's directory).
    pub cgroup_id: u64,
    /// `bpf_get_socket_cookie()`: unique per socket for the life of the boot.
    pub cookie: u64,
    /// Destination address in network byte order; IPv4 uses the first 4 bytes.
    pub dst_addr: [u8; 16],
    /// Destination port, host byte order.
    pub dst_port: u16,
    /// Local port, host byte order; 0 when not known yet (connect before bind).
    pub src_port: u16,
    /// Datagrams folded into this record (`send`: 1).
    pub count: u32,
    /// `close`: bytes sent and acknowledged by the peer.
    pub bytes_sent: u64,
    /// `close`: bytes received.
    pub bytes_received: u64,
    /// `comm` of the task, NUL-padded.
    pub comm: [u8; 16],
}

/// Size of one [`FlowRecord`] on the wire.
pub const FLOW_RECORD_SIZE: usize = size_of::<FlowRecord>();
const _: () = assert!(FLOW_RECORD_SIZE == 104);

/// Payload bytes a [`PacketRecord`] carries at most (a DNS response or the start of a
/// ClientHello; longer payloads are cut and `packet_len` says so).
pub const PACKET_DATA_LEN: usize = 2048;

/// A packet's payload for user space to parse (DNS queries and responses, TLS ClientHello
/// segments): a 64-byte header and up to [`PACKET_DATA_LEN`] bytes. Only the first `data_len` bytes of `data` are
/// meaningful; the rest of the reservation is not cleared.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PacketRecord {
    /// [`RecordKind::DnsResponse`], [`RecordKind::TlsClientHello`], [`RecordKind::DnsQuery`]
    /// or [`RecordKind::DnsServed`].
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

/// Bytes of an exec'd path (or of arguments) a [`ProcessRecord`] carries; longer ones are cut,
/// and say so.
pub const PROCESS_PATH_LEN: usize = 1024;
/// Arguments are copied while fewer than this many bytes are (each argument up to
/// `PROCESS_PATH_LEN - ARGV_LIMIT` more), and at most [`ARGV_MAX_ARGS`] of them.
pub const ARGV_LIMIT: usize = 512;
pub const ARGV_MAX_ARGS: usize = 24;

/// A process's birth, exec or end, from the scheduler's tracepoints (whatever cgroup it is in:
/// lineage crosses cgroups). Layout is part of the kernel/user contract.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ProcessRecord {
    /// [`RecordKind::Fork`], [`RecordKind::Exec`] or [`RecordKind::Exit`].
    pub kind: u32,
    /// Exec and Argv: the thread that called execve (the process's id after a successful
    /// exec, unless a thread other than the leader called it); otherwise 0.
    pub tid: u32,
    pub ts_ns: u64,
    /// The process: the child of a fork, the process that exec'd or exited.
    pub tgid: u32,
    /// Fork: the parent process; otherwise 0 (user space knows it from the fork).
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// The cgroup the process is in (a child is in its parent's).
    pub cgroup_id: u64,
    /// Task name (a child has its parent's until it execs).
    pub comm: [u8; 16],
    /// Exec: bytes of `path` (at most [`PROCESS_PATH_LEN`]).
    pub path_len: u32,
    /// Exec: the path was longer than [`PROCESS_PATH_LEN`] and is cut.
    pub path_truncated: u32,
    /// Exec: the file name as passed to execve (absolute or relative to the working
    /// directory), not NUL-terminated.
    pub path: [u8; PROCESS_PATH_LEN],
}

/// Size of a [`ProcessRecord`] on the wire.
pub const PROCESS_RECORD_SIZE: usize = size_of::<ProcessRecord>();
const _: () = assert!(PROCESS_RECORD_SIZE == 64 + PROCESS_PATH_LEN);

/// Entries of the kernel's LRU hash map of the arguments of execs under way (thread id →
/// Argv [`ProcessRecord`]). The arguments must be copied when execve is entered (a
/// successful exec replaces the memory they are in), but are written to the ring only when
/// the exec succeeds: a failed exec, however often repeated, writes nothing. More threads in
/// execve at once than this evict the oldest: that exec's command line is then read from
/// /proc.
pub const PENDING_ARGV_ENTRIES: u32 = 1024;

/// Name of the array map (2 × u64) that scopes the process tracepoints: the watched cgroup's
/// id and its level in the hierarchy.
pub const PROCESS_SCOPE_MAP: &str = "PROCESS_SCOPE";

/// Kernel globals (`u32` in .rodata, set at load time from the tracepoints' format files):
/// where the fields the process programs read sit in their tracepoint records.
pub const EXEC_FILENAME_OFFSET_GLOBAL: &str = "EXEC_FILENAME_OFFSET";
pub const NEWTASK_PID_OFFSET_GLOBAL: &str = "NEWTASK_PID_OFFSET";
pub const NEWTASK_FLAGS_OFFSET_GLOBAL: &str = "NEWTASK_FLAGS_OFFSET";
pub const EXEC_OLD_PID_OFFSET_GLOBAL: &str = "EXEC_OLD_PID_OFFSET";
pub const EXECVE_ARGV_OFFSET_GLOBAL: &str = "EXECVE_ARGV_OFFSET";
pub const EXECVEAT_ARGV_OFFSET_GLOBAL: &str = "EXECVEAT_ARGV_OFFSET";

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

#[cfg(feature = "user")]
mod user {
    use alloc::string::String;
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;

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
            unsafe {
                core::slice::from_raw_parts((self as *const Self).cast::<u8>(), FLOW_RECORD_SIZE)
            }
        }
    }
}

#[cfg(feature = "user")]
pub use user::{comm_string, ip_of, DecodeError, Decoded, PacketView, ProcessView, Record};

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;

    fn record(kind: u32) -> FlowRecord {
        let mut r = FlowRecord {
            kind,
            family: AF_INET,
            protocol: IPPROTO_TCP,
            ts_ns: 42,
            pid: 7,
            tgid: 7,
            cookie: 99,
            dst_port: 443,
            ..FlowRecord::default()
        };
        r.dst_addr[..4].copy_from_slice(&[192, 0, 2, 1]);
        r
    }

    #[test]
    fn decodes_every_known_kind() {
        for (raw, kind) in [
            (1, RecordKind::Connect),
            (2, RecordKind::Send),
            (3, RecordKind::Established),
            (4, RecordKind::Close),
            (5, RecordKind::UdpRelease),
        ] {
            let r = record(raw);
            let d = Decoded::try_from(r.as_bytes()).unwrap();
            assert_eq!(d.kind, kind);
            assert_eq!(d.record, r);
        }
    }

    #[test]
    fn packet_records_decode_with_their_payload() {
        let mut bytes = [0u8; PACKET_HEADER_SIZE + 300];
        bytes[..4].copy_from_slice(&6u32.to_ne_bytes());
        bytes[4..6].copy_from_slice(&AF_INET.to_ne_bytes());
        bytes[6] = IPPROTO_UDP;
        bytes[16..24].copy_from_slice(&77u64.to_ne_bytes());
        bytes[32..36].copy_from_slice(&[192, 0, 2, 53]);
        bytes[48..50].copy_from_slice(&53u16.to_ne_bytes());
        bytes[52..56].copy_from_slice(&3u32.to_ne_bytes());
        bytes[56..60].copy_from_slice(&3u32.to_ne_bytes());
        bytes[64..67].copy_from_slice(b"abc");
        let Record::Packet(p) = Record::try_from(&bytes[..]).unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.kind, p.cgroup_id, p.peer_port, p.data),
            (RecordKind::DnsResponse, 77, 53, &b"abc"[..])
        );
        // A data_len beyond what the record holds is truncation, not an overread.
        bytes[52..56].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(
            Record::try_from(&bytes[..]),
            Err(DecodeError::Truncated { len: bytes.len() })
        );
        assert_eq!(
            Record::try_from(&bytes[..10]),
            Err(DecodeError::Truncated { len: 10 })
        );
        // Flow kinds still decode as flows.
        let flow = record(1);
        assert!(matches!(
            Record::try_from(flow.as_bytes()),
            Ok(Record::Flow(_))
        ));
    }

    #[test]
    fn unknown_kinds_are_rejected_not_transmuted() {
        for raw in [0, 16, 0xdead_beef] {
            assert_eq!(
                Decoded::try_from(record(raw).as_bytes()),
                Err(DecodeError::UnknownKind(raw))
            );
        }
    }

    #[test]
    fn truncated_records_are_rejected() {
        let r = record(1);
        for len in [0, 4, FLOW_RECORD_SIZE - 1] {
            assert_eq!(
                Decoded::try_from(&r.as_bytes()[..len]),
                Err(DecodeError::Truncated { len })
            );
        }
    }

    #[test]
    fn decodes_from_an_unaligned_buffer() {
        let r = record(3);
        let mut buf = [0u8; FLOW_RECORD_SIZE + 1];
        buf[1..].copy_from_slice(r.as_bytes());
        assert_eq!(Decoded::try_from(&buf[1..]).unwrap().record, r);
    }

    #[test]
    fn layout_is_the_wire_contract() {
        assert_eq!(core::mem::offset_of!(FlowRecord, ts_ns), 8);
        assert_eq!(core::mem::offset_of!(FlowRecord, cgroup_id), 32);
        assert_eq!(core::mem::offset_of!(FlowRecord, dst_addr), 48);
        assert_eq!(core::mem::offset_of!(FlowRecord, comm), 88);
        assert_eq!(size_of::<SendKey>(), 32);
        assert_eq!(core::mem::offset_of!(ProcessRecord, cgroup_id), 32);
        assert_eq!(core::mem::offset_of!(ProcessRecord, comm), 40);
        assert_eq!(core::mem::offset_of!(ProcessRecord, path_len), 56);
        assert_eq!(core::mem::offset_of!(ProcessRecord, path), 64);
    }

    #[test]
    fn process_records_decode_with_their_path() {
        let mut bytes = [0u8; PROCESS_RECORD_SIZE];
        bytes[..4].copy_from_slice(&11u32.to_ne_bytes());
        bytes[16..20].copy_from_slice(&4242u32.to_ne_bytes());
        bytes[32..40].copy_from_slice(&77u64.to_ne_bytes());
        bytes[40..44].copy_from_slice(b"curl");
        bytes[56..60].copy_from_slice(&13u32.to_ne_bytes());
        bytes[64..77].copy_from_slice(b"/usr/bin/curl");
        let Record::Process(p) = Record::try_from(&bytes[..]).unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.kind, p.tgid, p.cgroup_id, p.path, p.path_truncated),
            (RecordKind::Exec, 4242, 77, &b"/usr/bin/curl"[..], false)
        );
        // A path length beyond the record is clamped, never an overread.
        bytes[56..60].copy_from_slice(&100_000u32.to_ne_bytes());
        let Record::Process(p) = Record::try_from(&bytes[..]).unwrap() else {
            panic!()
        };
        assert_eq!(p.path.len(), PROCESS_PATH_LEN);
        assert_eq!(
            Record::try_from(&bytes[..100]),
            Err(DecodeError::Truncated { len: 100 })
        );
    }
}
