//! Finding the cgroup v2 hierarchy and the cgroup to watch.
//!
//! cgroup v2 is usually mounted at /sys/fs/cgroup, but hybrid hosts mount it elsewhere (e.g.
//! /sys/fs/cgroup/unified), so the mount point is read from /proc/self/mountinfo.
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup v2 hierarchy is mounted (checked /proc/self/mountinfo); sovereign-agent attaches its programs to a cgroup v2")]
    NoCgroup2,
    #[error("cannot read /proc/self/mountinfo: {0}")]
    Mountinfo(std::io::Error),
    #[error("cgroup {path}: {reason}")]
    BadPath { path: PathBuf, reason: String },
}

/// The mount point of the cgroup v2 hierarchy.
pub fn cgroup2_root() -> Result<PathBuf, CgroupError> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(CgroupError::Mountinfo)?;
    cgroup2_root_from_mountinfo(&mountinfo).ok_or(CgroupError::NoCgroup2)
}

/// Whether `path` is on a cgroup v2 filesystem.
fn is_cgroup2(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs on a NUL-terminated path into a zeroed struct we own.
    // (f_type's integer type differs between architectures, hence the casts.)
    #[allow(clippy::unnecessary_cast)]
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0
            && st.f_type as i64 == libc::CGROUP2_SUPER_MAGIC as i64
    }
}

/// Parses mountinfo lines (`id parent major:minor root mountpoint opts ... - fstype src opts`)
/// and returns the first cgroup2 mount point.
pub fn cgroup2_root_from_mountinfo(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        let mount_point = left.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_octal(mount_point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|oct| std::str::from_utf8(oct).ok())
            .and_then(|oct| u8::from_str_radix(oct, 8).ok());
        if let Some(v) = escaped {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Resolves the cgroup to watch: `None` is the whole host (the hierarchy's root); a relative
/// path is taken inside the hierarchy; an absolute path must lie inside it.
pub fn resolve(requested: Option<&Path>) -> Result<PathBuf, CgroupError> {
    let root = cgroup2_root()?;
    let path = match requested {
        None => root.clone(),
        Some(p) if p.is_relative() => root.join(p),
        Some(p) => p.to_path_buf(),
    };
    let bad = |reason: String| CgroupError::BadPath {
        path: path.clone(),
        reason,
    };
    let meta = std::fs::metadata(&path).map_err(|e| bad(e.to_string()))?;
    if !meta.is_dir() {
        return Err(bad("not a directory".into()));
    }
    if !path.join("cgroup.procs").exists() {
        return Err(bad("not a cgroup (no cgroup.procs in it)".into()));
    }
    let canonical = path.canonicalize().map_err(|e| bad(e.to_string()))?;
    // The filesystem decides, not the path: in a Kubernetes pod the host's hierarchy is
    // mounted at another place (/host/sys/fs/cgroup) next to the pod's own.
    if !canonical.starts_with(&root) && !is_cgroup2(&canonical) {
        return Err(bad(format!(
            "not inside a cgroup v2 hierarchy (the first is mounted at {})",
            root.display()
        )));
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_on_a_hybrid_host() {
        let mi = "25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                  26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n\
                  27 25 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n";
        assert_eq!(
            cgroup2_root_from_mountinfo(mi),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn finds_cgroup2_on_a_unified_host_and_unescapes() {
        let mi =
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_root_from_mountinfo(mi),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let mi = "30 23 0:26 / /mnt/my\\040cg rw - cgroup2 none rw\n";
        assert_eq!(
            cgroup2_root_from_mountinfo(mi),
            Some(PathBuf::from("/mnt/my cg"))
        );
    }

    #[test]
    fn no_cgroup2_is_none() {
        let mi = "27 25 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n";
        assert_eq!(cgroup2_root_from_mountinfo(mi), None);
    }
}
