//! Tracepoints: a process is born (task/task_newtask, threads skipped), executes a program
//! (sched/sched_process_exec) or ends (sched/sched_process_exit, its leader thread). Each
//! copies the kernel's facts at that moment into a [`ProcessRecord`]: user space keeps its
//! process table from these, so a flow's executable and lineage are known even when the
//! process exits before the flow is read. Tracepoints fire for the whole host; only tasks in
//! the watched cgroup's subtree are reported (their ancestors outside it come from /proc).
//!
//! Process records are budgeted per cgroup like flows (`admit_process_record`): a workload
//! that forks or execs in a loop has the excess counted and named in a `flood` event instead
//! of filling the ring that every workload's DNS, TLS and exec records share. The arguments of
//! an execve are copied when it is entered but written only when it succeeds: a loop of
//! failing execs with huge argument lists writes nothing at all.
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{
            bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_ktime_get_ns,
            bpf_probe_read_kernel_str, bpf_probe_read_user, bpf_probe_read_user_str,
        },
    },
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext,
};
use sovereign_agent_common::{
    ProcessRecord, RecordKind, ARGV_LIMIT, ARGV_MAX_ARGS, PROCESS_PATH_LEN,
};

use crate::{
    budget::admit_process_record,
    emit::count_loss,
    maps::{ARGV_SCRATCH, EVENTS, PENDING_ARGV, PROCESS_SCOPE},
};

/// Process records never wake the reader: they only need to be read before the flows that
/// follow them, and the ring keeps that order; a flow's record, or the agent's drain timer,
/// wakes it. (Waking it per record cost an exec-heavy workload several microseconds per
/// record: an interrupt and a task wake-up each.)
const BPF_RB_NO_WAKEUP: u64 = 1;

/// Whether the current task is in the watched cgroup or below it. User space writes the
/// watched cgroup's id and level when it attaches; before that nothing is reported.
#[inline(always)]
fn in_scope() -> bool {
    let (Some(id), Some(level)) = (PROCESS_SCOPE.get(0), PROCESS_SCOPE.get(1)) else {
        return false;
    };
    if *id == 0 {
        return false;
    }
    // SAFETY: helper with a plain integer argument.
    unsafe { bpf_get_current_ancestor_cgroup_id(*level as i32) == *id }
}

// Offsets of the fields read, in their tracepoint records. User space sets them at load time
// from the tracepoints' format files; these defaults are those of every kernel since 5.x.
#[unsafe(no_mangle)]
static EXEC_FILENAME_OFFSET: u32 = 8;
#[unsafe(no_mangle)]
static EXEC_OLD_PID_OFFSET: u32 = 16;
#[unsafe(no_mangle)]
static NEWTASK_PID_OFFSET: u32 = 8;
#[unsafe(no_mangle)]
static NEWTASK_FLAGS_OFFSET: u32 = 32;
#[unsafe(no_mangle)]
static EXECVE_ARGV_OFFSET: u32 = 24;
#[unsafe(no_mangle)]
static EXECVEAT_ARGV_OFFSET: u32 = 32;

const CLONE_THREAD: u64 = 0x0001_0000;

#[inline(always)]
fn global(v: &u32) -> usize {
    // SAFETY: a plain read of a load-time constant; volatile so it is not folded.
    unsafe { core::ptr::read_volatile(v) as usize }
}

#[tracepoint]
pub fn process_fork(ctx: TracePointContext) -> u32 {
    if !in_scope() {
        return 0; // the child is in its parent's cgroup
    }
    // SAFETY: reads inside the tracepoint record, at the offsets of its format.
    let flags: u64 = unsafe { ctx.read_at(global(&NEWTASK_FLAGS_OFFSET)) }.unwrap_or(CLONE_THREAD);
    if flags & CLONE_THREAD != 0 {
        return 0; // a thread of an existing process
    }
    // SAFETY: as above.
    let Ok(child) = (unsafe { ctx.read_at::<i32>(global(&NEWTASK_PID_OFFSET)) }) else {
        return 0;
    };
    if !admitted() {
        return 0;
    }
    // The current task is the parent.
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    emit(&ctx, RecordKind::Fork, child as u32, parent, false);
    0
}

#[tracepoint]
pub fn process_exec(ctx: TracePointContext) -> u32 {
    if !in_scope() {
        return 0;
    }
    // SAFETY: reads inside the tracepoint record, at the offset of its format.
    let caller = unsafe { ctx.read_at::<i32>(global(&EXEC_OLD_PID_OFFSET)) }.unwrap_or(0) as u32;
    if admitted() {
        // The arguments first: user space pairs them with the Exec that follows.
        if let Some(args) = PENDING_ARGV.get_ptr(caller) {
            // SAFETY: pointer into a map value, valid for this program's run.
            let args: &ProcessRecord = unsafe { &*args };
            if EVENTS
                .output::<ProcessRecord>(args, BPF_RB_NO_WAKEUP)
                .is_err()
            {
                count_loss();
            }
        }
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        emit(&ctx, RecordKind::Exec, tgid, 0, true);
    }
    let _ = PENDING_ARGV.remove(caller);
    0
}

/// Whether the current task's cgroup may write one more process record now.
#[inline(always)]
fn admitted() -> bool {
    // SAFETY: helper without arguments.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    admit_process_record(cgroup_id, bpf_get_current_uid_gid() as u32, &comm)
}

#[tracepoint]
pub fn execve_args(ctx: TracePointContext) -> u32 {
    if !in_scope() {
        return 0;
    }
    argv(&ctx, global(&EXECVE_ARGV_OFFSET));
    0
}

#[tracepoint]
pub fn execveat_args(ctx: TracePointContext) -> u32 {
    if !in_scope() {
        return 0;
    }
    argv(&ctx, global(&EXECVEAT_ARGV_OFFSET));
    0
}

/// Copies the arguments of the execve being entered (user memory, NUL-separated) into an
/// Argv record kept by thread until the exec succeeds (`process_exec` writes it then): the
/// process table pairs it with the Exec that follows, so the command line is known even when
/// the process is gone before /proc could be read.
#[inline(always)]
fn argv(ctx: &TracePointContext, offset: usize) {
    // SAFETY: reads inside the tracepoint record, at the offset of its format.
    let Ok(argv) = (unsafe { ctx.read_at::<*const *const u8>(offset) }) else {
        return;
    };
    let Some(p) = ARGV_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: p points at this CPU's scratch record; the copies stay inside `path`: each starts
    // below ARGV_LIMIT and reads at most PROCESS_PATH_LEN - ARGV_LIMIT bytes.
    unsafe {
        fill(p, RecordKind::Argv, (pid_tgid >> 32) as u32, 0);
        (*p).tid = pid_tgid as u32;
        let mut off: usize = 0;
        let mut i = 0;
        while i < ARGV_MAX_ARGS {
            let mut arg: *const u8 = core::ptr::null();
            if bpf_probe_read_user((&mut arg as *mut *const u8).cast(), 8, argv.add(i).cast()) != 0
                || arg.is_null()
            {
                break;
            }
            if off >= ARGV_LIMIT {
                (*p).path_truncated = 1;
                break;
            }
            let at = off & (ARGV_LIMIT - 1);
            let n = bpf_probe_read_user_str(
                (*p).path.as_mut_ptr().add(at).cast(),
                (PROCESS_PATH_LEN - ARGV_LIMIT) as u32,
                arg.cast(),
            );
            if n <= 0 {
                break;
            }
            off = at + n as usize; // the NUL separates arguments
            i += 1;
        }
        (*p).path_len = off as u32;
    }
    // Stored from the scratch record in place (a copy would not fit the 512-byte stack).
    // SAFETY: p points at this CPU's scratch record.
    let args: &ProcessRecord = unsafe { &*p };
    let _ = PENDING_ARGV.insert(pid_tgid as u32, args, 0);
}

#[tracepoint]
pub fn process_exit(ctx: TracePointContext) -> u32 {
    if !in_scope() {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if pid_tgid as u32 == tgid && admitted() {
        emit(&ctx, RecordKind::Exit, tgid, 0, false);
    }
    0
}

/// The header of a record: the current task's facts.
///
/// # Safety
/// `p` points at a reserved, writable ProcessRecord.
#[inline(always)]
unsafe fn fill(p: *mut ProcessRecord, kind: RecordKind, tgid: u32, ppid: u32) {
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: the caller's.
    unsafe {
        (*p).kind = kind as u32;
        (*p).tid = 0;
        (*p).ts_ns = bpf_ktime_get_ns();
        (*p).tgid = tgid;
        (*p).ppid = ppid;
        (*p).uid = uid_gid as u32;
        (*p).gid = (uid_gid >> 32) as u32;
        (*p).cgroup_id = bpf_get_current_cgroup_id();
        (*p).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        (*p).path_len = 0;
        (*p).path_truncated = 0;
    }
}

#[inline(always)]
fn emit(ctx: &TracePointContext, kind: RecordKind, tgid: u32, ppid: u32, with_path: bool) {
    let Some(mut entry) = EVENTS.reserve::<ProcessRecord>(0) else {
        count_loss();
        return;
    };
    let p = entry.as_mut_ptr();
    // SAFETY: p points at a reserved ProcessRecord; every field but the path's unused tail is
    // written (user space reads `path_len` bytes of it).
    unsafe {
        fill(p, kind, tgid, ppid);
        if with_path {
            (*p).tid = ctx
                .read_at::<i32>(global(&EXEC_OLD_PID_OFFSET))
                .unwrap_or(0) as u32;
            // __data_loc: the string's offset in the record (low 16 bits) and its length
            // with the NUL (high 16 bits).
            if let Ok(loc) = ctx.read_at::<u32>(global(&EXEC_FILENAME_OFFSET)) {
                let src = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
                let n = bpf_probe_read_kernel_str(
                    (*p).path.as_mut_ptr().cast(),
                    PROCESS_PATH_LEN as u32,
                    src.cast(),
                );
                if n > 0 {
                    (*p).path_len = (n - 1) as u32;
                }
                (*p).path_truncated = u32::from((loc >> 16) as usize > PROCESS_PATH_LEN);
            }
        }
    }
    entry.submit(BPF_RB_NO_WAKEUP);
}
