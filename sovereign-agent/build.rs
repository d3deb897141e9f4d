//! Builds the kernel programs (sovereign-agent-ebpf) for bpfel-unknown-none and leaves the
//! object in OUT_DIR, where `bpf::loader` embeds it.
//!
//! The eBPF crate is built by a second cargo, with the toolchain named by
//! `SOVEREIGN_EBPF_TOOLCHAIN` (default `/usr`: Debian's rustc, which ships a prebuilt `core`
//! for bpfel-unknown-none; see docs/development.md). A user with rustup nightly and
//! rust-src can set `SOVEREIGN_EBPF_TOOLCHAIN=nightly RUSTC_BOOTSTRAP=` instead.
use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=SOVEREIGN_EBPF_TOOLCHAIN");
    let toolchain = std::env::var("SOVEREIGN_EBPF_TOOLCHAIN").unwrap_or_else(|_| "/usr".into());
    // aya-ebpf needs one unstable feature; allow it for that crate only. A caller's own
    // RUSTC_BOOTSTRAP (e.g. "1" for -Z build-std) wins.
    if std::env::var_os("RUSTC_BOOTSTRAP").is_none() {
        // SAFETY: the build script is single-threaded here.
        unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "aya_ebpf") };
    }

    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "sovereign-agent-ebpf")
        .ok_or_else(|| anyhow!("package sovereign-agent-ebpf not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    aya_build::build_ebpf(
        [Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::Custom(&toolchain),
    )
    .context("building the kernel programs (run `cargo xtask setup` if tools are missing)")
}
