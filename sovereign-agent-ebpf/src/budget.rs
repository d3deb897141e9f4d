//! Per-workload budgets on new records: a workload that opens connections, sprays datagrams
//! or sends DNS faster than its budget has the excess counted here instead of written to the
//! ring buffer, so it cannot fill the ring (and drown other workloads' records) or the
//! agent's journal. Suppression is never silent: each entry counts what it suppressed, and
//! writes a flood notice to the priority ring at most once a second, so user space reports
//! the workload by name with the counts (`flood` events).
//!
//! A budget may fold repeats; it never hides a destination. Over budget, a TCP connect to a
//! destination its cgroup has not reached within `DESTINATION_WINDOW_NS` is still written,
//! within a bound of its own (the cgroup's new-destination budget, much larger); a repeat to a
//! destination it has reached is counted under that destination and announced by a `Repeats`
//! notice, so user space writes a `flood` event naming it. A workload that hides one foreign
//! connect inside its own burst of connects therefore cannot hide it.
//!
//! The budget is a generic cell rate: one record per interval, bursts up to `burst / interval`
//! records. Updates from two CPUs at once may race on `tat_ns` (the budget is then slightly
//! off); what is suppressed is counted per CPU (this target has no atomic add), so the counts
//! are exact.
use aya_ebpf::helpers::generated::bpf_ktime_get_ns;
use sovereign_agent_common::{
    Budget, BudgetKey, DestinationKey, FloodTally, RecordKind, RepeatTally,
    BUDGET_CLASS_NEW_DESTINATION, BUDGET_CLASS_PROCESS_RECORDS, BUDGET_CLASS_TCP,
    BUDGET_SCOPE_CGROUP, BUDGET_SCOPE_PROCESS, DESTINATION_WINDOW_NS, FLOOD_NOTICE_INTERVAL_NS,
    SUPPRESSED_KINDS, SUPPRESSED_PROCESS, SUPPRESSED_TCP_CONNECT,
};

use crate::{
    emit::{record, submit_priority},
    maps::{Owner, BUDGETS, DESTINATIONS, DESTINATION_REPEATS, FLOODS, SUPPRESSED},
};

// Set by user space at load time (see BUDGET_*_GLOBAL in the common crate); 0: no budget.
#[unsafe(no_mangle)]
static BUDGET_PROCESS_INTERVAL_NS: u64 = 0;
#[unsafe(no_mangle)]
static BUDGET_PROCESS_BURST_NS: u64 = 0;
#[unsafe(no_mangle)]
static BUDGET_CGROUP_INTERVAL_NS: u64 = 0;
#[unsafe(no_mangle)]
static BUDGET_CGROUP_BURST_NS: u64 = 0;
#[unsafe(no_mangle)]
static BUDGET_NEW_DESTINATION_INTERVAL_NS: u64 = 0;
#[unsafe(no_mangle)]
static BUDGET_NEW_DESTINATION_BURST_NS: u64 = 0;
#[unsafe(no_mangle)]
static BUDGET_PROCESS_RECORDS_INTERVAL_NS: u64 = 0;
#[unsafe(no_mangle)]
static BUDGET_PROCESS_RECORDS_BURST_NS: u64 = 0;

struct Rate {
    interval_ns: u64,
    burst_ns: u64,
}

#[inline(always)]
fn rates() -> (Rate, Rate) {
    // SAFETY: plain reads of load-time constants; volatile so they are not folded to 0.
    unsafe {
        (
            Rate {
                interval_ns: core::ptr::read_volatile(&BUDGET_PROCESS_INTERVAL_NS),
                burst_ns: core::ptr::read_volatile(&BUDGET_PROCESS_BURST_NS),
            },
            Rate {
                interval_ns: core::ptr::read_volatile(&BUDGET_CGROUP_INTERVAL_NS),
                burst_ns: core::ptr::read_volatile(&BUDGET_CGROUP_BURST_NS),
            },
        )
    }
}

#[inline(always)]
fn new_destination_rate() -> Rate {
    // SAFETY: as in `rates`.
    unsafe {
        Rate {
            interval_ns: core::ptr::read_volatile(&BUDGET_NEW_DESTINATION_INTERVAL_NS),
            burst_ns: core::ptr::read_volatile(&BUDGET_NEW_DESTINATION_BURST_NS),
        }
    }
}

/// The entry for `key`, created with a full burst when missing.
#[inline(always)]
fn entry(
    key: &BudgetKey,
    cgroup_id: u64,
    uid: u32,
    comm: &[u8; 16],
    now: u64,
) -> Option<*mut Budget> {
    if let Some(b) = BUDGETS.get_ptr_mut(key) {
        return Some(b);
    }
    let fresh = Budget {
        tat_ns: now,
        notice_ns: 0,
        cgroup_id,
        uid,
        _pad: 0,
        comm: *comm,
    };
    // BPF_NOEXIST: another CPU may have created it meanwhile; then use theirs.
    let _ = BUDGETS.insert(key, fresh, 1);
    BUDGETS.get_ptr_mut(key)
}

/// The entry's next theoretical arrival time if a record now conforms to `rate`.
#[inline(always)]
fn conforms(b: *mut Budget, rate: &Rate, now: u64) -> Option<u64> {
    // SAFETY: pointer into a map value.
    let tat = unsafe { (*b).tat_ns };
    let tat = if tat < now { now } else { tat };
    if tat - now > rate.burst_ns {
        None
    } else {
        Some(tat + rate.interval_ns)
    }
}

/// What a suppressed record would have reported, for the counts and the sample.
pub struct Suppressed<'a> {
    pub what: usize,
    pub family: u16,
    pub addr: &'a [u8; 16],
    pub port: u16,
}

/// How a record fared against its task's budgets.
enum Take {
    Admitted,
    /// Over a budget: the process's entry and key, where a suppression is counted.
    Over(*mut Budget, BudgetKey),
}

/// Spends a record of `class` from `owner` on its budgets when both conform; counts nothing.
#[inline(always)]
fn take_task(class: u32, owner: &Owner, now: u64, process: &Rate, cgroup: &Rate) -> Take {
    let pkey = BudgetKey {
        id: u64::from(owner.tgid),
        scope: BUDGET_SCOPE_PROCESS,
        class,
    };
    let Some(p) = entry(&pkey, owner.cgroup_id, owner.uid, &owner.comm, now) else {
        return Take::Admitted; // no room to keep state: never suppress what cannot be counted
    };
    let p_next = if process.interval_ns == 0 {
        None
    } else {
        match conforms(p, process, now) {
            Some(next) => Some(next),
            None => return Take::Over(p, pkey),
        }
    };
    if cgroup.interval_ns != 0 {
        let ckey = BudgetKey {
            id: owner.cgroup_id,
            scope: BUDGET_SCOPE_CGROUP,
            class,
        };
        if let Some(c) = entry(&ckey, owner.cgroup_id, owner.uid, &owner.comm, now) {
            match conforms(c, cgroup, now) {
                // SAFETY: pointer into a map value.
                Some(next) => unsafe { (*c).tat_ns = next },
                None => return Take::Over(p, pkey),
            }
        }
    }
    if let Some(next) = p_next {
        // SAFETY: pointer into a map value.
        unsafe { (*p).tat_ns = next };
    }
    Take::Admitted
}

/// Whether a record of `class` from `owner` may be written now; when not, it is counted in
/// the process's entry. Costs two map lookups when both budgets are on, none when off.
#[inline(always)]
pub fn admit_task(class: u32, owner: &Owner, s: &Suppressed) -> bool {
    let (process, cgroup) = rates();
    if process.interval_ns == 0 && cgroup.interval_ns == 0 {
        return true;
    }
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    match take_task(class, owner, now, &process, &cgroup) {
        Take::Admitted => true,
        Take::Over(p, pkey) => {
            suppress(p, &pkey, s, now);
            false
        }
    }
}

/// [`admit_task`] for a TCP connect, which never hides a destination: over budget, a connect
/// to a destination the cgroup has not reached within the window is written anyway (within
/// the new-destination budget), and a repeat is counted under its destination.
#[inline(always)]
pub fn admit_connect(owner: &Owner, protocol: u8, s: &Suppressed) -> bool {
    let (process, cgroup) = rates();
    if process.interval_ns == 0 && cgroup.interval_ns == 0 {
        return true;
    }
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let dest = DestinationKey {
        cgroup_id: owner.cgroup_id,
        addr: *s.addr,
        port: s.port,
        family: s.family,
        protocol,
        _pad: [0; 3],
    };
    let known = match DESTINATIONS.get_ptr(dest) {
        // SAFETY: pointer into a map value.
        Some(seen) => now.wrapping_sub(unsafe { *seen }) < DESTINATION_WINDOW_NS,
        None => false,
    };
    match take_task(BUDGET_CLASS_TCP, owner, now, &process, &cgroup) {
        Take::Admitted => {
            if !known {
                let _ = DESTINATIONS.insert(dest, now, 0);
            }
            true
        }
        Take::Over(_, _) if known => {
            fold_repeat(&dest, owner, now);
            false
        }
        Take::Over(p, pkey) => {
            if new_destination_conforms(owner, now) {
                let _ = DESTINATIONS.insert(dest, now, 0);
                true
            } else {
                suppress(p, &pkey, s, now);
                false
            }
        }
    }
}

/// Spends one of the cgroup's new-destination budget; no bound when it is off.
#[inline(always)]
fn new_destination_conforms(owner: &Owner, now: u64) -> bool {
    let rate = new_destination_rate();
    if rate.interval_ns == 0 {
        return true;
    }
    let key = BudgetKey {
        id: owner.cgroup_id,
        scope: BUDGET_SCOPE_CGROUP,
        class: BUDGET_CLASS_NEW_DESTINATION,
    };
    let Some(c) = entry(&key, owner.cgroup_id, owner.uid, &owner.comm, now) else {
        return true;
    };
    match conforms(c, &rate, now) {
        Some(next) => {
            // SAFETY: pointer into a map value.
            unsafe { (*c).tat_ns = next };
            true
        }
        None => false,
    }
}

/// Counts a repeated connect under its destination, and announces the destination to user
/// space at most once a second per CPU.
#[inline(always)]
fn fold_repeat(dest: &DestinationKey, owner: &Owner, now: u64) {
    if let Some(total) = SUPPRESSED.get_ptr_mut(SUPPRESSED_TCP_CONNECT as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *total += 1 };
    }
    let tally = match DESTINATION_REPEATS.get_ptr_mut(dest) {
        Some(t) => Some(t),
        None => {
            let _ = DESTINATION_REPEATS.insert(dest, RepeatTally::default(), 0);
            DESTINATION_REPEATS.get_ptr_mut(dest)
        }
    };
    let Some(t) = tally else {
        return;
    };
    // SAFETY: per-CPU value, no concurrent writer on this CPU.
    let due = unsafe {
        (*t).connects += 1;
        if (*t).first_ns == 0 {
            (*t).first_ns = now;
        }
        (*t).last_ns = now;
        let due =
            (*t).notice_ns == 0 || now.wrapping_sub((*t).notice_ns) >= FLOOD_NOTICE_INTERVAL_NS;
        if due {
            (*t).notice_ns = now;
        }
        due
    };
    if due {
        let mut rec = record(RecordKind::Repeats as u32, owner);
        rec.family = dest.family;
        rec.protocol = dest.protocol;
        rec.dst_addr = dest.addr;
        rec.dst_port = dest.port;
        submit_priority(&rec);
    }
}

/// The same for a packet, whose program knows only the socket's cgroup.
#[inline(always)]
pub fn admit_packet(class: u32, cgroup_id: u64, s: &Suppressed) -> bool {
    let (_, cgroup) = rates();
    admit_cgroup(class, &cgroup, cgroup_id, 0, &[0; 16], s)
}

/// Whether a process record (fork, exec with its arguments, exit) of the current task may be
/// written: per cgroup only (a storm of short-lived processes would otherwise take a budget
/// entry each), at the process-record rate.
#[inline(always)]
pub fn admit_process_record(cgroup_id: u64, uid: u32, comm: &[u8; 16]) -> bool {
    // SAFETY: as in `rates`.
    let rate = unsafe {
        Rate {
            interval_ns: core::ptr::read_volatile(&BUDGET_PROCESS_RECORDS_INTERVAL_NS),
            burst_ns: core::ptr::read_volatile(&BUDGET_PROCESS_RECORDS_BURST_NS),
        }
    };
    let none = [0u8; 16];
    let s = Suppressed {
        what: SUPPRESSED_PROCESS,
        family: 0,
        addr: &none,
        port: 0,
    };
    admit_cgroup(
        BUDGET_CLASS_PROCESS_RECORDS,
        &rate,
        cgroup_id,
        uid,
        comm,
        &s,
    )
}

/// Spends one record of `class` from the cgroup's budget at `rate`, or counts it there.
#[inline(always)]
fn admit_cgroup(
    class: u32,
    rate: &Rate,
    cgroup_id: u64,
    uid: u32,
    comm: &[u8; 16],
    s: &Suppressed,
) -> bool {
    if rate.interval_ns == 0 {
        return true;
    }
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let key = BudgetKey {
        id: cgroup_id,
        scope: BUDGET_SCOPE_CGROUP,
        class,
    };
    let Some(c) = entry(&key, cgroup_id, uid, comm, now) else {
        return true;
    };
    match conforms(c, rate, now) {
        Some(next) => {
            // SAFETY: pointer into a map value.
            unsafe { (*c).tat_ns = next };
            true
        }
        None => {
            suppress(c, &key, s, now);
            false
        }
    }
}

#[inline(always)]
fn suppress(b: *mut Budget, key: &BudgetKey, s: &Suppressed, now: u64) {
    let what = s.what;
    if what >= SUPPRESSED_KINDS {
        return;
    }
    if let Some(total) = SUPPRESSED.get_ptr_mut(what as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *total += 1 };
    }
    let tally = match FLOODS.get_ptr_mut(key) {
        Some(t) => Some(t),
        None => {
            let _ = FLOODS.insert(key, FloodTally::default(), 0);
            FLOODS.get_ptr_mut(key)
        }
    };
    if let Some(t) = tally {
        // SAFETY: per-CPU value, no concurrent writer on this CPU; `what` is in bounds.
        unsafe {
            (*t).suppressed[what] += 1;
            if (*t).first_ns == 0 {
                (*t).first_ns = now;
            }
            (*t).last_ns = now;
            (*t).sample_addr = *s.addr;
            (*t).sample_port = s.port;
            (*t).sample_family = s.family;
        }
    }
    // SAFETY: pointer into a map value.
    let due = unsafe { now.wrapping_sub((*b).notice_ns) >= FLOOD_NOTICE_INTERVAL_NS };
    if due {
        // SAFETY: pointer into a map value.
        let (cgroup_id, uid, comm) = unsafe {
            (*b).notice_ns = now;
            ((*b).cgroup_id, (*b).uid, (*b).comm)
        };
        let owner = Owner {
            pid: 0,
            tgid: if key.scope == BUDGET_SCOPE_PROCESS {
                key.id as u32
            } else {
                0
            },
            uid,
            gid: 0,
            cgroup_id,
            comm,
        };
        let mut rec = record(RecordKind::Flood as u32, &owner);
        rec.family = key.scope as u16;
        rec.flags = key.class as u8;
        submit_priority(&rec);
    }
}
