//! The process table: what each process is, from the kernel's fork, exec and exit records.
//!
//! - fork: the child starts as a copy of its parent (executable, command line, workload), with
//!   the parent as `ppid`; a reused pid starts afresh here, so two programs that had the same
//!   pid are never mixed;
//! - exec: /proc is read at once (the process is alive: it just exec'd), and the kernel's own
//!   path as exec'd is kept (`exec_path`); when /proc is already gone the executable is that
//!   path if it is absolute;
//! - exit: the entry is kept `keep_exited` longer, for the flows still in the ring buffer,
//!   then dropped.
//!
//! Seeded from /proc at start. Bounded (least recently used entries go first); a process not
//! in the table (started before the seed, or evicted) is read from /proc when its flow is,
//! as before exec tracking.
use std::{
    collections::VecDeque,
    num::NonZeroUsize,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use lru::LruCache;
use sovereign_agent_common::{ProcessView, RecordKind};

use super::proc::{cmdline_string, exe_link, read_proc, ProcessInfo};
use sovereign_agent_common::comm_string;

struct Entry {
    comm: [u8; 16],
    info: Arc<ProcessInfo>,
    /// Kept current by the kernel's records (otherwise a /proc snapshot, checked by `comm`).
    from_kernel: bool,
    exited: bool,
}

/// Counters, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    pub forks: u64,
    pub execs: u64,
    pub exits: u64,
    /// Execs whose /proc entry was gone before it could be read (the executable is then the
    /// kernel's path as exec'd, when absolute).
    pub exec_unread: u64,
    /// Execs whose process already ran another program when /proc was read (it exec'd
    /// again): executable unknown, flows marked `identity: exec_raced`.
    pub exec_raced: u64,
    /// Flows whose process was in no table entry and gone from /proc.
    pub unknown: u64,
    pub seeded: u64,
    /// Live processes pushed out of a full table (their later flows read /proc again, or are
    /// `exited_before_read`): a steady rise means `process_cache_entries` is too small.
    pub evicted_live: u64,
    /// Execs whose path was longer than the kernel record holds (`exec_path` ends in `...`).
    pub paths_truncated: u64,
}

pub struct ProcessTable {
    proc_root: PathBuf,
    procs: LruCache<u32, Entry>,
    /// Arguments of execs under way, by the calling thread, until their Exec record.
    argv: LruCache<u32, String>,
    exited: VecDeque<(Instant, u32)>,
    keep_exited: Duration,
    pub stats: TableStats,
}

/// What a flow needs of its process: the facts and the lineage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub info: Arc<ProcessInfo>,
    /// The parent's executable.
    pub parent_exe: Option<Arc<str>>,
    /// Executables (or task names) of the ancestors, parent first.
    pub ancestors: Vec<Arc<str>>,
    /// Why the process facts are missing, when they are.
    pub unknown: Option<&'static str>,
    /// The workload from the kernel's cgroup id of the record (wins over `info.workload`,
    /// which /proc gave for the process).
    pub workload: Option<Arc<super::container::Workload>>,
}

impl From<ProcessInfo> for Identity {
    /// Facts without lineage (tests, benches, tools that make events by hand).
    fn from(info: ProcessInfo) -> Self {
        Identity {
            info: Arc::new(info),
            ..Identity::default()
        }
    }
}

impl ProcessTable {
    pub fn new(capacity: NonZeroUsize, keep_exited: Duration) -> Self {
        Self::with_proc_root(capacity, keep_exited, PathBuf::from("/proc"))
    }

    /// A table that reads another procfs (tests point this at a fixture tree).
    pub fn with_proc_root(
        capacity: NonZeroUsize,
        keep_exited: Duration,
        proc_root: PathBuf,
    ) -> Self {
        Self {
            proc_root,
            procs: LruCache::new(capacity),
            argv: LruCache::new(NonZeroUsize::new(4096).expect("non-zero")),
            exited: VecDeque::new(),
            keep_exited,
            stats: TableStats::default(),
        }
    }

    /// Reads every process in /proc into the table (at start).
    pub fn seed(&mut self) {
        let Ok(dir) = std::fs::read_dir(&self.proc_root) else {
            return;
        };
        for entry in dir.flatten() {
            let Some(tgid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let info = read_proc(&self.proc_root, tgid);
            if info.exe.is_none() && info.cmdline.is_none() {
                continue; // kernel threads, or gone meanwhile
            }
            let comm = std::fs::read(entry.path().join("comm"))
                .map_or([0; 16], |c| comm_bytes(c.trim_ascii_end()));
            self.insert(tgid, comm, info, false);
            self.stats.seeded += 1;
        }
    }

    fn insert(&mut self, tgid: u32, comm: [u8; 16], info: ProcessInfo, from_kernel: bool) {
        let pushed_out = self.procs.push(
            tgid,
            Entry {
                comm,
                info: Arc::new(info),
                from_kernel,
                exited: false,
            },
        );
        if pushed_out.is_some_and(|(old, e)| old != tgid && !e.exited) {
            self.stats.evicted_live += 1;
        }
    }

    /// Applies a fork, exec or exit record.
    pub fn on_record(&mut self, p: &ProcessView<'_>, now: Instant) {
        match p.kind {
            RecordKind::Fork => {
                self.stats.forks += 1;
                let parent = self.lookup(p.ppid, &p.comm).info;
                let child = ProcessInfo {
                    ppid: Some(p.ppid),
                    ..(*parent).clone()
                };
                self.insert(p.tgid, p.comm, child, true);
            }
            RecordKind::Argv => {
                let mut args = cmdline_string(p.path);
                if p.path_truncated {
                    args.push_str(" ...");
                }
                self.argv.put(p.tid, args);
            }
            RecordKind::Exec => {
                self.stats.execs += 1;
                let before = self.procs.peek(&p.tgid).map(|e| e.info.clone());
                let args = self.argv.pop(&p.tid).filter(|a| !a.is_empty());
                let mut path = String::from_utf8_lossy(p.path).into_owned();
                // Only what the kernel did not hand over is read from /proc: the executable's
                // canonical path always; the command line, parent and cgroup only for a process
                // whose fork and arguments were not seen (one read per exec, not four).
                let exe = exe_link(&self.proc_root.join(p.tgid.to_string()));
                let mut info = match (&before, &args) {
                    (Some(before), Some(_)) => ProcessInfo {
                        workload: before.workload.clone(),
                        ppid: before.ppid,
                        ..ProcessInfo::default()
                    },
                    _ => {
                        let mut read = read_proc(&self.proc_root, p.tgid);
                        if let Some(before) = &before {
                            read.ppid = before.ppid.or(read.ppid);
                            if read.workload.cgroup.is_none() {
                                read.workload = before.workload.clone();
                            }
                        }
                        read
                    }
                };
                info.exe = exe.map(Arc::from).or(info.exe);
                if info.exe.is_none() {
                    self.stats.exec_unread += 1;
                    // A path cut to fit the record names no file.
                    if !p.path_truncated {
                        let before_exe = before.as_ref().and_then(|b| b.exe.clone());
                        info.exe = exe_of_exec_path(&path, p.tgid, before_exe);
                    }
                }
                if p.path_truncated {
                    self.stats.paths_truncated += 1;
                    path.push_str("...");
                }
                if info.exe.is_some() && !p.path_truncated {
                    match running_file(&self.proc_root, p.tgid, &path) {
                        Running::TheFileExecd | Running::Unknown => {}
                        // A script: `exe` is the file exec'd, `interpreter` the program
                        // running it.
                        Running::Script(script) => {
                            info.interpreter = info.exe.replace(script.into());
                        }
                        // /proc already shows a later program (the process exec'd again
                        // before this record was read): its executable and command line are
                        // not this exec's. Unknown, said so, rather than credited.
                        Running::Another => {
                            self.stats.exec_raced += 1;
                            info.exe = None;
                            info.interpreter = None;
                            info.exec_raced = true;
                            if args.is_none() {
                                info.cmdline = None;
                            }
                        }
                    }
                }
                // The arguments as the kernel saw them enter execve (a process may rewrite
                // its /proc command line later, or be gone already).
                if let Some(args) = args {
                    info.cmdline = Some(args.into());
                }
                info.exec_path = Some(path.into());
                self.insert(p.tgid, p.comm, info, true);
            }
            RecordKind::Exit => {
                self.stats.exits += 1;
                if let Some(e) = self.procs.peek_mut(&p.tgid) {
                    e.exited = true;
                    self.exited.push_back((now, p.tgid));
                }
            }
            _ => {}
        }
    }

    /// Drops processes that exited more than `keep_exited` ago (unless their pid was reused).
    pub fn sweep(&mut self, now: Instant) {
        while let Some(&(at, tgid)) = self.exited.front() {
            if now.duration_since(at) < self.keep_exited {
                break;
            }
            self.exited.pop_front();
            if self.procs.peek(&tgid).is_some_and(|e| e.exited) {
                self.procs.pop(&tgid);
            }
        }
    }

    /// The process facts for `tgid`, whose kernel-reported task name is `comm`.
    pub fn lookup(&mut self, tgid: u32, comm: &[u8; 16]) -> Identity {
        if let Some(e) = self.procs.get(&tgid) {
            // A /proc snapshot whose task name changed may be another program (an exec
            // without tracking) or a reused pid: read again when possible.
            if e.from_kernel || e.comm == *comm {
                return Identity {
                    info: e.info.clone(),
                    ..Identity::default()
                };
            }
        }
        let info = read_proc(&self.proc_root, tgid);
        if info.exe.is_some() || info.cmdline.is_some() {
            let info = Arc::new(info);
            self.procs.put(
                tgid,
                Entry {
                    comm: *comm,
                    info: info.clone(),
                    from_kernel: false,
                    exited: false,
                },
            );
            return Identity {
                info,
                ..Identity::default()
            };
        }
        if let Some(e) = self.procs.peek(&tgid) {
            return Identity {
                info: e.info.clone(),
                ..Identity::default()
            };
        }
        self.stats.unknown += 1;
        Identity {
            unknown: Some("exited_before_read"),
            ..Identity::default()
        }
    }

    /// [`ProcessTable::lookup`] with the lineage: the parent's executable and up to `depth`
    /// ancestors (executables, or task names when unknown).
    pub fn identify(&mut self, tgid: u32, comm: &[u8; 16], depth: usize) -> Identity {
        let mut id = self.lookup(tgid, comm);
        let mut next = id.info.ppid;
        while let Some(ppid) = next.filter(|p| *p != 0) {
            if id.ancestors.len() >= depth {
                break;
            }
            let Some(parent) = self.procs.peek(&ppid) else {
                break;
            };
            let name = parent
                .info
                .exe
                .clone()
                .unwrap_or_else(|| comm_string(&parent.comm).into());
            id.ancestors.push(name);
            next = parent.info.ppid.filter(|p| *p != ppid);
        }
        id.parent_exe = id
            .info
            .ppid
            .and_then(|p| self.procs.peek(&p)?.info.exe.clone());
        id
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }
}

/// The file a process exec'd, when it is not the program now running (a script, or a file a
/// binfmt handler runs): its absolute path. Read from the process's own root and working
/// directory just after the exec; `None` when it is the running program or cannot be read.
/// What process `tgid` runs, compared with the file its exec record named.
#[derive(Debug, PartialEq, Eq)]
enum Running {
    /// The same file (device and inode, seen in the process's own root).
    TheFileExecd,
    /// The file exec'd is a script (`#!`), run by the program /proc shows; its path.
    Script(String),
    /// Neither: the process exec'd another program since the record was written.
    Another,
    /// Cannot tell (the file is gone, or a /proc or /dev/fd path).
    Unknown,
}

fn running_file(proc_root: &Path, tgid: u32, path: &str) -> Running {
    use std::os::unix::fs::MetadataExt;
    if path.starts_with("/proc/") || path.starts_with("/dev/fd/") {
        return Running::Unknown;
    }
    let dir = proc_root.join(tgid.to_string());
    let (file, absolute) = match path.strip_prefix('/') {
        Some(rel) => (dir.join("root").join(rel), PathBuf::from(path)),
        None => match std::fs::read_link(dir.join("cwd")) {
            Ok(cwd) => (dir.join("cwd").join(path), cwd.join(path)),
            Err(_) => return Running::Unknown,
        },
    };
    let Ok(running) = std::fs::metadata(dir.join("exe")) else {
        return Running::Unknown; // gone
    };
    let Ok(link) = std::fs::read_link(dir.join("exe")) else {
        return Running::Unknown;
    };
    // The running program's file was removed or replaced since it started (an upgrade, or a
    // program that deletes itself): /proc still names it, and no path can be compared.
    if link.to_string_lossy().ends_with(" (deleted)") {
        return Running::Unknown;
    }
    let Ok(exec_d) = std::fs::metadata(&file) else {
        // The file exec'd is gone, and the running one is not deleted. The same name: the
        // process changed its working directory or root since (a daemon's chdir("/")), not
        // its program. Another name: a program that deleted itself, then exec'd another.
        let name = |p: &Path| p.file_name().map(std::ffi::OsStr::to_os_string);
        return if name(Path::new(path)) == name(&link) {
            Running::Unknown
        } else {
            Running::Another
        };
    };
    if (exec_d.dev(), exec_d.ino()) == (running.dev(), running.ino()) {
        return Running::TheFileExecd;
    }
    let mut magic = [0u8; 2];
    let is_script = std::fs::File::open(&file)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok_and(|()| magic == *b"#!");
    if is_script {
        Running::Script(normalize(&absolute).to_string_lossy().into_owned())
    } else {
        Running::Another
    }
}

/// `a/./b/../c` → `a/c`, without touching the file system (the path may name another mount
/// namespace's files).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The executable a process exec'd, from the path it passed, when /proc could not say: an
/// absolute path names it; a program that re-executes itself through `/proc/self/exe` (busybox,
/// runc, many daemons) runs what it ran before; another /proc or /dev/fd path (fexecve) names
/// nothing the agent can read later.
fn exe_of_exec_path(path: &str, tgid: u32, before: Option<Arc<str>>) -> Option<Arc<str>> {
    if path == "/proc/self/exe" || path == format!("/proc/{tgid}/exe") {
        return before;
    }
    if path.starts_with("/proc/") || path.starts_with("/dev/fd/") {
        return None;
    }
    path.starts_with('/').then(|| path.into())
}

fn comm_bytes(name: &[u8]) -> [u8; 16] {
    let mut c = [0u8; 16];
    let n = name.len().min(15);
    c[..n].copy_from_slice(&name[..n]);
    c
}

#[cfg(test)]
mod tests {
    use sovereign_agent_common::PROCESS_PATH_LEN;

    use super::*;

    fn record(
        kind: RecordKind,
        tgid: u32,
        ppid: u32,
        comm: &str,
        path: &'static [u8],
    ) -> ProcessView<'static> {
        assert!(path.len() <= PROCESS_PATH_LEN);
        ProcessView {
            kind,
            tid: tgid,
            ts_ns: 1,
            tgid,
            ppid,
            uid: 0,
            gid: 0,
            cgroup_id: 1,
            comm: comm_bytes(comm.as_bytes()),
            path,
            path_truncated: false,
        }
    }

    /// A fake /proc with one process: `tgid` running `exe`.
    fn fake_proc(dir: &Path, tgid: u32, ppid: u32, exe: &str, cmdline: &[u8]) {
        let p = dir.join(tgid.to_string());
        std::fs::create_dir_all(&p).unwrap();
        std::os::unix::fs::symlink(exe, p.join("exe")).unwrap();
        std::fs::write(p.join("cmdline"), cmdline).unwrap();
        std::fs::write(p.join("cgroup"), "0::/system.slice/llm.service\n").unwrap();
        std::fs::write(p.join("stat"), format!("{tgid} (x) S {ppid} 0 0")).unwrap();
        std::fs::write(p.join("comm"), "x\n").unwrap();
    }

    fn table(root: &Path) -> ProcessTable {
        ProcessTable::with_proc_root(
            NonZeroUsize::new(64).unwrap(),
            Duration::from_secs(5),
            root.to_path_buf(),
        )
    }

    #[test]
    fn a_cut_path_names_nothing_and_bad_bytes_are_kept_as_what_is_known() {
        let empty = std::env::temp_dir().join(format!("sa-noproc-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let mut t = table(&empty);
        // /proc is gone: a cut path is not taken for the executable.
        let mut exec = record(RecordKind::Exec, 10, 1, "x", b"/opt/very/long/pa");
        exec.path_truncated = true;
        t.on_record(&exec, Instant::now());
        let id = t.lookup(10, &comm_bytes(b"x"));
        assert_eq!(id.info.exe, None);
        assert_eq!(id.info.exec_path.as_deref(), Some("/opt/very/long/pa..."));
        assert_eq!((t.stats.paths_truncated, t.stats.exec_unread), (1, 1));
        // Not UTF-8: carried with replacement characters, not dropped.
        t.on_record(
            &record(RecordKind::Exec, 11, 1, "y", b"/opt/\xff\xfe/tool"),
            Instant::now(),
        );
        let id = t.lookup(11, &comm_bytes(b"y"));
        assert_eq!(id.info.exe.as_deref(), Some("/opt/\u{fffd}\u{fffd}/tool"));
        let _ = std::fs::remove_dir_all(&empty);
    }

    #[test]
    fn live_processes_pushed_out_of_a_full_table_are_counted() {
        let empty = std::env::temp_dir().join(format!("sa-full-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let mut t = ProcessTable::with_proc_root(
            NonZeroUsize::new(2).unwrap(),
            Duration::from_secs(5),
            empty.clone(),
        );
        for tgid in 1..=3 {
            t.on_record(
                &record(RecordKind::Exec, tgid, 0, "p", b"/bin/p"),
                Instant::now(),
            );
        }
        assert_eq!((t.len(), t.stats.evicted_live), (2, 1));
        // An exited process making room is no loss.
        t.on_record(&record(RecordKind::Exit, 2, 0, "p", b""), Instant::now());
        t.on_record(
            &record(RecordKind::Exec, 4, 0, "p", b"/bin/p"),
            Instant::now(),
        );
        t.on_record(
            &record(RecordKind::Exec, 5, 0, "p", b"/bin/p"),
            Instant::now(),
        );
        assert_eq!(t.stats.evicted_live, 2, "pid 2 had exited, pid 3 had not");
        let _ = std::fs::remove_dir_all(&empty);
    }

    #[test]
    fn a_script_is_told_from_its_interpreter() {
        let proc_root = std::env::temp_dir().join(format!("sa-script-{}", std::process::id()));
        let work = proc_root.join("work");
        let pid_dir = proc_root.join("42");
        std::fs::create_dir_all(work.join("sub")).unwrap();
        std::fs::create_dir_all(&pid_dir).unwrap();
        let script = work.join("tool.py");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let running = std::fs::canonicalize("/bin/sh").unwrap();
        std::os::unix::fs::symlink(&running, pid_dir.join("exe")).unwrap();
        std::os::unix::fs::symlink("/", pid_dir.join("root")).unwrap();
        std::os::unix::fs::symlink(&work, pid_dir.join("cwd")).unwrap();
        let abs = script.to_str().unwrap();
        let script_at = |p: &str| Running::Script(p.to_string());
        assert_eq!(running_file(&proc_root, 42, abs), script_at(abs));
        assert_eq!(
            running_file(&proc_root, 42, "./sub/../tool.py"),
            script_at(abs),
            "relative to the working directory, normalized"
        );
        // The program itself (through a symlink or not) is no script.
        assert_eq!(
            running_file(&proc_root, 42, "/bin/sh"),
            Running::TheFileExecd
        );
        assert_eq!(
            running_file(&proc_root, 42, running.to_str().unwrap()),
            Running::TheFileExecd
        );
        assert_eq!(
            running_file(&proc_root, 42, "/proc/self/exe"),
            Running::Unknown
        );
        // A file gone whose name is not the running program's: it exec'd another since.
        assert_eq!(
            running_file(&proc_root, 42, "/no/such/file"),
            Running::Another
        );
        assert_eq!(
            running_file(
                &proc_root,
                42,
                &format!(
                    "/moved/away/{}",
                    running.file_name().unwrap().to_string_lossy()
                )
            ),
            Running::Unknown,
            "the same name: a changed root or working directory, not another program"
        );
        // Another program that is no script: the process exec'd again since this exec.
        let other = work.join("evil");
        std::fs::write(&other, b"\x7fELF").unwrap();
        assert_eq!(
            running_file(&proc_root, 42, other.to_str().unwrap()),
            Running::Another
        );
        let _ = std::fs::remove_dir_all(&proc_root);
    }

    #[test]
    fn a_self_re_exec_keeps_the_program_and_magic_paths_name_nothing() {
        let busybox: Option<Arc<str>> = Some("/bin/busybox".into());
        assert_eq!(
            exe_of_exec_path("/proc/self/exe", 7, busybox.clone()),
            busybox
        );
        assert_eq!(exe_of_exec_path("/proc/7/exe", 7, busybox.clone()), busybox);
        assert_eq!(exe_of_exec_path("/proc/8/exe", 7, busybox.clone()), None);
        assert_eq!(exe_of_exec_path("/dev/fd/3", 7, busybox.clone()), None);
        assert_eq!(exe_of_exec_path("./tool", 7, busybox.clone()), None);
        assert_eq!(
            exe_of_exec_path("/usr/bin/curl", 7, busybox),
            Some("/usr/bin/curl".into())
        );
    }

    #[test]
    fn a_process_that_exited_keeps_what_its_exec_saw_and_its_lineage() {
        let dir = tempfile::tempdir().unwrap();
        fake_proc(
            dir.path(),
            1,
            0,
            "/usr/lib/systemd/systemd",
            b"/sbin/init\0",
        );
        fake_proc(
            dir.path(),
            100,
            1,
            "/opt/llm/bin/server",
            b"server\0--port\x008080\0",
        );
        let mut t = table(dir.path());
        t.seed();
        assert_eq!(t.stats.seeded, 2);
        let now = Instant::now();
        // The server forks a shell, which execs curl: both seen by the kernel.
        t.on_record(&record(RecordKind::Fork, 200, 100, "server", b""), now);
        fake_proc(dir.path(), 200, 100, "/usr/bin/curl", b"curl\0https://x\0");
        t.on_record(
            &record(RecordKind::Exec, 200, 0, "curl", b"/usr/bin/curl"),
            now,
        );
        // curl exits, and /proc forgets it, before its flow is read.
        std::fs::remove_dir_all(dir.path().join("200")).unwrap();
        t.on_record(&record(RecordKind::Exit, 200, 0, "curl", b""), now);
        let id = t.identify(200, &comm_bytes(b"curl"), 4);
        assert_eq!(id.info.exe.as_deref(), Some("/usr/bin/curl"));
        assert_eq!(id.info.cmdline.as_deref(), Some("curl https://x"));
        assert_eq!(id.info.exec_path.as_deref(), Some("/usr/bin/curl"));
        assert_eq!(id.info.ppid, Some(100));
        assert_eq!(
            id.info.workload.cgroup.as_deref(),
            Some("/system.slice/llm.service")
        );
        assert_eq!(id.parent_exe.as_deref(), Some("/opt/llm/bin/server"));
        assert_eq!(
            id.ancestors.iter().map(|a| &**a).collect::<Vec<_>>(),
            ["/opt/llm/bin/server", "/usr/lib/systemd/systemd"]
        );
        assert_eq!(id.unknown, None);
        // After `keep_exited`, it is gone; a reused pid then starts afresh.
        t.sweep(now + Duration::from_secs(6));
        assert_eq!(
            t.lookup(200, &comm_bytes(b"curl")).unknown,
            Some("exited_before_read")
        );
    }

    #[test]
    fn an_exec_that_proc_missed_keeps_the_kernels_path() {
        let dir = tempfile::tempdir().unwrap();
        fake_proc(dir.path(), 100, 1, "/usr/bin/bash", b"bash\0");
        let mut t = table(dir.path());
        t.seed();
        let now = Instant::now();
        t.on_record(&record(RecordKind::Fork, 300, 100, "bash", b""), now);
        // Exec'd and gone before the record was read: /proc has nothing.
        t.on_record(
            &record(RecordKind::Exec, 300, 0, "helper", b"/opt/x/helper"),
            now,
        );
        t.on_record(&record(RecordKind::Exec, 301, 0, "rel", b"./rel"), now);
        let id = t.identify(300, &comm_bytes(b"helper"), 4);
        assert_eq!(id.info.exe.as_deref(), Some("/opt/x/helper"));
        assert_eq!(
            id.info.cmdline, None,
            "the parent's command line is not the child's"
        );
        assert_eq!(id.info.ppid, Some(100));
        assert_eq!(
            id.info.workload.cgroup.as_deref(),
            Some("/system.slice/llm.service")
        );
        let rel = t.identify(301, &comm_bytes(b"rel"), 4);
        assert_eq!(
            (rel.info.exe.as_deref(), rel.info.exec_path.as_deref()),
            (None, Some("./rel"))
        );
        assert_eq!(t.stats.exec_unread, 2);
    }

    #[test]
    fn a_reused_pid_is_never_mixed_with_its_previous_program() {
        let dir = tempfile::tempdir().unwrap();
        fake_proc(dir.path(), 100, 1, "/usr/bin/bash", b"bash\0");
        fake_proc(dir.path(), 101, 1, "/usr/sbin/cron", b"cron\0");
        let mut t = table(dir.path());
        t.seed();
        let now = Instant::now();
        t.on_record(&record(RecordKind::Fork, 500, 100, "bash", b""), now);
        t.on_record(
            &record(RecordKind::Exec, 500, 0, "curl", b"/usr/bin/curl"),
            now,
        );
        t.on_record(&record(RecordKind::Exit, 500, 0, "curl", b""), now);
        // Pid 500 again, another parent, another program.
        t.on_record(&record(RecordKind::Fork, 500, 101, "cron", b""), now);
        t.on_record(
            &record(RecordKind::Exec, 500, 0, "python3", b"/usr/bin/python3"),
            now,
        );
        let id = t.identify(500, &comm_bytes(b"python3"), 4);
        assert_eq!(id.info.exe.as_deref(), Some("/usr/bin/python3"));
        assert_eq!(id.parent_exe.as_deref(), Some("/usr/sbin/cron"));
        // The first program's exit, swept later, does not take the new one with it.
        t.sweep(now + Duration::from_secs(6));
        assert_eq!(
            t.lookup(500, &comm_bytes(b"python3")).info.exe.as_deref(),
            Some("/usr/bin/python3")
        );
    }

    #[test]
    fn without_kernel_records_proc_is_read_and_checked_by_comm() {
        let me = std::process::id();
        let mut t = ProcessTable::new(NonZeroUsize::new(4).unwrap(), Duration::from_secs(1));
        let id = t.lookup(me, &[b'x'; 16]);
        let exe = std::env::current_exe().unwrap();
        assert_eq!(id.info.exe.as_deref(), Some(exe.to_str().unwrap()));
        assert!(id.info.workload.cgroup.is_some());
        assert!(id.info.ppid.is_some());
        // Above the kernel's pid_max limit: never a live process.
        assert_eq!(
            t.lookup(4_194_305, &[0; 16]).unknown,
            Some("exited_before_read")
        );
    }
}
