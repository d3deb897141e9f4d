//! Exit codes, named once. Beyond 0 and 1 they are the BSD sysexits values (`sysexits.h`), so
//! a service manager or script can tell a bad argument from a missing file from a kernel that
//! refuses the programs; docs/operations.md lists what each means for the agent.

/// Success; for `policy explain`, the flow is allowed.
pub const OK: u8 = 0;
/// A failure the message explains (a damaged journal, a failed download, a broken stream).
pub const FAILURE: u8 = 1;
/// `policy explain`: the flow is a violation; `replay`: new violations under the new policy.
pub const VIOLATION: u8 = 2;
/// `journal verify`: the chain is intact, but a recovery cut records that had been synced
/// (damage below the checkpoint; each is printed, with where it was kept).
pub const DAMAGE_RECOVERED: u8 = 3;
/// EX_USAGE: a bad argument, configuration or filter.
pub const USAGE: u8 = 64;
/// EX_DATAERR: the journal's data is damaged beyond what recovery may repair.
pub const DATAERR: u8 = 65;
/// EX_NOINPUT: the input (a journal directory) does not exist or is not one.
pub const NOINPUT: u8 = 66;
/// EX_UNAVAILABLE: a service or the kernel cannot be used (no cgroup v2, programs refused, the
/// agent's API unreachable).
pub const UNAVAILABLE: u8 = 69;
/// EX_CANTCREAT: an output, socket, listener or journal file cannot be created.
pub const CANTCREAT: u8 = 73;
/// EX_IOERR: reading the ring buffers or signals failed while running.
pub const IOERR: u8 = 74;
/// EX_TEMPFAIL: try again later (another agent holds the journal's lock).
pub const TEMPFAIL: u8 = 75;
/// EX_NOPERM: not permitted to load eBPF programs (not root, no CAP_BPF).
pub const NOPERM: u8 = 77;
