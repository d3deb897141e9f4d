//! Process records (fork, arguments, exec, exit) as the kernel sends them, for benches that
//! build a process table.
use sovereign_agent_common::{ProcessView, RecordKind};

/// A record of `kind` for `tgid` (task name `worker`); `path` is the exec'd file or the
/// arguments.
pub fn record(kind: RecordKind, tgid: u32, ppid: u32, path: &[u8]) -> ProcessView<'_> {
    let mut comm = [0u8; 16];
    comm[..6].copy_from_slice(b"worker");
    ProcessView {
        kind,
        tid: tgid,
        ts_ns: 0,
        tgid,
        ppid,
        uid: 0,
        gid: 0,
        cgroup_id: 1,
        comm,
        path,
        path_truncated: false,
    }
}
