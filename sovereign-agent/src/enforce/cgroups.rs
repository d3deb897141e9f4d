//! Which enforce class each cgroup of the hierarchy gets: its path (the host's view, from the
//! hierarchy's root) through the policy's first selecting rule. Every directory gets an
//! entry, class 0 where no enforce rule decides, so that the kernel's walk up a task's
//! ancestry stops at the deepest cgroup the agent has seen (a cgroup created since the last
//! walk takes its parent's entry until the next).
use std::{os::unix::fs::MetadataExt, path::Path};

/// Every cgroup directory under `mount` (its root included): (id, path from the root), at most
/// `max` of them.
pub fn walk(mount: &Path, max: usize) -> Vec<(u64, String)> {
    let mut found = Vec::new();
    let mut todo = vec![mount.to_path_buf()];
    while let Some(dir) = todo.pop() {
        if found.len() >= max {
            break;
        }
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        let rel = dir.strip_prefix(mount).unwrap_or(&dir);
        found.push((meta.ino(), format!("/{}", rel.display())));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            todo.extend(
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    found
}
