//! sovereign-agent: watches every outbound connection of a host (or of one cgroup) with eBPF,
//! names and judges each flow against a residency policy, journals it and serves it.
//!
//! # Layout
//!
//! The modules follow the data flow, in this order:
//!
//! - [`capture`]: find the cgroup, load and attach the kernel programs, drain their ring
//!   buffers ([`capture::pipeline`] drives every later stage for each record); connections
//!   open at start, and what the kernel's flood budgets suppressed.
//! - [`enrich`]: who made the flow (process, ancestors, cgroup, container), from the kernel's
//!   exec records and /proc.
//! - [`names`]: what the destination is called, from the DNS answers and TLS ClientHellos the
//!   same workload sent and received.
//! - [`policy`]: the verdict for each flow (zones, rules, evidence) and the policy's reloads.
//! - [`enforce`]: the policy's enforce rules written into the kernel's maps, so that the
//!   connect and sendmsg programs refuse a non-resident destination.
//! - [`event`]: the event the stages above fill in and everything below reads (with [`clock`]
//!   for its timestamps).
//! - [`alerts`]: violations and floods become alerts, folded per workload, destination and
//!   rule.
//! - [`journal`]: the tamper-evident journal (write, read, verify, convert), the JSON-lines
//!   output, and the flow ceiling that bounds both.
//! - [`serve`]: the gRPC API, the push of alerts to the collector, `/metrics` and the health
//!   endpoints, systemd's notify protocol.
//! - [`report`]: the residency report of a journal (HTML, JSON, CSV) for auditors.
//!
//! Around them: [`config`] (the file and the environment, validated), [`agent`] (`run`: wires
//! the stages together), [`cli`] (the command line, one module per subcommand), [`exit`]
//! (exit codes), [`telemetry`] (the agent's own logs and counters), [`shutdown`], and
//! [`escape`] (workload-controlled text made safe for terminals, chats and spreadsheets).
//!
//! Imports run one way, with no cycle between these modules: `names`, `enrich` and `policy`
//! import none of the later ones; `event` holds their results; `alerts` and `journal` read
//! events; `capture` (whose pipeline drives every stage) imports the stages and the journal,
//! and nothing imports it but `serve` (for what it measured), `agent` and `cli`.
pub mod agent;
pub mod alerts;
pub mod capture;
pub mod cli;
pub mod clock;
pub mod config;
pub mod enforce;
pub mod enrich;
pub mod escape;
pub mod event;
pub mod exit;
pub mod journal;
pub mod names;
pub mod policy;
pub mod report;
pub mod serve;
pub mod shutdown;
pub mod telemetry;
