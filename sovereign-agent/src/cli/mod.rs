//! The command line of `sovereign-agent`: [`args`] holds the top-level parser and hands each
//! subcommand to its own module, which owns that subcommand's arguments and prints its results.
//! Every subcommand returns an exit code from [`crate::exit`].
pub mod args;
pub mod client;
pub mod config;
pub mod datasets;
pub mod journal;
pub mod policy;
pub mod replay;
pub mod report;
pub mod run;
pub mod status;
pub mod tail;

/// Prints one message for the user, the way every subcommand reports an error.
fn complain(message: impl std::fmt::Display) {
    eprintln!("sovereign-agent: {message}");
}
