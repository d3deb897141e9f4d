//! The CLI's subcommands other than `run`, as functions that print and return an exit code.
pub mod datasets;
pub mod journal;
pub mod policy;
pub mod replay;
pub mod tail;
