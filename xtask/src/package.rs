//! `cargo xtask package deb`: the Debian package, built from the workspace with dpkg-deb
//! (no debhelper source tree: the layout is small and stated here in full).
//!
//!   /usr/bin/sovereign-agent, /usr/bin/sovereign-collector
//!   /lib/systemd/system/sovereign-agent.service
//!   /lib/systemd/system/sovereign-agent-report.{service,timer}  the weekly report (not enabled)
//!   /etc/sovereign-agent/agent.toml                         conffile: kept on upgrade
//!   /usr/share/sovereign-agent/examples/policies/*.toml     the example policies
//!   /usr/share/doc/sovereign-agent/                         README, copyright, changelog
use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

pub struct Options {
    pub out: PathBuf,
    /// Debian revision (the part after the upstream version): `1`, `2`, ...
    pub revision: String,
    /// Cargo profile of the binaries: `release` for what users install.
    pub profile: String,
}

const NAME: &str = "sovereign-agent";

/// Builds the binaries and the package; returns the `.deb`'s path.
pub fn deb(root: &Path, opts: &Options) -> Result<PathBuf> {
    let mut build = vec!["build", "--package", NAME, "--bins"];
    let profile_arg = format!("--profile={}", opts.profile);
    build.push(&profile_arg);
    crate::cargo(&build)?;
    let bin_dir = root.join("target").join(match opts.profile.as_str() {
        "dev" => "debug",
        p => p,
    });
    let upstream = env!("CARGO_PKG_VERSION");
    let version = format!("{upstream}-{}", opts.revision);
    let stage = root.join("target/debian").join(format!("{NAME}_{version}"));
    let _ = fs::remove_dir_all(&stage);
    let put = |src: &Path, dst: &str, mode: u32| -> Result<()> {
        let to = stage.join(dst.trim_start_matches('/'));
        fs::create_dir_all(to.parent().unwrap())?;
        fs::copy(src, &to).with_context(|| format!("{} -> {}", src.display(), to.display()))?;
        fs::set_permissions(&to, fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    for bin in ["sovereign-agent", "sovereign-collector"] {
        put(&bin_dir.join(bin), &format!("/usr/bin/{bin}"), 0o755)?;
        // Symbols stay out of the package, as in every Debian binary package (panics still
        // name their source line: that is not a symbol).
        let status = Command::new("strip")
            .args([
                "--strip-unneeded",
                "--remove-section=.comment",
                "--remove-section=.note",
            ])
            .arg(stage.join("usr/bin").join(bin))
            .status()
            .context("strip (binutils)")?;
        if !status.success() {
            bail!("strip {bin} failed");
        }
    }
    let packaging = root.join("packaging");
    for unit in [
        "sovereign-agent.service",
        "sovereign-agent-report.service",
        "sovereign-agent-report.timer",
    ] {
        put(
            &packaging.join("systemd").join(unit),
            &format!("/lib/systemd/system/{unit}"),
            0o644,
        )?;
    }
    put(
        &packaging.join("agent.toml"),
        "/etc/sovereign-agent/agent.toml",
        0o644,
    )?;
    for entry in fs::read_dir(root.join("examples/policies"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            put(
                &path,
                &format!("/usr/share/{NAME}/examples/policies/{name}"),
                0o644,
            )?;
        }
    }
    let doc = format!("/usr/share/doc/{NAME}");
    put(&root.join("README.md"), &format!("{doc}/README.md"), 0o644)?;
    put(
        &packaging.join("debian/copyright"),
        &format!("{doc}/copyright"),
        0o644,
    )?;
    let changelog = stage.join(format!("usr/share/doc/{NAME}/changelog.Debian"));
    fs::write(
        &changelog,
        format!(
            "{NAME} ({version}) unstable; urgency=medium\n\n  * Built from the workspace by \
             `cargo xtask package deb`.\n\n -- sovereign-agent maintainers \
             <maintainers@example.invalid>  {}\n",
            rfc2822_now()?
        ),
    )?;
    let status = Command::new("gzip")
        .args(["-9n"])
        .arg(&changelog)
        .status()?;
    if !status.success() {
        bail!("gzip changelog failed");
    }
    fs::set_permissions(
        changelog.with_extension("Debian.gz"),
        fs::Permissions::from_mode(0o644),
    )?;

    // DEBIAN/: control, conffiles, maintainer scripts, md5sums.
    let debian = stage.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    for script in ["postinst", "prerm", "postrm"] {
        put(
            &packaging.join("debian").join(script),
            &format!("DEBIAN/{script}"),
            0o755,
        )?;
    }
    fs::write(
        debian.join("conffiles"),
        "/etc/sovereign-agent/agent.toml\n",
    )?;
    let glibc = max_glibc(&stage.join("usr/bin/sovereign-agent"))?;
    let installed_kib = dir_size(&stage.join("usr"))?.div_ceil(1024)
        + dir_size(&stage.join("lib"))?.div_ceil(1024)
        + dir_size(&stage.join("etc"))?.div_ceil(1024);
    fs::write(
        debian.join("control"),
        format!(
            "Package: {NAME}\nVersion: {version}\nArchitecture: amd64\n\
             Maintainer: sovereign-agent maintainers <maintainers@example.invalid>\n\
             Installed-Size: {installed_kib}\n\
             Depends: libc6 (>= {glibc}), libgcc-s1\n\
             Section: admin\nPriority: optional\n\
             Homepage: https://example.invalid/sovereign-agent\n\
             Description: data-residency monitor for outbound connections (eBPF)\n \
             sovereign-agent watches every outbound connection of the hosts that run\n \
             sovereign LLMs and CRM integrations with kernel eBPF programs, names each\n \
             destination (DNS, TLS SNI), judges it against a residency policy, records\n \
             every flow in a tamper-evident journal and streams alerts over gRPC.\n"
        ),
    )?;
    fs::write(debian.join("md5sums"), md5sums(&stage)?)?;
    for f in ["control", "conffiles", "md5sums"] {
        fs::set_permissions(debian.join(f), fs::Permissions::from_mode(0o644))?;
    }
    fs::create_dir_all(&opts.out)?;
    let deb = opts.out.join(format!("{NAME}_{version}_amd64.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group", "-Zxz"])
        .arg(&stage)
        .arg(&deb)
        .status()
        .context("dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb --build failed");
    }
    Ok(deb)
}

/// The newest `GLIBC_x.y` symbol version the binary needs.
fn max_glibc(binary: &Path) -> Result<String> {
    let bytes = fs::read(binary)?;
    let mut best = (2u32, 17u32);
    let needle = b"GLIBC_2.";
    let mut i = 0;
    while let Some(pos) = bytes[i..].windows(needle.len()).position(|w| w == needle) {
        let start = i + pos + needle.len();
        let digits: String = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .map(|&b| b as char)
            .collect();
        if let Ok(minor) = digits.parse::<u32>() {
            best = best.max((2, minor));
        }
        i = start;
    }
    Ok(format!("{}.{}", best.0, best.1))
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    if !dir.exists() {
        return Ok(0);
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// `md5sum` of every file outside DEBIAN/, paths relative to the root (what dpkg expects).
fn md5sums(stage: &Path) -> Result<String> {
    let out = Command::new("sh")
        .current_dir(stage)
        .args([
            "-c",
            "find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\\./||' | LC_ALL=C sort | xargs md5sum",
        ])
        .output()
        .context("md5sum")?;
    if !out.status.success() {
        bail!("md5sum: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn rfc2822_now() -> Result<String> {
    let out = Command::new("date").arg("-R").output()?;
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}
