//! sovereign-agent: watches every outbound connection of a host (or of one cgroup) with eBPF
//! and reports each flow. Modules follow the data flow: `cgroup` and `bpf` (kernel side),
//! `pipeline` (ring buffers → events; `existing` adds the connections open at start, `flood`
//! what the kernel's budgets suppressed; `ceiling` folds flows beyond the journal's rate),
//! `enrich`, `event`, `output`; `config`, `telemetry`,
//! `shutdown` and `agent` around them.
pub mod agent;
pub mod alerts;
pub mod api;
pub mod bpf;
pub mod ceiling;
pub mod cgroup;
pub mod clock;
pub mod collector;
pub mod commands;
pub mod config;
pub mod enrich;
pub mod event;
pub mod existing;
pub mod flood;
pub mod journal;
pub mod metrics;
pub mod names;
pub mod output;
pub mod pipeline;
pub mod policy;
pub mod policy_watch;
pub mod push;
pub mod service;
pub mod shutdown;
pub mod telemetry;
