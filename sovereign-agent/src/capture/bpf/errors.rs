//! Why the programs could not be loaded or attached, as operators read it.
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(
        "permission denied loading eBPF programs: run as root, or with CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON and CAP_SYS_RESOURCE"
    )]
    PermissionDenied,
    #[error("this kernel cannot load the sovereign-agent programs ({0}); Linux 5.8 or later with BPF ring buffers is required")]
    Unsupported(String),
    #[error("cannot open cgroup {path}: {source}")]
    Cgroup { path: String, source: io::Error },
    #[error("no hook could be attached to {cgroup}: {details}")]
    NothingAttached { cgroup: String, details: String },
    #[error("kernel object is missing {0}")]
    MissingInObject(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
}

pub(super) fn is_permission(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

/// "outer: inner: innermost", the way operators read errors.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.last().is_some_and(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}
