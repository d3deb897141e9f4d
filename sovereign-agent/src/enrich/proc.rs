//! What /proc says of one process: its executable, command line and parent, and the
//! [`ProcessInfo`] every record of it carries.
use std::sync::Arc;

use super::container::{self, Workload};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    // Shared (`Arc`) with every event of the process rather than copied into each.
    pub exe: Option<Arc<str>>,
    pub cmdline: Option<Arc<str>>,
    pub workload: Workload,
    /// The file name as passed to execve (relative paths stay relative), when the agent saw
    /// the exec.
    pub exec_path: Option<Arc<str>>,
    /// The parent process, when known.
    pub ppid: Option<u32>,
    /// The program running `exe` when the file exec'd was a script: its interpreter.
    pub interpreter: Option<Arc<str>>,
    /// When the agent read /proc for this exec, the process was already running another
    /// file than the one the exec named (it exec'd again since): `exe` and the command line
    /// are unknown rather than the later program's (events say `identity: exec_raced`).
    pub exec_raced: bool,
}

/// The executable /proc/PID/exe names, from the process directory `dir`. `/` is what the link
/// reads for an executable the agent cannot name (a runtime's sealed memfd copy of itself seen
/// from another mount namespace): unknown, not the root directory.
pub fn exe_link(dir: &std::path::Path) -> Option<String> {
    std::fs::read_link(dir.join("exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p != "/")
}

/// Everything /proc says about process `tgid` (nothing when it is gone).
pub fn read_proc(proc_root: &std::path::Path, tgid: u32) -> ProcessInfo {
    let dir = proc_root.join(tgid.to_string());
    let exe = exe_link(&dir);
    // Only what is kept is read (a command line may be megabytes long).
    let cmdline = std::fs::File::open(dir.join("cmdline"))
        .and_then(|f| {
            let mut raw = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(f, MAX_CMDLINE_BYTES as u64 + 1),
                &mut raw,
            )?;
            Ok(raw)
        })
        .ok()
        .filter(|raw| !raw.is_empty())
        .map(|raw| cmdline_string(&raw));
    let workload = std::fs::read_to_string(dir.join("cgroup"))
        .ok()
        .and_then(|text| container::cgroup_path(&text).map(container::workload_from_cgroup_path))
        .unwrap_or_default();
    let ppid = std::fs::read_to_string(dir.join("stat"))
        .ok()
        .and_then(|stat| ppid_of_stat(&stat));
    ProcessInfo {
        exe: exe.map(Arc::from),
        cmdline: cmdline.map(Arc::from),
        workload,
        exec_path: None,
        ppid,
        interpreter: None,
        exec_raced: false,
    }
}

/// The parent pid in /proc/PID/stat: the 4th field, after the `(comm)` that may itself hold
/// spaces and parentheses.
pub fn ppid_of_stat(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// /proc/PID/cmdline: NUL-separated arguments, joined with spaces.
/// Command lines are cut to this many bytes (` ...` marks the cut): a process with a 2 MiB
/// command line must not make its flows and alerts too large to journal or push.
pub const MAX_CMDLINE_BYTES: usize = 4096;

pub fn cmdline_string(raw: &[u8]) -> String {
    let cut = raw.len() > MAX_CMDLINE_BYTES;
    let raw = &raw[..raw.len().min(MAX_CMDLINE_BYTES)];
    let mut s = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    if cut {
        s.push_str(" ...");
    }
    s
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
    fn a_huge_command_line_is_cut_and_marked() {
        let mut raw = b"python3\0".to_vec();
        raw.extend(std::iter::repeat_n(b'x', 2 << 20));
        let s = cmdline_string(&raw);
        assert!(s.len() <= MAX_CMDLINE_BYTES + 4, "{}", s.len());
        assert!(s.starts_with("python3 xxx") && s.ends_with(" ..."));
    }

    #[test]
    fn ppid_from_stat_even_with_odd_names() {
        assert_eq!(
            ppid_of_stat("4242 (curl) S 4200 4242 4200 0 -1"),
            Some(4200)
        );
        assert_eq!(ppid_of_stat("7 (a) b (c)) R 1 7 7 0"), Some(1));
        assert_eq!(ppid_of_stat("garbage"), None);
    }
}
