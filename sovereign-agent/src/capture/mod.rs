//! Stage 1, capture: the kernel side and the loop that reads it. [`cgroup`] finds what to
//! watch, [`bpf`] loads and attaches the programs, [`pipeline`] drains their ring buffers and
//! turns records into events (enriched, named, judged) for the sinks; [`existing`] reports the
//! connections open before the programs were attached, and [`flood`] what the kernel's
//! per-workload budgets suppressed.
pub mod bpf;
pub mod cgroup;
pub mod existing;
pub mod flood;
pub mod pipeline;
