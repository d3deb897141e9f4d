//! cgroup id → path and workload, from the cgroup v2 file system the agent watches: a cgroup's
//! id is its directory's inode number, and the kernel puts the id in every record. So the
//! workload of a flow (cgroup path, container, pod, unit) is known from the kernel's fact at
//! the moment of the event, even when the process is gone, and it is the host's view even
//! inside a pod (the DaemonSet mounts the host's hierarchy; /proc/PID/cgroup would be relative
//! to the agent's own cgroup namespace).
//!
//! The index is rebuilt by walking the hierarchy when an unknown id appears, but never more
//! than a tenth of the time (the next walk waits ten times as long as the last one took, and
//! at least 50 ms): a workload that creates cgroups cannot make the agent walk all the time.
//! A cgroup created and removed between two walks stays unknown (the flow keeps what /proc
//! said). At most `max_dirs` directories are walked.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use super::container::{workload_from_cgroup_path, Workload};

/// Walks are at least this far apart.
const MIN_REWALK: Duration = Duration::from_millis(50);

pub struct CgroupIndex {
    /// The hierarchy's root directory as mounted here.
    mount: PathBuf,
    workloads: HashMap<u64, Arc<Workload>>,
    /// When the next walk may start.
    next_walk: Option<Instant>,
    max_dirs: usize,
    pub walks: u64,
}

impl CgroupIndex {
    /// The index of the hierarchy that `watched` (a cgroup directory) belongs to.
    pub fn for_cgroup(watched: &Path) -> Self {
        // The topmost directory that is still a cgroup is the hierarchy's root.
        let mount = watched
            .ancestors()
            .take_while(|dir| dir.join("cgroup.procs").exists())
            .last()
            .unwrap_or(watched)
            .to_path_buf();
        Self {
            mount,
            workloads: HashMap::new(),
            next_walk: None,
            max_dirs: 100_000,
            walks: 0,
        }
    }

    /// The workload of cgroup `id`, from its path in the hierarchy.
    pub fn workload(&mut self, id: u64, now: Instant) -> Option<Arc<Workload>> {
        if let Some(w) = self.workloads.get(&id) {
            return Some(w.clone());
        }
        if self.next_walk.is_some_and(|at| now < at) {
            return None;
        }
        let started = Instant::now();
        self.walk();
        let took = started.elapsed();
        self.next_walk = Some(now + (took * 10).max(MIN_REWALK));
        self.workloads.get(&id).cloned()
    }

    fn walk(&mut self) {
        self.walks += 1;
        let mut found = HashMap::new();
        let mut todo = vec![self.mount.clone()];
        while let Some(dir) = todo.pop() {
            if found.len() >= self.max_dirs {
                break;
            }
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            let rel = dir.strip_prefix(&self.mount).unwrap_or(&dir);
            let path = format!("/{}", rel.display());
            found.insert(meta.ino(), Arc::new(workload_from_cgroup_path(&path)));
            if let Ok(entries) = std::fs::read_dir(&dir) {
                todo.extend(
                    entries
                        .filter_map(Result::ok)
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
        self.workloads = found;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_resolve_to_paths_from_the_hierarchy_root() {
        // A fake hierarchy: directories with cgroup.procs, ids are their inodes.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cgroup");
        let svc = root.join("system.slice/crm-sync.service");
        let docker = root.join(format!("system.slice/docker-{}.scope", "ab".repeat(32)));
        for d in [&root, &root.join("system.slice"), &svc, &docker] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("cgroup.procs"), "").unwrap();
        }
        let id = |p: &Path| std::fs::metadata(p).unwrap().ino();
        // Watching one service still resolves the whole hierarchy, from its root.
        let mut index = CgroupIndex::for_cgroup(&svc);
        let now = Instant::now();
        let w = index.workload(id(&svc), now).unwrap();
        assert_eq!(w.cgroup.as_deref(), Some("/system.slice/crm-sync.service"));
        assert_eq!(w.systemd_unit.as_deref(), Some("crm-sync.service"));
        let w = index.workload(id(&docker), now).unwrap();
        assert_eq!(w.container_runtime, Some("docker"));
        assert_eq!(
            index.workload(id(&root), now).unwrap().cgroup.as_deref(),
            Some("/")
        );
        assert_eq!(index.walks, 1, "one walk served every id");
        // An unknown id walks again, but not at once: a cgroup made since is found then.
        assert_eq!(index.workload(42, now), None);
        assert_eq!(index.walks, 1);
        let late = root.join("late.service");
        std::fs::create_dir_all(&late).unwrap();
        let later = now + Duration::from_secs(1);
        let w = index.workload(id(&late), later).unwrap();
        assert_eq!(w.cgroup.as_deref(), Some("/late.service"));
        assert_eq!(index.walks, 2);
    }
}
