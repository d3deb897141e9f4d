//! What /proc says about sockets at start: the network namespaces in use (one process in each
//! to enter it by) and which process holds a socket inode.
use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
};

/// The network namespaces processes are in: namespace inode → the processes in it.
pub fn namespaces(proc_root: &Path) -> HashMap<u64, Vec<u32>> {
    let mut spaces: HashMap<u64, Vec<u32>> = HashMap::new();
    for pid in pids(proc_root) {
        if let Some(ns) = netns_of(proc_root, pid) {
            spaces.entry(ns).or_default().push(pid);
        }
    }
    spaces
}

/// The inode of `pid`'s network namespace ("net:\[4026531840\]").
pub fn netns_of(proc_root: &Path, pid: u32) -> Option<u64> {
    let link = fs::read_link(proc_root.join(pid.to_string()).join("ns/net")).ok()?;
    bracketed(&link)
}

/// The path to enter `pid`'s network namespace by.
pub fn netns_path(proc_root: &Path, pid: u32) -> PathBuf {
    proc_root.join(pid.to_string()).join("ns/net")
}

/// Which of `pids` holds each of the socket `inodes` (the first found, when a socket is shared
/// after fork). Stops as soon as every inode is found.
pub fn socket_owners(proc_root: &Path, pids: &[u32], inodes: &HashSet<u32>) -> HashMap<u32, u32> {
    let mut owners = HashMap::new();
    for &pid in pids {
        if owners.len() == inodes.len() {
            break;
        }
        let Ok(fds) = fs::read_dir(proc_root.join(pid.to_string()).join("fd")) else {
            continue; // exited, or not ours to read
        };
        for fd in fds.flatten() {
            let Ok(link) = fs::read_link(fd.path()) else {
                continue;
            };
            let Some(text) = link.to_str() else { continue };
            let Some(inode) = text
                .strip_prefix("socket:")
                .and_then(|_| bracketed(&link))
                .and_then(|i| u32::try_from(i).ok())
            else {
                continue;
            };
            if inodes.contains(&inode) {
                owners.entry(inode).or_insert(pid);
            }
        }
    }
    owners
}

/// The command name of `pid`, as the kernel would put it in a record.
pub fn comm(proc_root: &Path, pid: u32) -> [u8; 16] {
    let mut comm = [0u8; 16];
    if let Ok(text) = fs::read(proc_root.join(pid.to_string()).join("comm")) {
        let text = text.strip_suffix(b"\n").unwrap_or(&text);
        let n = text.len().min(15);
        comm[..n].copy_from_slice(&text[..n]);
    }
    comm
}

fn pids(proc_root: &Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The number in "kind:\[number\]".
fn bracketed(link: &Path) -> Option<u64> {
    let text = link.to_str()?;
    let start = text.find('[')? + 1;
    let end = text[start..].find(']')? + start;
    text[start..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_and_socket_links_are_read() {
        assert_eq!(bracketed(Path::new("net:[4026531840]")), Some(4026531840));
        assert_eq!(bracketed(Path::new("socket:[123]")), Some(123));
        assert_eq!(bracketed(Path::new("/dev/null")), None);
        assert_eq!(bracketed(Path::new("socket:[12")), None);
    }

    #[test]
    fn this_process_owns_its_socket() {
        use std::os::unix::fs::MetadataExt;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let inode = fs::metadata(format!("/proc/self/fd/{fd}")).unwrap().ino() as u32;
        let me = std::process::id();
        let owners = socket_owners(Path::new("/proc"), &[me], &HashSet::from([inode]));
        assert_eq!(owners.get(&inode), Some(&me));
        assert!(namespaces(Path::new("/proc"))
            .values()
            .any(|pids| pids.contains(&me)));
    }
}
