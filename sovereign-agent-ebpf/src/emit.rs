//! Writing records: task facts, the ring buffer reservation, and the loss counter.
use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    generated::{bpf_get_current_cgroup_id, bpf_ktime_get_ns},
};
use sovereign_agent_common::FlowRecord;

use crate::maps::{Owner, EVENTS, LAST_WAKEUP, LOSSES, PRIORITY, READER_POLLING};

/// The current task, as the kernel sees it.
#[inline(always)]
pub fn current_owner() -> Owner {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    Owner {
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        // SAFETY: helper without arguments, allowed in every program type used here.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

/// A record stamped with the time and the owner's facts; the caller fills the flow fields.
#[inline(always)]
pub fn record(kind: u32, owner: &Owner) -> FlowRecord {
    FlowRecord {
        kind,
        // SAFETY: helper without arguments.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid: owner.pid,
        tgid: owner.tgid,
        uid: owner.uid,
        gid: owner.gid,
        cgroup_id: owner.cgroup_id,
        comm: owner.comm,
        ..FlowRecord::default()
    }
}

// Set by user space at load time (see WAKEUP_BYTES_GLOBAL in the common crate); 0 and 0:
// wake the reader for every record.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 0;
#[unsafe(no_mangle)]
static WAKEUP_INTERVAL_NS: u64 = 0;

const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// Copies `rec` into the ring buffer, or counts it as lost when the buffer is full.
#[inline(always)]
pub fn submit(rec: &FlowRecord) {
    match EVENTS.reserve::<FlowRecord>(0) {
        Some(mut entry) => {
            entry.write(*rec);
            let flags = wakeup_flags(rec.ts_ns);
            entry.submit(flags);
        }
        None => count_loss(),
    }
}

/// Copies `rec` into the priority ring buffer (TCP connections, flood notices), or counts it
/// as lost when that is full. Wake-ups are paced like the bulk ring's (a wake-up per record
/// cost 5 µs of kernel time per connect in the benchmark); the reader drains both rings on
/// either's wake-up and on its timer.
#[inline(always)]
pub fn submit_priority(rec: &FlowRecord) {
    match PRIORITY.reserve::<FlowRecord>(0) {
        Some(mut entry) => {
            entry.write(*rec);
            entry.submit(wakeup_flags(rec.ts_ns));
        }
        None => count_loss(),
    }
}

/// One record could not be reserved.
#[inline(always)]
pub fn count_loss() {
    if let Some(lost) = LOSSES.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *lost += 1 };
    }
}

/// The submit flags for a record stamped now.
#[inline(always)]
pub fn wakeup_flags_now() -> u64 {
    // SAFETY: helper without arguments.
    wakeup_flags(unsafe { bpf_ktime_get_ns() })
}

/// Whether this submit wakes the reader (see WAKEUP_BYTES_GLOBAL in the common crate).
#[inline(always)]
pub fn wakeup_flags(now_ns: u64) -> u64 {
    // SAFETY: plain reads of load-time constants; volatile so they are not folded to 0.
    let (bytes, interval) = unsafe {
        (
            core::ptr::read_volatile(&WAKEUP_BYTES),
            core::ptr::read_volatile(&WAKEUP_INTERVAL_NS),
        )
    };
    if READER_POLLING.get(0).is_some_and(|polling| *polling != 0) {
        return BPF_RB_NO_WAKEUP; // the reader is busy and reads on its own timer
    }
    if bytes == 0 && interval == 0 {
        return 0; // the kernel's default: wake the reader if it is waiting
    }
    let Some(last) = LAST_WAKEUP.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU slot, no concurrent writer on this CPU.
    let last = unsafe { &mut *last };
    if now_ns.wrapping_sub(*last) >= interval || EVENTS.query(BPF_RB_AVAIL_DATA) >= bytes {
        *last = now_ns;
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// IPv4 address as stored in the context (network byte order in memory) into the 16-byte slot.
#[inline(always)]
pub fn ipv4_bytes(addr_be: u32) -> [u8; 16] {
    let b = addr_be.to_ne_bytes();
    [b[0], b[1], b[2], b[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// IPv6 address from four context words, each read with a 4-byte load (the verifier refuses
/// wider loads of these fields on older kernels).
#[inline(always)]
pub fn ipv6_bytes(words: *const u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        // SAFETY: `words` points at a 4-word context field.
        let w = unsafe { core::ptr::read_volatile(words.add(i)) }.to_ne_bytes();
        out[i * 4] = w[0];
        out[i * 4 + 1] = w[1];
        out[i * 4 + 2] = w[2];
        out[i * 4 + 3] = w[3];
        i += 1;
    }
    out
}
