//! Installs what a new machine lacks, following docs/development.md ("The eBPF toolchain"), and nothing else.
//!
//! - Debian packages: Debian's rustc/cargo 1.96 with a prebuilt `core` for bpfel-unknown-none
//!   (no rust-src or nightly needed), LLVM 22 for bpf-linker, and the tools the tests drive
//!   (bpftool, curl, python3, iproute2, util-linux's setpriv, dnsmasq, dig, openssl,
//!   nats-server, rsyslog with TLS).
//! - bpf-linker 0.13.0 built against that LLVM 22.
//! - tracefs mounted (aya resolves tracepoint ids through it).
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Debian packages and why each is needed.
const PACKAGES: &[(&str, &str)] = &[
    ("rustc-web", "rustc for the eBPF target"),
    ("cargo-web", "cargo matching rustc-web"),
    (
        "rust-web-clippy",
        "clippy for the eBPF crate on its own target",
    ),
    (
        "libstd-rust-web-dev-bpf",
        "prebuilt core for bpfel-unknown-none",
    ),
    ("llvm-22-dev", "LLVM for bpf-linker"),
    ("bpftool", "tests inspect attached programs"),
    ("curl", "end-to-end test client"),
    ("python3", "end-to-end test client and server"),
    (
        "python3-venv",
        "a virtualenv for the gRPC test client (grpcio)",
    ),
    ("iproute2", "network namespaces in tests"),
    ("util-linux", "setpriv, to test running without privileges"),
    ("dnsmasq-base", "a real DNS server for the naming tests"),
    (
        "bind9-dnsutils",
        "dig, a real DNS client for the naming tests",
    ),
    ("openssl", "TLS client and server for the SNI tests"),
    (
        "prometheus",
        "promtool and a real Prometheus server for the metrics tests",
    ),
    ("systemd", "systemd-analyze verify for the service unit"),
    ("lintian", "Debian's own checker for the package"),
    (
        "docker.io",
        "a real container runtime (dockerd, runc) for the container test",
    ),
    (
        "debootstrap",
        "a Debian base image for the agent's Containerfile",
    ),
    (
        "busybox-static",
        "the workload container's only program, and the VM test guest's init",
    ),
    (
        "nats-server",
        "a real NATS JetStream cluster for the nats sink test",
    ),
    ("rsyslog", "a real syslog receiver for the syslog sink test"),
    (
        "rsyslog-openssl",
        "rsyslog's TLS transport (RFC 5425) for the syslog sink test",
    ),
    (
        "qemu-system-x86",
        "a guest on another kernel for the VM test matrix (cargo xtask vm-test)",
    ),
    (
        "chromium",
        "a real browser that opens, screenshots and prints the HTML report",
    ),
    ("tidy", "an HTML checker for the report"),
];

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn ensure() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !package_installed(p))
        .collect();
    if !missing.is_empty() {
        require_root(&format!("install Debian packages {}", missing.join(" ")))?;
        eprintln!("xtask setup: installing {}", missing.join(" "));
        run(Command::new("apt-get").arg("update").arg("-qq"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }

    if !bpf_linker_ok() {
        eprintln!("xtask setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22");
        run(
            Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args([
                    "install",
                    "bpf-linker",
                    "--version",
                    BPF_LINKER_VERSION,
                    "--locked",
                ])
                .args(["--no-default-features", "--features", "llvm-22"])
                // Without it the build finds /usr/bin/llvm-config (LLVM 14) and fails to link.
                .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
        )?;
    }

    ensure_python_grpc()?;

    if !is_mountpoint("/sys/kernel/tracing") {
        if is_root() {
            eprintln!("xtask setup: mounting tracefs at /sys/kernel/tracing");
            run(Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"]))?;
        } else {
            eprintln!("xtask setup: tracefs is not mounted (needs root); skipping");
        }
    }
    Ok(())
}

/// The Python gRPC client the API tests use (an independent implementation of gRPC), in a
/// virtualenv under target/: grpcio, its code generator, reflection and health clients; and
/// the Kubernetes schema validator.
pub const PYTHON_GRPC_PACKAGES: &[&str] = &[
    "grpcio>=1.60",
    "grpcio-tools>=1.60",
    "grpcio-reflection>=1.60",
    "grpcio-health-checking>=1.60",
    // An independent NATS client: reads back what the nats sink published to JetStream.
    "nats-py>=2.6",
    // Validates the Kubernetes manifests against the API schemas of a given version.
    "kubernetes-validate>=1.31",
];

fn ensure_python_grpc() -> Result<()> {
    let venv = crate::workspace_root().join("target/python-grpc");
    let python = venv.join("bin/python");
    let ok = Command::new(&python)
        .args([
            "-c",
            "import grpc, grpc_tools, grpc_reflection, grpc_health, kubernetes_validate, nats",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Ok(());
    }
    eprintln!(
        "xtask setup: installing the Python gRPC test client in {}",
        venv.display()
    );
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PYTHON_GRPC_PACKAGES))?;
    Ok(())
}

fn package_installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
}

fn bpf_linker_ok() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
}

fn is_mountpoint(path: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|m| m.lines().any(|l| l.split_whitespace().nth(4) == Some(path)))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!("need root to {what}: run this command as root (e.g. with sudo)");
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Whether rustup has a nightly toolchain (it ships the sanitizer runtimes cargo-fuzz needs).
pub fn has_nightly() -> bool {
    Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// cargo-fuzz and a nightly toolchain.
pub fn ensure_fuzz() -> Result<()> {
    if !has_nightly() {
        bail!("fuzzing needs rustup's nightly toolchain (`rustup toolchain install nightly`)");
    }
    let has_fuzz = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_fuzz {
        eprintln!("xtask setup: installing cargo-fuzz");
        run(
            Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
                "install",
                "cargo-fuzz",
                "--locked",
            ]),
        )?;
    }
    Ok(())
}
