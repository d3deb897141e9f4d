//! The `sovereign-agent` binary: parse the command line and run the subcommand
//! (`sovereign_agent::cli`), whose exit code this process returns.
use std::process::ExitCode;

use clap::Parser;
use sovereign_agent::cli::args::Cli;

fn main() -> ExitCode {
    ExitCode::from(Cli::parse().command.execute())
}
