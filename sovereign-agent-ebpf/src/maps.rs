//! The maps shared by the programs. Names are the user-space contract (see the common crate).
use aya_ebpf::{
    macros::map,
    maps::{
        lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf,
    },
};
use sovereign_agent_common::{
    Budget, BudgetKey, DestinationKey, EnforceAction, EnforceClass, EnforceKeyV4, EnforceKeyV6,
    FloodTally, ProcessRecord, RepeatTally, SendKey, SendTally, BUDGET_ENTRIES,
    DEFAULT_PRIORITY_RING_BYTES, DEFAULT_RING_BYTES, DEFAULT_TCP_SOCKET_ENTRIES,
    DESTINATION_ENTRIES, DESTINATION_REPEAT_ENTRIES, DNS_NETNS_ENTRIES, ENFORCE_CGROUP_ENTRIES,
    ENFORCE_FAILSAFE_ENTRIES, ENFORCE_PREFIX_ENTRIES, PENDING_ARGV_ENTRIES, SUPPRESSED_KINDS,
};

/// Every record for user space. User space may resize it at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// TCP connect, established and close records and flood notices: what a UDP, DNS or TLS
/// flood must never make lost. User space may resize it at load time.
#[map]
pub static PRIORITY: RingBuf = RingBuf::with_byte_size(DEFAULT_PRIORITY_RING_BYTES, 0);

/// Per-workload budgets and what they suppressed (see `budget`).
#[map]
pub static BUDGETS: LruHashMap<BudgetKey, Budget> = LruHashMap::with_max_entries(BUDGET_ENTRIES, 0);

/// What each budget suppressed, per CPU (see `budget`).
#[map]
pub static FLOODS: LruPerCpuHashMap<BudgetKey, FloodTally> =
    LruPerCpuHashMap::with_max_entries(BUDGET_ENTRIES, 0);

/// The destinations each cgroup's written TCP connects reached, and when (see `budget`).
#[map]
pub static DESTINATIONS: LruHashMap<DestinationKey, u64> =
    LruHashMap::with_max_entries(DESTINATION_ENTRIES, 0);

/// Repeated TCP connects a budget folded, per destination and CPU (see `budget`).
#[map]
pub static DESTINATION_REPEATS: LruPerCpuHashMap<DestinationKey, RepeatTally> =
    LruPerCpuHashMap::with_max_entries(DESTINATION_REPEAT_ENTRIES, 0);

/// The network namespace of each socket that sent to port 53, by socket cookie (see
/// `DNS_NETNS_MAP` in the common crate).
#[map]
pub static DNS_NETNS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(DNS_NETNS_ENTRIES, 0);

/// Every suppressed record by what it would have reported, per CPU.
#[map]
pub static SUPPRESSED: PerCpuArray<u64> = PerCpuArray::with_max_entries(SUPPRESSED_KINDS as u32, 0);

/// Records that could not be reserved in `EVENTS` or `PRIORITY` (ring full), per CPU.
#[map]
pub static LOSSES: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// [0] is 1 while user space polls the rings on its own timer: no submit wakes it then.
#[map]
pub static READER_POLLING: Array<u32> = Array::with_max_entries(1, 0);

/// When each CPU last woke the reader (see `emit::wakeup_flags`).
#[map]
pub static LAST_WAKEUP: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Each outbound TCP socket by cookie: who opened it (sockops callbacks often run in softirq
/// context, where the current task is unrelated to the socket) and what its close needs.
#[map]
pub static TCP_SOCKETS: LruHashMap<u64, TcpSocket> =
    LruHashMap::with_max_entries(DEFAULT_TCP_SOCKET_ENTRIES, 0);

/// Datagrams per (socket, destination) for unconnected UDP sends. User space reads and deletes
/// the entries of a socket when it is released.
#[map]
pub static UDP_SENDS: LruHashMap<SendKey, SendTally> = LruHashMap::with_max_entries(65_536, 0);

/// UDP sockets that have entries in `UDP_SENDS`, so sock_release reports only those.
#[map]
pub static UDP_SOCKETS: LruHashMap<u64, u8> = LruHashMap::with_max_entries(65_536, 0);

/// The task facts copied into a record: of the current task, or of the task that connected a
/// socket (kept in `TCP_SOCKETS` for the callbacks that run in no task's context).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Owner {
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub comm: [u8; 16],
}

/// Per-socket state kept between sockops callbacks.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TcpSocket {
    pub owner: Owner,
    /// Bit n set: the socket has been in TCP state n (BPF_TCP_* numbering).
    pub states: u32,
    /// The peer's FIN was seen in an incoming header (FIN_WAIT1/FIN_WAIT2 only).
    pub peer_fin: u32,
}

/// Where each TCP connection's first payload stands, by socket cookie: still copying the
/// segments of a ClientHello, or done (examined and not TLS, or copied). connect() removes the
/// entry, so a socket that is disconnected and connected again is examined again.
#[map]
pub static TLS_HELLO: LruHashMap<u64, HelloState> = LruHashMap::with_max_entries(65_536, 0);

/// [`HelloState::segments`] once nothing more is to be copied.
pub const HELLO_DONE: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct HelloState {
    /// TCP sequence number of the connection's first payload byte.
    pub first_seq: u32,
    /// Stream bytes the ClientHello's record takes (5 + its length, at most
    /// `PACKET_DATA_LEN`); `PACKET_DATA_LEN` until its length field was seen.
    pub wanted: u32,
    /// Segments copied so far, or [`HELLO_DONE`].
    pub segments: u32,
    pub _pad: u32,
}

/// The watched cgroup for the process tracepoints: [0] its id, [1] its level (the root is 0).
/// Written by user space when it attaches; 0 reports nothing.
#[map]
pub static PROCESS_SCOPE: Array<u64> = Array::with_max_entries(2, 0);

/// The arguments of each execve under way, by thread id, until the exec succeeds (then they
/// are written) or the thread's next execve replaces them (see PENDING_ARGV_ENTRIES).
#[map]
pub static PENDING_ARGV: LruHashMap<u32, ProcessRecord> =
    LruHashMap::with_max_entries(PENDING_ARGV_ENTRIES, 0);

/// Where an Argv record is assembled (too large for the stack) before it is stored.
#[map]
pub static ARGV_SCRATCH: PerCpuArray<ProcessRecord> = PerCpuArray::with_max_entries(1, 0);

/// Enforcement on (1) or off (0): see the common crate's `enforce` module.
#[map]
pub static ENFORCE_ON: Array<u32> = Array::with_max_entries(1, 0);

/// cgroup id → the enforce class of its tasks (and its descendants').
#[map]
pub static ENFORCE_CGROUPS: HashMap<u64, EnforceClass> =
    HashMap::with_max_entries(ENFORCE_CGROUP_ENTRIES, 0);

/// (class, IPv4 prefix) → allow or refuse.
#[map]
pub static ENFORCE_V4: LpmTrie<EnforceKeyV4, EnforceAction> =
    LpmTrie::with_max_entries(ENFORCE_PREFIX_ENTRIES, 0);

/// (class, IPv6 prefix) → allow or refuse.
#[map]
pub static ENFORCE_V6: LpmTrie<EnforceKeyV6, EnforceAction> =
    LpmTrie::with_max_entries(ENFORCE_PREFIX_ENTRIES, 0);

/// Destinations never refused (trusted resolvers, host and cluster essentials).
#[map]
pub static ENFORCE_FAILSAFE_V4: LpmTrie<[u8; 4], u32> =
    LpmTrie::with_max_entries(ENFORCE_FAILSAFE_ENTRIES, 0);

#[map]
pub static ENFORCE_FAILSAFE_V6: LpmTrie<[u8; 16], u32> =
    LpmTrie::with_max_entries(ENFORCE_FAILSAFE_ENTRIES, 0);

/// Per-CPU room for the enforce lookups' keys: connect6 is near the 512-byte stack limit
/// (Linux 6.1's verifier refused it with the keys on the stack).
#[map]
pub static ENFORCE_SCRATCH: PerCpuArray<EnforceScratch> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
pub struct EnforceScratch {
    pub cgroup: u64,
    pub v4: Key<EnforceKeyV4>,
    pub failsafe_v4: Key<[u8; 4]>,
    pub v6: Key<EnforceKeyV6>,
    pub failsafe_v6: Key<[u8; 16]>,
}
