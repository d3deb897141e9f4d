//! The per-workload budgets of new records in the kernel: their map, keys and state, what they
//! suppressed (floods), and the destinations a workload's TCP connects reached (repeats).

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

/// What a suppressed record would have reported (index into [`FloodTally::suppressed`] and
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
/// The scope of a [`RecordKind::Repeats`](crate::RecordKind::Repeats) notice's flood report: one destination of one cgroup.
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
    /// When this CPU last wrote a [`RecordKind::Repeats`](crate::RecordKind::Repeats) notice for the key.
    pub notice_ns: u64,
}

const _: () = assert!(size_of::<DestinationKey>() == 32);
const _: () = assert!(size_of::<RepeatTally>() == 32);
