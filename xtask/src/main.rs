//! cargo xtask: the project's own set-up, run and test commands.
//!
//!   cargo xtask setup   install exactly what is missing (Debian packages, bpf-linker built
//!                       against LLVM 22, tracefs); does nothing when all is present
//!   cargo xtask run     setup, build (release), run the agent on the whole host
//!   cargo xtask test    setup, then fmt, clippy, build and every test (integration tests
//!                       load the real programs: root), the VM tests on 6.1, the fuzzers
//!   cargo xtask integration-test   only the root-only integration tests (the `tests` crate)
//!   cargo xtask bench   throughput with and without the agent attached (root)
//!   cargo xtask bench-alerts   alert throughput and latency through a real collector and each sink
//!   cargo xtask fuzz    every fuzz target for a bounded time (nightly)
//!   cargo xtask package deb   the Debian package, into target/debian/
//!   cargo xtask vm-test --kernel 6.1   the kernel-facing integration tests in a qemu guest
//!                       on Debian's 6.1 kernel (or `host`, or a kernel package)
//!
//! A plain `cargo test` (no root) runs the unit tests and the agent crate's own integration
//! tests; the `tests` crate is outside `default-members` for that reason.
mod bench;
mod package;
mod setup;
mod steps;
mod vm;

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
    /// Alert push throughput and connect()-to-subscriber latency through a real collector.
    BenchAlerts,
    /// Run every fuzz target (cargo fuzz, nightly) for a bounded time; fail on any crash.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Build a package: `deb` (Debian/Ubuntu) into target/debian/ (or --out).
    Package {
        #[arg(value_parser = ["deb"])]
        format: String,
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Debian revision, e.g. 2 for the second package of one upstream version.
        #[arg(long, default_value = "1")]
        revision: String,
        /// Cargo profile of the binaries.
        #[arg(long, default_value = "release")]
        profile: String,
    },
    /// Only the root-only integration tests (the `tests` crate: real kernel programs, real
    /// agents), after building the binaries they run.
    IntegrationTest {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The kernel-facing integration suites on another kernel, in a qemu guest (root).
    VmTest {
        /// `6.1` (Debian's LTS kernel, downloaded), `host` (this machine, no guest), or a
        /// kernel package (.deb) or the directory it was extracted into.
        #[arg(long, default_value = "6.1")]
        kernel: String,
        /// Suites of the tests crate to run (default: those that exercise the kernel).
        #[arg(long, value_delimiter = ',')]
        suites: Vec<String>,
        /// Stop the whole run after this many minutes.
        #[arg(long, default_value_t = 40)]
        timeout_minutes: u64,
        /// Extra arguments for every test executable (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
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
        Cmd::BenchAlerts => {
            setup::ensure()?;
            bench_alerts(&root)
        }
        Cmd::Package {
            format: _,
            out,
            revision,
            profile,
        } => {
            let deb = package::deb(
                &root,
                &package::Options {
                    out: out.unwrap_or_else(|| root.join("target/debian")),
                    revision,
                    profile,
                },
            )?;
            println!("{}", deb.display());
            Ok(())
        }
        Cmd::Fuzz { seconds } => {
            setup::ensure()?;
            setup::ensure_fuzz()?;
            fuzz(&root, seconds)
        }
        Cmd::IntegrationTest { args } => {
            setup::ensure()?;
            cargo(&[&["build"], ALL_HOST_CRATES, &["--bins"]].concat())?;
            let mut test = vec!["test", "--package", "sovereign-agent-tests"];
            if !args.is_empty() {
                test.push("--");
                test.extend(args.iter().map(String::as_str));
            }
            cargo_test_with_summary(&test).map(drop)
        }
        Cmd::VmTest {
            kernel,
            suites,
            timeout_minutes,
            args,
        } => {
            setup::ensure()?;
            vm::run(&root, &vm_options(kernel, suites, timeout_minutes, args))
        }
        Cmd::Test { args } => test(&root, &args),
    }
}

/// `cargo xtask test`: everything CI checks, each step timed ([`steps`]).
fn test(root: &std::path::Path, args: &[String]) -> Result<()> {
    let mut steps = steps::Steps::new();
    steps.run("setup", setup::ensure)?;
    steps.run("fmt", || cargo(&["fmt", "--all", "--check"]))?;
    // Every crate but the eBPF one, which builds only for bpfel-unknown-none (through
    // build.rs): the default members and the root-only `tests` crate.
    steps.run("clippy", || {
        cargo(
            &[
                &["clippy"],
                ALL_HOST_CRATES,
                &["--all-targets", "--", "-D", "warnings"],
            ]
            .concat(),
        )
    })?;
    steps.run("clippy-ebpf", || clippy_ebpf(root))?;
    steps.run("doc-links", doc_links)?;
    steps.run("import-graph", || import_graph(root))?;
    steps.run("build", || {
        cargo(&[&["build"], ALL_HOST_CRATES, &["--bins"]].concat())
    })?;
    let mut test = [&["test"], ALL_HOST_CRATES].concat();
    if !args.is_empty() {
        test.push("--");
        test.extend(args.iter().map(String::as_str));
    }
    let summary = steps.run("test", || cargo_test_with_summary(&test))?;
    // Every criterion benchmark once, as a test: a benchmark whose assertions no longer
    // hold fails here, not months later when someone measures.
    if args.is_empty() {
        steps.run("bench-as-test", || {
            cargo(&[
                "bench",
                "--package",
                "sovereign-agent",
                "--benches",
                "--",
                "--test",
            ])
        })?;
    }
    // The kernel-facing suites again on Debian's 6.1 LTS kernel, in a qemu guest: the
    // kernel most node pools run, which differs from this machine's in what its verifier
    // accepts (docs/kernel.md). SOVEREIGN_VM_TEST=0 skips it.
    if args.is_empty() {
        if std::env::var("SOVEREIGN_VM_TEST").is_ok_and(|v| v == "0") {
            eprintln!("xtask: WARNING: the 6.1 VM tests skipped (SOVEREIGN_VM_TEST=0)");
        } else {
            steps.run("vm-6.1", || {
                vm::run(root, &vm_options("6.1".into(), Vec::new(), 30, Vec::new()))
            })?;
        }
    }
    // The parsers of untrusted packets, fuzzed for a bounded time on every run.
    let seconds = std::env::var("SOVEREIGN_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    if seconds > 0 {
        if setup::has_nightly() {
            steps.run("fuzz", || {
                setup::ensure_fuzz()?;
                fuzz(root, seconds)
            })?;
        } else {
            // Building and testing need no nightly; only the fuzzers do.
            eprintln!(
                "xtask: WARNING: fuzzing skipped: rustup has no nightly toolchain \
                 (`rustup toolchain install nightly`, then `cargo xtask fuzz`)"
            );
            println!("fuzz: skipped (no nightly toolchain)");
        }
    }
    steps.print();
    // The totals once more, as the last line.
    println!("{summary}");
    Ok(())
}

fn vm_options(kernel: String, suites: Vec<String>, minutes: u64, args: Vec<String>) -> vm::Options {
    vm::Options {
        kernel,
        suites: if suites.is_empty() {
            vm::DEFAULT_SUITES.iter().map(ToString::to_string).collect()
        } else {
            suites
        },
        test_args: args,
        timeout: std::time::Duration::from_secs(minutes * 60),
    }
}

/// Cargo arguments that select every crate built for the host: the default members and the
/// root-only integration tests (`tests`, out of `default-members` so that a plain `cargo test`
/// passes without root).
const ALL_HOST_CRATES: &[&str] = &["--workspace", "--exclude", "sovereign-agent-ebpf"];

/// The alert path through a real collector: `sa-bench-alerts` (tests/src/bin, where the
/// integration tests' helpers are), built and run in release.
fn bench_alerts(root: &std::path::Path) -> Result<()> {
    cargo(&[&["build", "--release"], ALL_HOST_CRATES, &["--bins"]].concat())?;
    let release = root.join("target/release");
    let status = Command::new(release.join("sa-bench-alerts"))
        .env("SOVEREIGN_TEST_BIN_DIR", &release)
        .status()
        .context("running target/release/sa-bench-alerts")?;
    if !status.success() {
        bail!("sa-bench-alerts failed ({status})");
    }
    Ok(())
}

/// Lints the eBPF crate on its own target (bpfel-unknown-none), as aya's xtask does: with
/// Debian's toolchain, which has the prebuilt `core` for it, in a target directory of its own.
fn clippy_ebpf(root: &std::path::Path) -> Result<()> {
    let path = format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default());
    eprintln!("xtask: cargo clippy -p sovereign-agent-ebpf --target bpfel-unknown-none (Debian's toolchain)");
    let status = Command::new("/usr/bin/cargo")
        .args([
            "clippy",
            "--package",
            "sovereign-agent-ebpf",
            "--target",
            "bpfel-unknown-none",
        ])
        .args(["--", "-D", "warnings"])
        .env("PATH", path)
        // aya-ebpf needs one unstable feature; so does nothing else (as in build.rs).
        .env("RUSTC_BOOTSTRAP", "aya_ebpf")
        .env("CARGO_TARGET_DIR", root.join("target/bpf-clippy"))
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .context("running /usr/bin/cargo clippy for the eBPF crate")?;
    if !status.success() {
        bail!("clippy on the eBPF crate failed ({status})");
    }
    Ok(())
}

/// The fuzz targets, each run for `seconds` from the recorded packets as seed corpus.
const FUZZ_TARGETS: [&str; 3] = ["dns_response", "tls_client_hello", "journal_record"];

fn fuzz(root: &std::path::Path, seconds: u64) -> Result<()> {
    let fixtures = root.join("sovereign-agent/tests/fixtures");
    for target in FUZZ_TARGETS {
        // Seed the corpus with the packets recorded from real tools.
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let prefix = match target {
            "dns_response" => "dns-",
            "tls_client_hello" => "clienthello-",
            _ => "journal-record-",
        };
        for entry in std::fs::read_dir(&fixtures)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if name.starts_with(prefix) && name.ends_with(".bin") {
                std::fs::copy(&path, corpus.join(&name))?;
            }
        }
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        let status = Command::new("cargo")
            .current_dir(root.join("fuzz"))
            .args(["+nightly", "fuzz", "run", target, "--"])
            .arg(format!("-max_total_time={seconds}"))
            .args(["-rss_limit_mb=2048", "-print_final_stats=1"])
            // The agent's build script builds the eBPF object with Debian's toolchain; the
            // fuzz build must not hand it nightly's sanitizer flags.
            .env_remove("RUSTFLAGS")
            .status()
            .with_context(|| format!("cargo fuzz run {target}"))?;
        if !status.success() {
            bail!("fuzz target {target} failed ({status}): see fuzz/artifacts/{target}/");
        }
        println!("fuzz: {target}: 0 crashes in {seconds} s");
    }
    Ok(())
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs `cargo test`, passing its output through, and ends with one line that totals every
/// test binary ("tests: N passed, N failed"): cargo's own last lines are those of the doc-test
/// binaries, which say "0 passed" and would hide the total.
fn cargo_test_with_summary(args: &[&str]) -> Result<String> {
    use std::io::{BufRead, BufReader};
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut child = Command::new(&cargo)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cargo}"))?;
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |word: &str| -> u64 {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .trim_start_matches("ok. ")
                            .trim_start_matches("FAILED. ")
                            .strip_suffix(word)
                    })
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0)
            };
            passed += count(" passed");
            failed += count(" failed");
        }
    }
    let status = child.wait()?;
    let summary = format!("tests: {passed} passed, {failed} failed");
    println!("{summary}");
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    if passed == 0 {
        bail!("no test ran");
    }
    Ok(summary)
}

/// The agent's rustdoc, private items included, with every intra-doc link resolved: keeps
/// `lib.rs`'s layout map and each module's map true when files move.
fn doc_links() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!(
        "xtask: cargo doc -p sovereign-agent --document-private-items (broken links are errors)"
    );
    let status = Command::new(&cargo)
        .args([
            "doc",
            "-p",
            "sovereign-agent",
            "--no-deps",
            "--document-private-items",
        ])
        .env(
            "RUSTDOCFLAGS",
            "-D rustdoc::broken_intra_doc_links -A rustdoc::private_intra_doc_links",
        )
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("the agent's documentation has broken links ({status})");
    }
    Ok(())
}

/// No new import cycle between the agent's files and no import against the stages' order
/// (`xtask/import_cycles.py` names the few still there and why).
fn import_graph(root: &std::path::Path) -> Result<()> {
    eprintln!("xtask: xtask/import_cycles.py sovereign-agent/src");
    let status = Command::new("python3")
        .arg(root.join("xtask/import_cycles.py"))
        .arg(root.join("sovereign-agent/src"))
        .status()
        .context("running python3 xtask/import_cycles.py")?;
    if !status.success() {
        bail!("the agent's import graph has a new cycle or a wrong-way import ({status})");
    }
    Ok(())
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
