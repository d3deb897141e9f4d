//! cgroup id → path and workload, from the cgroup v2 file system the agent watches: a cgroup's
//! id is its directory's inode number, and the kernel puts the id in every record. So the
//! workload of a flow (cgroup path, container, pod, unit) is known from the kernel's fact at
//! the moment of the event, even when the process is gone, and it is the host's view even
//! inside a pod (the DaemonSet mounts the host's hierarchy; /proc/PID/cgroup would be relative
//! to the agent's own cgroup namespace).
//!
//! The index is rebuilt by walking the hierarchy when an unknown id appears, at most once a
//! second (a cgroup created and removed between two walks stays unknown, and the flow keeps
//! what /proc said), and at most `max_dirs` directories are walked.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use super::container::{workload_from_cgroup_path, Workload};

pub struct CgroupIndex {
    /// The hierarchy's root directory as mounted here.
    mount: PathBuf,
    workloads: HashMap<u64, Arc<Workload>>,
    last_walk: Option<Instant>,
    min_rewalk: Duration,
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
            last_walk: None,
            min_rewalk: Duration::from_secs(1),
            max_dirs: 100_000,
            walks: 0,
        }
    }

    /// The workload of cgroup `id`, from its path in the hierarchy.
    pub fn workload(&mut self, id: u64, now: Instant) -> Option<Arc<Workload>> {
        if let Some(w) = self.workloads.get(&id) {
            return Some(w.clone());
        }
        if self
            .last_walk
            .is_some_and(|at| now.duration_since(at) < self.min_rewalk)
        {
            return None;
        }
        self.walk(now);
        self.workloads.get(&id).cloned()
    }

    fn walk(&mut self, now: Instant) {
        self.last_walk = Some(now);
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
        // An unknown id walks again, but not more than once a second.
        assert_eq!(index.workload(42, now), None);
        assert_eq!(index.walks, 1);
        assert_eq!(index.workload(42, now + Duration::from_secs(2)), None);
        assert_eq!(index.walks, 2);
    }
}
