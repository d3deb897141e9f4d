//! The flow record: every TCP and UDP step and notice the kernel reports (connect, send,
//! established, close, release, flood and repeat notices), and the constants its fields use.

/// Address families as the kernel numbers them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
/// IP protocol numbers.
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// `close` flag: the TCP connection reached ESTABLISHED before it closed.
pub const CLOSE_FLAG_WAS_ESTABLISHED: u8 = 1;
/// `close` flag: the socket's entry in [`TCP_SOCKETS_MAP`](crate::TCP_SOCKETS_MAP) was evicted (more open sockets
/// than entries) before it closed: the record has no owner (user space restores it from the
/// connect) and the byte counts are derived from the last state alone.
pub const CLOSE_FLAG_OWNER_EVICTED: u8 = 2;
/// Default entries of [`TCP_SOCKETS_MAP`](crate::TCP_SOCKETS_MAP) (`tcp_socket_entries`).
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
    /// user space collects its folded send counts from [`UDP_SENDS_MAP`](crate::UDP_SENDS_MAP).
    UdpRelease = 5,
    /// A DNS response (UDP or TCP, source port 53) arrived for a watched socket: a
    /// [`PacketRecord`](crate::PacketRecord) (cgroup_skb/ingress).
    DnsResponse = 6,
    /// A segment of the start of a watched TCP connection whose first byte is a TLS
    /// handshake record: a [`PacketRecord`](crate::PacketRecord) with the segment's TCP sequence number
    /// (cgroup_skb/egress). User space reassembles the ClientHello from these.
    TlsClientHello = 7,
    /// A DNS query (UDP or TCP, destination port 53) leaving a watched socket: a
    /// [`PacketRecord`](crate::PacketRecord) (cgroup_skb/egress). Answers are accepted only for these.
    DnsQuery = 8,
    /// A DNS answer (source port 53) leaving a watched socket: a process in the watched
    /// cgroup is answering DNS itself. A [`PacketRecord`](crate::PacketRecord) (cgroup_skb/egress).
    DnsServed = 9,
    /// A new process (not a thread): a [`ProcessRecord`](crate::ProcessRecord) whose `tgid` is the child and
    /// `ppid` the parent (tracepoint task/task_newtask).
    Fork = 10,
    /// A process executed a program: a [`ProcessRecord`](crate::ProcessRecord) with the path as exec'd
    /// (tracepoint sched/sched_process_exec).
    Exec = 11,
    /// A process ended (its leader thread exited): a [`ProcessRecord`](crate::ProcessRecord)
    /// (tracepoint sched/sched_process_exit).
    Exit = 12,
    /// The arguments of an execve/execveat about to run: a [`ProcessRecord`](crate::ProcessRecord) whose `path`
    /// holds them NUL-separated (tracepoints syscalls/sys_enter_execve\[at\]). The
    /// [`RecordKind::Exec`] of the same thread follows when the exec succeeds.
    Argv = 13,
    /// A budget suppressed records (at most one notice a second per [`BudgetKey`](crate::BudgetKey)): a
    /// [`FlowRecord`] whose `family` is the key's scope, `flags` its class, `tgid` the
    /// process (process scope) and `cgroup_id` the cgroup. User space reads the counts from
    /// [`BUDGETS_MAP`](crate::BUDGETS_MAP). Written to [`PRIORITY_MAP`](crate::PRIORITY_MAP).
    Flood = 14,
    /// A budget folded repeated TCP connects to a destination the workload had reached (at
    /// most one notice a second per [`DestinationKey`](crate::DestinationKey) and CPU): a [`FlowRecord`] of the
    /// last folded connect (who, cgroup, destination). User space reads the counts from
    /// [`DESTINATION_REPEATS_MAP`](crate::DESTINATION_REPEATS_MAP). Written to [`PRIORITY_MAP`](crate::PRIORITY_MAP).
    Repeats = 15,
    /// A connect or datagram refused by an enforce rule (the program answered `EPERM`): a
    /// [`FlowRecord`] of who and where, `count` the policy's rule index. Written to
    /// [`PRIORITY_MAP`](crate::PRIORITY_MAP) (TCP) or the events ring (UDP), within the
    /// workload's budgets like a connect.
    Refused = 16,
}

impl RecordKind {
    /// Kinds carried by a [`PacketRecord`](crate::PacketRecord) (the rest are [`FlowRecord`]s).
    pub const fn is_packet(self) -> bool {
        matches!(
            self,
            Self::DnsResponse | Self::TlsClientHello | Self::DnsQuery | Self::DnsServed
        )
    }

    /// Kinds carried by a [`ProcessRecord`](crate::ProcessRecord).
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
            16 => Self::Refused,
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
