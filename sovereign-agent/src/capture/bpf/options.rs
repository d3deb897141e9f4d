//! How the kernel side is sized and paced: ring sizes, budgets, wake-ups.

/// A workload's budget of new records (per process, and per cgroup): `per_sec` sustained,
/// `burst` at once. `per_sec` 0: no budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rate {
    pub per_sec: u64,
    pub burst: u64,
}

impl Rate {
    /// The kernel's form: nanoseconds per record, and the burst as nanoseconds of credit.
    pub(super) fn kernel(self) -> (u64, u64) {
        if self.per_sec == 0 {
            return (0, 0);
        }
        let interval = (1_000_000_000 / self.per_sec).max(1);
        (interval, interval.saturating_mul(self.burst.max(1)))
    }
}

/// How the kernel side is sized and when it wakes the reader.
#[derive(Clone, Copy, Debug)]
pub struct CaptureOptions {
    /// Ring buffer size: a power of two, at least one page.
    pub ring_buffer_bytes: u32,
    /// The priority ring's size (TCP connections, flood notices); same constraints.
    pub priority_ring_bytes: u32,
    /// Budgets of new records per process and per cgroup (both off by default).
    pub process_budget: Rate,
    pub cgroup_budget: Rate,
    /// Per cgroup: TCP connects to new destinations written beyond those budgets (off: every
    /// new destination is written).
    pub new_destination_budget: Rate,
    /// Per cgroup: fork, exec and exit records (off: no bound).
    pub process_records_budget: Rate,
    /// Entries of the open TCP sockets' owners (an evicted one still closes, flagged).
    pub tcp_socket_entries: u32,
    /// Wake the reader when this many bytes are waiting...
    pub wakeup_bytes: u64,
    /// ...or when this CPU has not woken it for this long. Both 0: wake on every record.
    /// Otherwise the reader must also drain on a timer (the pipeline's `max_event_delay`).
    pub wakeup_interval_ns: u64,
}

impl CaptureOptions {
    /// At most one wake-up per millisecond per CPU (or when an eighth of the ring is full):
    /// a sparse event is read at once, a burst in batches.
    pub fn paced(ring_buffer_bytes: u32) -> Self {
        Self {
            ring_buffer_bytes,
            priority_ring_bytes: sovereign_agent_common::DEFAULT_PRIORITY_RING_BYTES,
            process_budget: Rate::default(),
            cgroup_budget: Rate::default(),
            new_destination_budget: Rate::default(),
            process_records_budget: Rate::default(),
            tcp_socket_entries: sovereign_agent_common::DEFAULT_TCP_SOCKET_ENTRIES,
            wakeup_bytes: u64::from(ring_buffer_bytes / 8),
            wakeup_interval_ns: 1_000_000,
        }
    }

    /// A wake-up for every record (lowest latency, highest CPU cost per event).
    pub fn per_record(ring_buffer_bytes: u32) -> Self {
        Self {
            wakeup_bytes: 0,
            wakeup_interval_ns: 0,
            ..Self::paced(ring_buffer_bytes)
        }
    }
}
