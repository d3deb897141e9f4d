//! Stage 1, capture: the kernel side and the loop that reads it. [`cgroup`] finds what to
//! watch, [`bpf`] loads and attaches the programs, [`pipeline`] drains their ring buffers and
//! turns records into events (enriched, named, judged) for the sinks; [`existing`] reports the
//! connections open before the programs were attached, [`budgets`] what the kernel's
//! per-workload budgets suppressed, and [`dns_provenance`] what the kernel knows of DNS packets'
//! sockets (their network namespace, a named resolver's cgroup).
pub mod bpf;
pub mod budgets;
pub mod cgroup;
pub mod dns_provenance;
pub mod existing;
pub mod pipeline;
