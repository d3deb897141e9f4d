//! `sovereign-agent journal verify|export`, and the record filters `replay` and `report` share:
//! [`filter`] (the flags and what they compile to), [`verify`](mod@verify), [`export`](mod@export) (JSON lines, CSV).
mod export;
mod filter;
mod verify;

use std::path::PathBuf;

use clap::Subcommand;

use crate::{cli::complain, exit};
use export::{export, ExportFormat};
pub use filter::{parse_time, parse_time_at, Filter, FilterArgs, VerdictFilter};
use verify::verify;

#[derive(Subcommand)]
pub enum JournalCommand {
    /// Check every frame, checksum, sequence number, hash link, seal and the HEAD checkpoint
    /// (and signatures with --public-key). Exit 0 valid, 1 at the first problem.
    Verify {
        dir: PathBuf,
        /// Ed25519 public key (PEM) that must have signed every seal and the checkpoint.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print records as JSON lines (the live output's fields plus `seq`) or CSV.
    Export {
        dir: PathBuf,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
        format: String,
    },
}

impl JournalCommand {
    pub fn execute(self) -> u8 {
        match self {
            JournalCommand::Verify {
                dir,
                public_key,
                json,
            } => verify(&dir, public_key.as_deref(), json),
            JournalCommand::Export {
                dir,
                filter,
                format,
            } => match filter.compile() {
                Ok(filter) => export(
                    &dir,
                    &filter,
                    if format == "csv" {
                        ExportFormat::Csv
                    } else {
                        ExportFormat::Jsonl
                    },
                ),
                Err(e) => {
                    complain(e);
                    exit::USAGE
                }
            },
        }
    }
}

#[cfg(test)]
mod tests;
