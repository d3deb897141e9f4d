//! Process enrichment: executable, command line and workload (container, pod, unit) of the
//! process behind a record, read from /proc and cached with `lru`.
//!
//! The cache is keyed by process id and validated with the kernel's `comm`: an exec or a
//! reused pid almost always changes the comm, and then the entry is read again. A process that
//! has already exited yields no /proc data; its event keeps what the kernel gave (pid, comm,
//! cgroup id) and the missing fields are null. Misses are not cached, so a pid that is reused
//! later is read afresh.
pub mod container;

use std::{num::NonZeroUsize, path::PathBuf, sync::Arc};

use lru::LruCache;

pub use container::Workload;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub exe: Option<String>,
    pub cmdline: Option<String>,
    pub workload: Workload,
}

pub struct ProcessCache {
    proc_root: PathBuf,
    entries: LruCache<u32, ([u8; 16], Arc<ProcessInfo>)>,
    hits: u64,
    misses: u64,
}

impl ProcessCache {
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self::with_proc_root(capacity, PathBuf::from("/proc"))
    }

    /// A cache that reads another procfs (tests point this at a fixture tree).
    pub fn with_proc_root(capacity: NonZeroUsize, proc_root: PathBuf) -> Self {
        Self {
            proc_root,
            entries: LruCache::new(capacity),
            hits: 0,
            misses: 0,
        }
    }

    /// Process facts for `tgid`, whose kernel-reported comm is `comm`.
    pub fn lookup(&mut self, tgid: u32, comm: &[u8; 16]) -> Arc<ProcessInfo> {
        if let Some((cached_comm, info)) = self.entries.get(&tgid) {
            if cached_comm == comm {
                self.hits += 1;
                return info.clone();
            }
        }
        self.misses += 1;
        let info = Arc::new(self.read(tgid));
        if info.exe.is_some() || info.cmdline.is_some() {
            self.entries.put(tgid, (*comm, info.clone()));
        }
        info
    }

    /// (hits, misses) since start.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    fn read(&self, tgid: u32) -> ProcessInfo {
        let dir = self.proc_root.join(tgid.to_string());
        let exe = std::fs::read_link(dir.join("exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        let cmdline = std::fs::read(dir.join("cmdline"))
            .ok()
            .filter(|raw| !raw.is_empty())
            .map(|raw| cmdline_string(&raw));
        let workload = std::fs::read_to_string(dir.join("cgroup"))
            .ok()
            .and_then(|text| {
                container::cgroup_path(&text).map(container::workload_from_cgroup_path)
            })
            .unwrap_or_default();
        ProcessInfo {
            exe,
            cmdline,
            workload,
        }
    }
}

/// /proc/PID/cmdline: NUL-separated arguments, joined with spaces.
pub fn cmdline_string(raw: &[u8]) -> String {
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_joins_arguments() {
        assert_eq!(
            cmdline_string(b"python3\0-m\0http.server\0"),
            "python3 -m http.server"
        );
        assert_eq!(cmdline_string(b"curl"), "curl");
    }

    #[test]
    fn reads_own_process_and_caches_it() {
        let mut cache = ProcessCache::new(NonZeroUsize::new(4).unwrap());
        let me = std::process::id();
        let comm = [b'x'; 16];
        let info = cache.lookup(me, &comm);
        let exe = std::env::current_exe().unwrap();
        assert_eq!(info.exe.as_deref(), Some(exe.to_str().unwrap()));
        assert!(info.cmdline.as_deref().unwrap().contains("sovereign_agent"));
        assert!(info.workload.cgroup.is_some());
        cache.lookup(me, &comm);
        assert_eq!(cache.stats(), (1, 1));
        // A different comm (exec or reused pid) reads /proc again.
        cache.lookup(me, &[b'y'; 16]);
        assert_eq!(cache.stats(), (1, 2));
    }

    #[test]
    fn exited_process_has_no_proc_data_and_is_not_cached() {
        let mut cache = ProcessCache::new(NonZeroUsize::new(4).unwrap());
        // Above the kernel's pid_max limit (4194304), so never a live process.
        let info = cache.lookup(4_194_305, &[0; 16]);
        assert_eq!(*info, ProcessInfo::default());
        cache.lookup(4_194_305, &[0; 16]);
        assert_eq!(cache.stats(), (0, 2));
    }
}
