//! Process enrichment: executable, command line, lineage and workload (container, pod, unit)
//! of the process behind a record.
//!
//! [`ProcessTable`] is kept from the kernel's fork, exec and exit records (tracepoints), seeded
//! from /proc at start: /proc is read when a process execs (it is alive then), not when its
//! flows are read, so a process that connects and exits at once keeps its executable, command
//! line and parents. Without those records (a kernel that refuses the tracepoints) it falls
//! back to reading /proc per process, validated with the kernel's `comm`.
pub mod cgroups;
pub mod container;
pub mod proc;
pub mod processes;

pub use container::Workload;
pub use proc::{cmdline_string, exe_link, ppid_of_stat, read_proc, ProcessInfo, MAX_CMDLINE_BYTES};
pub use processes::ProcessTable;
