//! The top-level parser: one variant per subcommand, whose arguments live with its code.
use clap::{Parser, Subcommand};

use super::{config, datasets, journal, policy, replay, report, run, status, tail};

#[derive(Parser)]
#[command(
    name = "sovereign-agent",
    version,
    about = "Watches every outbound connection of a host with eBPF and reports each flow"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Attach to a cgroup (default: the whole host) and write one JSON line per flow event.
    Run(run::RunArgs),
    /// Validate a configuration file and print the effective settings.
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    /// Keep the cloud providers' IP-range files current.
    Datasets {
        #[command(subcommand)]
        command: datasets::DatasetsCommand,
    },
    /// Check a residency policy, or explain its verdict for one flow.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Verify or export the forensic journal.
    Journal {
        #[command(subcommand)]
        command: journal::JournalCommand,
    },
    /// Print the running agent's events as they happen (from its gRPC API): coloured lines on a
    /// terminal, JSON lines otherwise.
    Tail(tail::TailArgs),
    /// Print the running agent's status (from its gRPC API).
    Status(status::StatusArgs),
    /// Judge every flow of a journal again under a new policy and report what changes
    /// (exit 0: no new violations, 2: new violations).
    Replay(replay::ReplayArgs),
    /// The residency report of a journal for a period: inventory, countries and cloud
    /// regions, external AI APIs, verdicts and the journal's integrity (HTML, JSON or CSV).
    Report(report::ReportArgs),
}

impl Command {
    /// Runs the subcommand; its exit code.
    pub fn execute(self) -> u8 {
        if !matches!(self, Command::Run(_)) {
            // A command whose output is piped into `head` ends quietly, as Unix tools do,
            // rather than panicking on the closed pipe. (The agent itself reports a closed
            // output.)
            // SAFETY: setting a signal's disposition to the default before any thread starts.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        }
        match self {
            Command::Run(args) => run::execute(&args),
            Command::Config { command } => command.execute(),
            Command::Datasets { command } => command.execute(),
            Command::Policy { command } => command.execute(),
            Command::Journal { command } => command.execute(),
            Command::Tail(args) => tail::execute_tail(args),
            Command::Status(args) => status::execute_status(&args),
            Command::Replay(args) => replay::run(&args),
            Command::Report(args) => report::run(&args),
        }
    }
}
