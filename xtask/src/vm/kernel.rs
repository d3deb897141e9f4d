//! The kernel a guest boots: a Debian kernel package, downloaded once and extracted under
//! target/vm/kernels/, and the modules the guest loads from it, dependencies first.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// Modules the guest loads, with what they depend on: the 9p root over virtio; veth for the
/// tests' network namespaces; and the socket-diagnostics modules the agent's scan of open
/// connections uses (a Debian system loads those on first use; the guest has no modprobe).
/// Those built into a kernel are skipped.
const MODULES: &[&str] = &[
    "9p",
    "9pnet_virtio",
    "virtio_pci",
    "veth",
    "inet_diag",
    "tcp_diag",
    "udp_diag",
];

/// A kernel to boot: its image and its modules directory.
pub struct Kernel {
    pub package: String,
    pub release: String,
    pub vmlinuz: PathBuf,
    pub modules: PathBuf,
}

impl Kernel {
    pub fn resolve(root: &Path, choice: &str) -> Result<Kernel> {
        let cache = root.join("target/vm/kernels");
        std::fs::create_dir_all(&cache)?;
        let dir = if choice == "6.1" {
            let package = debian_61_package()?;
            let dir = cache.join(&package);
            if !dir.join("boot").is_dir() {
                let deb = download(&package, &cache)?;
                extract(&deb, &dir)?;
            }
            dir
        } else {
            let path = PathBuf::from(choice);
            if path.is_dir() {
                path
            } else if path.extension().is_some_and(|e| e == "deb") {
                let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                let dir = cache.join(stem.as_ref());
                if !dir.join("boot").is_dir() {
                    extract(&path, &dir)?;
                }
                dir
            } else {
                bail!(
                    "--kernel {choice}: expected 6.1, host, a kernel package (.deb) or the \
                     directory one was extracted into"
                );
            }
        };
        Self::from_dir(&dir)
    }

    /// An extracted kernel package: boot/vmlinuz-RELEASE and lib/modules/RELEASE.
    fn from_dir(dir: &Path) -> Result<Kernel> {
        let boot = dir.join("boot");
        let vmlinuz = std::fs::read_dir(&boot)
            .with_context(|| format!("{}: no boot/ directory", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
            .with_context(|| format!("{}: no vmlinuz-*", boot.display()))?;
        let release = vmlinuz
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .trim_start_matches("vmlinuz-")
            .to_string();
        let modules = dir.join("lib/modules").join(&release);
        if !modules.is_dir() {
            bail!("{}: missing (the kernel's modules)", modules.display());
        }
        Ok(Kernel {
            package: dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            release,
            vmlinuz,
            modules,
        })
    }
}

/// The Debian 6.1 LTS kernel package that `linux-image-amd64` points at (Debian 12), e.g.
/// linux-image-6.1.0-57-amd64. The `-amd64` flavour, not `-cloud-amd64`: the cloud kernel has
/// no 9p, which the guest's root needs.
fn debian_61_package() -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()
        .context("apt-cache (the 6.1 kernel comes from Debian's archive)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let package = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string);
    match package {
        Some(p) if p.starts_with("linux-image-6.1.") => Ok(p),
        other => bail!(
            "this machine's apt sources do not offer Debian's 6.1 kernel (linux-image-amd64 \
             depends on {other:?}); download a linux-image-6.1.0-*-amd64 package and pass \
             --kernel PATH.deb"
        ),
    }
}

fn download(package: &str, dir: &Path) -> Result<PathBuf> {
    eprintln!("xtask: apt-get download {package}");
    // apt downloads as its own user (_apt) into a directory that user may write.
    let staging = std::env::temp_dir().join(format!("sa-vm-download-{}", std::process::id()));
    std::fs::create_dir_all(&staging)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o777))?;
    let status = Command::new("apt-get")
        .args(["download", "-q", package])
        .current_dir(&staging)
        .status()
        .context("apt-get")?;
    if !status.success() {
        bail!("apt-get download {package} failed ({status})");
    }
    for entry in std::fs::read_dir(&staging)? {
        let path = entry?.path();
        let to = dir.join(path.file_name().unwrap_or_default());
        std::fs::copy(&path, &to)?;
    }
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(&format!("{package}_")) && n.ends_with(".deb")
            })
        })
        .with_context(|| format!("apt-get download {package} left no .deb"))
}

fn extract(deb: &Path, dir: &Path) -> Result<()> {
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(&partial)
        .status()
        .context("dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb -x {} failed ({status})", deb.display());
    }
    std::fs::rename(&partial, dir)?;
    Ok(())
}

/// The modules to load, dependencies first, as paths under the kernel's modules directory.
pub fn module_load_order(kernel: &Kernel) -> Result<Vec<PathBuf>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![kernel.modules.join("kernel")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                if let Some(stem) = name.strip_suffix(".ko") {
                    files.insert(stem.replace('-', "_"), path.clone());
                }
            }
        }
    }
    let builtin = std::fs::read_to_string(kernel.modules.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko"))
        .map(|m| m.replace('-', "_"))
        .collect::<std::collections::HashSet<_>>();
    let mut order = Vec::new();
    fn visit(
        name: &str,
        files: &BTreeMap<String, PathBuf>,
        builtin: &std::collections::HashSet<String>,
        order: &mut Vec<PathBuf>,
    ) -> Result<()> {
        if builtin.contains(name) {
            return Ok(());
        }
        let path = files.get(name).with_context(|| {
            format!("the kernel has no module {name} (compressed modules are not supported)")
        })?;
        if order.contains(path) {
            return Ok(());
        }
        for dep in module_depends(path)? {
            visit(&dep, files, builtin, order)?;
        }
        order.push(path.clone());
        Ok(())
    }
    for m in MODULES {
        visit(m, &files, &builtin, &mut order)?;
    }
    Ok(order)
}

/// The `depends=` entry of a module's .modinfo section.
fn module_depends(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path)?;
    let key = b"\0depends=";
    let Some(at) = bytes.windows(key.len()).position(|w| w == key) else {
        return Ok(Vec::new());
    };
    let rest = &bytes[at + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    Ok(String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect())
}
