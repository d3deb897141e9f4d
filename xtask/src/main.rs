//! cargo xtask: the project's own set-up, run and test commands.
//!
//!   cargo xtask setup   install exactly what is missing (Debian packages, bpf-linker built
//!                       against LLVM 22, tracefs); does nothing when all is present
//!   cargo xtask run     setup, build (release), run the agent on the whole host
//!   cargo xtask test    setup, then fmt, clippy, build and every test (integration tests
//!                       load the real programs: root)
//!   cargo xtask bench   throughput with and without the agent attached (root)
mod bench;
mod setup;

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need, and nothing that is already there.
    Setup,
    /// Build the agent (release) and run it; arguments after `--` go to `sovereign-agent run`.
    Run {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Workload throughput with and without the agent attached, as a markdown table.
    Bench,
    /// Check formatting and lints, then run every unit and integration test.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let root = workspace_root();
    std::env::set_current_dir(&root).with_context(|| format!("cd {}", root.display()))?;
    match cli.command {
        Cmd::Setup => setup::ensure(),
        Cmd::Run { args } => {
            setup::ensure()?;
            cargo(&["build", "--release", "--package", "sovereign-agent"])?;
            let status = Command::new(root.join("target/release/sovereign-agent"))
                .arg("run")
                .args(&args)
                .status()
                .context("starting target/release/sovereign-agent")?;
            if !status.success() {
                bail!("sovereign-agent exited with {status}");
            }
            Ok(())
        }
        Cmd::Bench => {
            setup::ensure()?;
            bench::run(&root)
        }
        Cmd::Test { args } => {
            setup::ensure()?;
            cargo(&["fmt", "--all", "--check"])?;
            // The eBPF crate builds only for bpfel-unknown-none (through build.rs), so lint and
            // test the default members.
            cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])?;
            cargo(&["build", "--bins"])?;
            let mut test = vec!["test"];
            if !args.is_empty() {
                test.push("--");
                test.extend(args.iter().map(String::as_str));
            }
            cargo(&test)
        }
    }
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub(crate) fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
