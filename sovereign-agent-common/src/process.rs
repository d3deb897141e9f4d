//! The process record: fork, exec (with the path and arguments) and exit, and the tracepoint
//! field offsets set at load time.

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
    /// [`RecordKind::Fork`](crate::RecordKind::Fork), [`RecordKind::Exec`](crate::RecordKind::Exec) or [`RecordKind::Exit`](crate::RecordKind::Exit).
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
