//! Per-workload budgets on new records: a workload that opens connections, sprays datagrams
//! or sends DNS faster than its budget has the excess counted here instead of written to the
//! ring buffer, so it cannot fill the ring (and drown other workloads' records) or the
//! agent's journal. Suppression is never silent: each entry counts what it suppressed, and
//! writes a flood notice to the priority ring at most once a second, so user space reports
//! the workload by name with the counts (`flood` events).
//!
//! The budget is a generic cell rate: one record per interval, bursts up to `burst / interval`
//! records. Updates from two CPUs at once may race on `tat_ns` (the budget is then slightly
//! off); what is suppressed is counted per CPU (this target has no atomic add), so the counts
//! are exact.
use aya_ebpf::helpers::generated::bpf_ktime_get_ns;
use sovereign_agent_common::{
    Budget, BudgetKey, FloodTally, RecordKind, BUDGET_SCOPE_CGROUP, BUDGET_SCOPE_PROCESS,
    FLOOD_NOTICE_INTERVAL_NS, SUPPRESSED_KINDS,
};

use crate::{
    emit::{record, submit_priority},
    maps::{Owner, BUDGETS, FLOODS, SUPPRESSED},
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
    let pkey = BudgetKey {
        id: u64::from(owner.tgid),
        scope: BUDGET_SCOPE_PROCESS,
        class,
    };
    let Some(p) = entry(&pkey, owner.cgroup_id, owner.uid, &owner.comm, now) else {
        return true; // no room to keep state: never suppress what cannot be counted
    };
    let p_next = if process.interval_ns == 0 {
        None
    } else {
        match conforms(p, &process, now) {
            Some(next) => Some(next),
            None => {
                suppress(p, &pkey, s, now);
                return false;
            }
        }
    };
    if cgroup.interval_ns != 0 {
        let ckey = BudgetKey {
            id: owner.cgroup_id,
            scope: BUDGET_SCOPE_CGROUP,
            class,
        };
        if let Some(c) = entry(&ckey, owner.cgroup_id, owner.uid, &owner.comm, now) {
            match conforms(c, &cgroup, now) {
                // SAFETY: pointer into a map value.
                Some(next) => unsafe { (*c).tat_ns = next },
                None => {
                    suppress(p, &pkey, s, now);
                    return false;
                }
            }
        }
    }
    if let Some(next) = p_next {
        // SAFETY: pointer into a map value.
        unsafe { (*p).tat_ns = next };
    }
    true
}

/// The same for a packet, whose program knows only the socket's cgroup.
#[inline(always)]
pub fn admit_packet(class: u32, cgroup_id: u64, s: &Suppressed) -> bool {
    let (_, cgroup) = rates();
    if cgroup.interval_ns == 0 {
        return true;
    }
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let key = BudgetKey {
        id: cgroup_id,
        scope: BUDGET_SCOPE_CGROUP,
        class,
    };
    let Some(c) = entry(&key, cgroup_id, 0, &[0; 16], now) else {
        return true;
    };
    match conforms(c, &cgroup, now) {
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
