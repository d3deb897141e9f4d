//! Who did it, from the kernel: processes that connect and exit at once keep their
//! executable, command line, cgroup and parents, because the agent learns them from the
//! fork and exec tracepoints when they happen, not from /proc when the flow is read.
use std::{path::Path, time::Duration};

use serde_json::Value;
use sovereign_agent_tests::{
    events_of, run_in_cgroup, sigterm, start_agent_with, start_agent_wrapped, tcp_server,
    wait_for_event, Reaped, Script, TestCgroup,
};

/// The pid-reuse test sets the kernel's next pid for the whole host: the tests that count
/// distinct pids must not run meanwhile.
static PIDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn connects(output: &Path, port: u16) -> Vec<Value> {
    events_of(output)
        .into_iter()
        .filter(|e| e["kind"] == "connect" && e["dst_port"] == port)
        .collect()
}

fn wait_for_connects(output: &Path, port: u16, n: usize) -> Vec<Value> {
    for _ in 0..300 {
        let c = connects(output, port);
        if c.len() >= n {
            return c;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let c = connects(output, port);
    panic!("{} of {n} connects arrived", c.len());
}

#[test]
fn short_lived_processes_keep_their_identity_and_lineage() {
    let _pids = PIDS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let cgroup = TestCgroup::new("identity");
    let dir = tempfile_dir("identity");
    let output = dir.join("events.jsonl");
    // Whatever python starts, however deep, is judged by one rule (the test's own python).
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[policy]\nname = \"lineage\"\nversion = \"1\"\ndefault = \"allow\"\n\n\
         [zones.loopback]\ncidrs = [\"127.0.0.0/8\"]\n\n\
         [[rule]]\nname = \"python-and-children\"\n\
         workload = { ancestor_exe = [\"**/python3*\"] }\ndeny = [\"loopback\"]\n",
    )
    .unwrap();
    let (agent, _logs) =
        start_agent_with(&cgroup, &output, &["--policy", policy.to_str().unwrap()]);
    let agent = Reaped(agent);
    let start = wait_for_event(&output, |e| e["kind"] == "agent_start");
    for hook in [
        "tracepoint/task/task_newtask",
        "tracepoint/sched/sched_process_exec",
        "tracepoint/sched/sched_process_exit",
    ] {
        assert!(
            start["hooks"].as_array().unwrap().iter().any(|h| h == hook),
            "{hook} attached: {start:#}"
        );
    }
    let (addr, _served) = tcp_server("127.0.0.1:0", Script::ReadToEofThenReply { reply: 0 });
    let port = addr.port();
    let cg_path = format!(
        "/{}",
        cgroup
            .path()
            .strip_prefix(sovereign_agent::capture::cgroup::cgroup2_root().unwrap())
            .unwrap()
            .display()
    );

    // 1,000 bash processes that connect and exit at once (the shell's /dev/tcp).
    const N: usize = 1000;
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
    let (loop_pid, _) = run_in_cgroup(
        &cgroup,
        &format!("sh -c 'for i in $(seq {N}); do bash -c \"{script}\"; done'"),
    );
    let events = wait_for_connects(&output, port, N);
    assert_eq!(events.len(), N);
    let mut pids = std::collections::HashSet::new();
    for e in &events {
        assert_eq!(e["comm"], "bash", "{e:#}");
        assert!(
            e["exe"].as_str().is_some_and(|x| x.ends_with("/bash")),
            "exe of a process gone before its flow was read: {e:#}"
        );
        assert_eq!(e["cmdline"], format!("bash -c {script}"), "{e:#}");
        assert_eq!(e["cgroup"], cg_path.as_str(), "{e:#}");
        assert_eq!(e["ppid"], loop_pid, "{e:#}");
        assert!(
            e["parent_exe"].as_str().is_some_and(|x| x.ends_with("sh")),
            "{e:#}"
        );
        assert!(e.get("identity").is_none(), "{e:#}");
        assert_eq!(e["verdict"]["decision"], "allow", "not python's: {e:#}");
        pids.insert(e["pid"].as_u64().unwrap());
    }
    assert_eq!(pids.len(), N, "one process per connect");

    // A process that forks and lets its parent exit: the child keeps the program and its
    // parent, from the fork.
    let (addr2, _served2) = tcp_server("127.0.0.1:0", Script::ReadToEofThenReply { reply: 0 });
    let py = format!(
        "python3 -c 'import os, socket, time\n\
         if os.fork() == 0:\n    time.sleep(0.3)\n    socket.create_connection((\"127.0.0.1\", {}))\n    os._exit(0)\n\
         os._exit(0)'",
        addr2.port()
    );
    let (parent, _) = run_in_cgroup(&cgroup, &py);
    let child = wait_for_connects(&output, addr2.port(), 1).remove(0);
    assert_ne!(child["pid"], parent);
    assert_eq!(child["ppid"], parent, "{child:#}");
    assert!(
        child["exe"].as_str().is_some_and(|x| x.contains("python")),
        "{child:#}"
    );
    assert!(
        child["cmdline"]
            .as_str()
            .is_some_and(|c| c.contains("os.fork")),
        "{child:#}"
    );

    // Lineage: python3 -> sh -> curl.
    let (addr3, _served3) = tcp_server("127.0.0.1:0", Script::ReadToEofThenReply { reply: 0 });
    run_in_cgroup(
        &cgroup,
        &format!(
            "python3 -c 'import subprocess; subprocess.run([\"sh\", \"-c\", \"curl -s -m 1 -o /dev/null http://127.0.0.1:{}/ || true\"])'",
            addr3.port()
        ),
    );
    let curl = wait_for_connects(&output, addr3.port(), 1).remove(0);
    assert_eq!(curl["exe"], "/usr/bin/curl", "{curl:#}");
    let ancestors: Vec<&str> = curl["ancestors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(ancestors[0].ends_with("sh"), "{ancestors:?}");
    assert!(ancestors[1].contains("python"), "{ancestors:?}");
    assert_eq!(curl["parent_exe"].as_str(), Some(ancestors[0]));
    assert_eq!(
        (&curl["verdict"]["rule"], &curl["verdict"]["decision"]),
        (
            &serde_json::json!("python-and-children"),
            &serde_json::json!("violation")
        ),
        "{curl:#}"
    );

    sigterm(&agent.0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The agent in a cgroup namespace of its own, as the DaemonSet runs it: /proc/PID/cgroup
/// would show the watched processes' cgroups relative to the agent's namespace
/// (`/../sa-test-...`); the kernel's cgroup id, resolved through the mounted hierarchy, gives
/// the host's path, and it stays known after the process is gone.
#[test]
fn cgroups_are_the_hosts_paths_from_the_kernels_id() {
    let cgroup = TestCgroup::new("cgroupns");
    let agent_home = TestCgroup::new("agent-home");
    let dir = tempfile_dir("cgroupns");
    let output = dir.join("events.jsonl");
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec unshare --cgroup \"$0\" \"$@\"",
        agent_home.path().display()
    );
    let (agent, _logs) = start_agent_wrapped(&cgroup, &output, &[], &["sh", "-c", &script]);
    let agent = Reaped(agent);
    let (addr, _served) = tcp_server("127.0.0.1:0", Script::ReadToEofThenReply { reply: 0 });
    let host_path = format!(
        "/{}",
        cgroup
            .path()
            .strip_prefix(sovereign_agent::capture::cgroup::cgroup2_root().unwrap())
            .unwrap()
            .display()
    );
    run_in_cgroup(
        &cgroup,
        &format!("bash -c 'exec 3<>/dev/tcp/127.0.0.1/{}'", addr.port()),
    );
    let e = wait_for_connects(&output, addr.port(), 1).remove(0);
    assert_eq!(e["cgroup"], host_path.as_str(), "{e:#}");
    assert_eq!(e["cgroup_id"], cgroup.id(), "{e:#}");
    sigterm(&agent.0);
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 32: a UDP socket whose sends were not kept (more sockets than `udp_socket_entries`,
/// or its send records lost in a flood) closes through a fallback that read the kernel's send
/// map and built the `close` from /proc alone, without the kernel's cgroup id: with the agent
/// in a cgroup namespace of its own (the DaemonSet), that close read `/../sa-test-...` where
/// every other event of the socket's workload has the host's path. Here the first of two
/// sockets loses its place (one socket is kept) and closes through the fallback: its close
/// has the host's path and the cgroup's id, like the second's, and the kernel's count.
#[test]
fn a_udp_close_found_in_the_kernels_map_has_the_workload_from_the_kernel() {
    let cgroup = TestCgroup::new("udp-fallback");
    let agent_home = TestCgroup::new("udp-fallback-agent");
    let dir = tempfile_dir("udp-fallback");
    let output = dir.join("events.jsonl");
    let config = dir.join("agent.toml");
    std::fs::write(&config, "udp_socket_entries = 1\n").unwrap();
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec unshare --cgroup \"$0\" \"$@\"",
        agent_home.path().display()
    );
    let (agent, _logs) = start_agent_wrapped(
        &cgroup,
        &output,
        &["--config", config.to_str().unwrap()],
        &["sh", "-c", &script],
    );
    let agent = Reaped(agent);
    let first = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let second = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (p1, p2) = (
        first.local_addr().unwrap().port(),
        second.local_addr().unwrap().port(),
    );
    // The first socket sends twice, the second once; the first closes after the second's
    // send has taken the only place.
    run_in_cgroup(
        &cgroup,
        &format!(
            "python3 -c \"import socket, time\n\
             a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             a.sendto(b'x', ('127.0.0.1', {p1})); a.sendto(b'y', ('127.0.0.1', {p1}))\n\
             time.sleep(0.3)\n\
             b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             b.sendto(b'z', ('127.0.0.1', {p2}))\n\
             time.sleep(0.3)\n\
             a.close(); time.sleep(0.3); b.close()\""
        ),
    );
    let host_path = format!(
        "/{}",
        cgroup
            .path()
            .strip_prefix(sovereign_agent::capture::cgroup::cgroup2_root().unwrap())
            .unwrap()
            .display()
    );
    let close_of =
        |port: u16| wait_for_event(&output, |e| e["kind"] == "close" && e["dst_port"] == port);
    let kept = close_of(p2);
    assert_eq!(kept["cgroup"], host_path.as_str(), "{kept:#}");
    assert_eq!(kept["count"], 1, "{kept:#}");
    let found = close_of(p1);
    assert_eq!(found["cgroup"], host_path.as_str(), "{found:#}");
    assert_eq!(found["cgroup_id"], cgroup.id(), "{found:#}");
    assert_eq!(found["count"], 2, "{found:#}");
    assert_eq!(found["pid"], kept["pid"], "{found:#}");
    sigterm(&agent.0);
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sa-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A workload that controls its cgroup subtree names a child `docker-<64 hex>.scope` to pass
/// for a container (and a rule keyed on container ids): the agent does not believe a name
/// outside the runtime's own place in the hierarchy.
#[test]
fn a_cgroup_named_like_a_container_is_not_a_container() {
    let cgroup = TestCgroup::new("forged-container");
    let forged = cgroup.child(&format!("docker-{}.scope", "ab".repeat(32)));
    let dir = tempfile_dir("forged-container");
    let output = dir.join("events.jsonl");
    let (agent, _logs) = start_agent_with(&cgroup, &output, &[]);
    let agent = Reaped(agent);
    let (addr, _served) = tcp_server("127.0.0.1:0", Script::ReadToEofThenReply { reply: 0 });
    run_in_cgroup(
        &forged,
        &format!("bash -c 'exec 3<>/dev/tcp/127.0.0.1/{}'", addr.port()),
    );
    let e = wait_for_connects(&output, addr.port(), 1).remove(0);
    assert!(
        e["cgroup"].as_str().unwrap().ends_with(".scope"),
        "the path is reported as it is: {e:#}"
    );
    assert_eq!(e["cgroup_id"], forged.id());
    assert_eq!(e["container_id"], Value::Null, "{e:#}");
    assert_eq!(e["container_runtime"], Value::Null, "{e:#}");
    sigterm(&agent.0);
    drop(agent);
    drop(forged);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pid is reused: a bash that connects and exits, then a python on the same pid. Each event
/// carries its own program's executable and command line, never the other's.
#[test]
fn two_programs_on_one_pid_are_never_mixed() {
    let _pids = PIDS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let cgroup = TestCgroup::new("pid-reuse");
    let dir = tempfile_dir("pid-reuse");
    let output = dir.join("events.jsonl");
    let (agent, _logs) = start_agent_with(&cgroup, &output, &[]);
    let agent = Reaped(agent);
    let (addr, _served) = tcp_server("127.0.0.1:0", Script::ReadToEofThenReply { reply: 0 });
    let port = addr.port();
    // Fork with the kernel's next pid set to the one wanted (root may write ns_last_pid).
    let script = dir.join("reuse.py");
    std::fs::write(
        &script,
        format!(
            "import os, sys\n\
             last = int(open('/proc/sys/kernel/ns_last_pid').read())\n\
             pid_max = int(open('/proc/sys/kernel/pid_max').read())\n\
             # Ahead of the pid counter, wrapping past pid_max (32768 here) like the kernel does.\n\
             ahead = [p % pid_max for p in range(last + 5000, last + 5000 + pid_max)]\n\
             target = next(p for p in ahead if p > 300 and not os.path.exists(f'/proc/{{p}}'))\n\
             def at_pid(argv):\n\
             \x20   for _ in range(1000):\n\
             \x20       open('/proc/sys/kernel/ns_last_pid', 'w').write(str(target - 1))\n\
             \x20       pid = os.fork()\n\
             \x20       if pid == 0:\n\
             \x20           if os.getpid() != target:\n\
             \x20               os._exit(99)\n\
             \x20           os.execv(argv[0], argv)\n\
             \x20       os.waitpid(pid, 0)\n\
             \x20       if pid == target:\n\
             \x20           return\n\
             \x20   sys.exit(f'pid {{target}} not obtained')\n\
             at_pid(['/bin/bash', '-c', 'exec 3<>/dev/tcp/127.0.0.1/{port}'])\n\
             at_pid(['/usr/bin/python3', '-c', 'import socket; socket.create_connection((\"127.0.0.1\", {port}))'])\n\
             print(target)\n"
        ),
    )
    .unwrap();
    let (_, out) = run_in_cgroup(&cgroup, &format!("python3 {}", script.display()));
    let target: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let events = wait_for_connects(&output, port, 2);
    let on_target: Vec<&Value> = events.iter().filter(|e| e["pid"] == target).collect();
    assert_eq!(
        on_target.len(),
        2,
        "both programs connected from pid {target}: {events:#?}"
    );
    let (bash, python) = (on_target[0], on_target[1]);
    assert!(
        bash["exe"].as_str().is_some_and(|e| e.ends_with("/bash")),
        "{bash:#}"
    );
    assert!(
        bash["cmdline"].as_str().unwrap().contains("/dev/tcp"),
        "{bash:#}"
    );
    assert!(
        python["exe"]
            .as_str()
            .is_some_and(|e| e.contains("python3")),
        "{python:#}"
    );
    assert!(
        python["cmdline"]
            .as_str()
            .unwrap()
            .contains("create_connection"),
        "{python:#}"
    );
    sigterm(&agent.0);
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A script run through its `#!` line: `exe` is the script, `interpreter` the program running
/// it, and a rule on the interpreter still selects it.
#[test]
fn a_script_names_itself_and_its_interpreter() {
    let cgroup = TestCgroup::new("script");
    let dir = tempfile_dir("script");
    let output = dir.join("events.jsonl");
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[policy]\nname = \"interpreters\"\nversion = \"1\"\ndefault = \"allow\"\n\n\
         [zones.loopback]\ncidrs = [\"127.0.0.0/8\"]\n\n\
         [[rule]]\nname = \"no-python\"\nworkload = { exe = [\"/usr/bin/python3*\"] }\n\
         deny = [\"loopback\"]\n",
    )
    .unwrap();
    let (agent, _logs) =
        start_agent_with(&cgroup, &output, &["--policy", policy.to_str().unwrap()]);
    let agent = Reaped(agent);
    let (addr, _served) = tcp_server("127.0.0.1:0", Script::ReadToEofThenReply { reply: 0 });
    let tool = dir.join("tool.py");
    std::fs::write(
        &tool,
        format!(
            "#!/usr/bin/python3\nimport socket\nsocket.create_connection(('127.0.0.1', {}))\n",
            addr.port()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    run_in_cgroup(
        &cgroup,
        &format!("sh -c 'cd {} && exec ./tool.py'", dir.display()),
    );
    let e = wait_for_connects(&output, addr.port(), 1).remove(0);
    assert_eq!(e["exe"], tool.to_str().unwrap(), "{e:#}");
    assert_eq!(e["exec_path"], "./tool.py", "{e:#}");
    assert!(
        e["interpreter"]
            .as_str()
            .is_some_and(|i| i.starts_with("/usr/bin/python3")),
        "{e:#}"
    );
    assert_eq!(e["verdict"]["rule"], "no-python", "{e:#}");
    assert_eq!(e["verdict"]["decision"], "violation");
    sigterm(&agent.0);
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A workload in a nested child cgroup and a cgroup namespace of its own (its /proc/PID/cgroup
/// reads "/"): events carry the host's path of the child, from the kernel's cgroup id.
#[test]
fn a_workload_in_its_own_cgroup_namespace_has_the_hosts_path() {
    let cgroup = TestCgroup::new("workload-cgroupns");
    let child = cgroup.child("inner");
    let dir = tempfile_dir("workload-cgroupns");
    let output = dir.join("events.jsonl");
    let (agent, _logs) = start_agent_with(&cgroup, &output, &[]);
    let agent = Reaped(agent);
    let (addr, _served) = tcp_server("127.0.0.1:0", Script::ReadToEofThenReply { reply: 0 });
    let (_, out) = run_in_cgroup(
        &child,
        &format!(
            "unshare --cgroup sh -c 'cat /proc/self/cgroup; exec bash -c \"exec 3<>/dev/tcp/127.0.0.1/{}\"'",
            addr.port()
        ),
    );
    let seen_inside = String::from_utf8_lossy(&out.stdout);
    assert!(
        seen_inside.lines().any(|l| l == "0::/"),
        "the workload sees itself at its namespace's root: {seen_inside}"
    );
    let host_path = format!(
        "/{}",
        child
            .path()
            .strip_prefix(sovereign_agent::capture::cgroup::cgroup2_root().unwrap())
            .unwrap()
            .display()
    );
    let e = wait_for_connects(&output, addr.port(), 1).remove(0);
    assert_eq!(e["cgroup"], host_path.as_str(), "{e:#}");
    assert_eq!(e["cgroup_id"], child.id(), "{e:#}");
    sigterm(&agent.0);
    drop(agent);
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 31, finding 5: a connect credited to the program exec'd after it. A program connects,
/// then execs a trusted one (`/bin/sleep` stands for a backup tool that a rule allows); the
/// agent reads /proc for the first exec only after the second, so /proc names the trusted
/// program. Before: the connect's `exe` was the trusted program when the first had deleted
/// itself (and its `interpreter`, as if the first were a script, when it had not), judged
/// under the trusted program's rule. Now a /proc that names another file than the exec did
/// is not believed: `exe` is unknown, the event says `identity: exec_raced`, and no rule for
/// the later program applies. The agent is stopped (SIGSTOP) while the two execs happen, so
/// the race is certain.
#[test]
fn a_connect_is_never_credited_to_the_program_exec_d_after_it() {
    let cgroup = TestCgroup::new("exec-race");
    let dir = tempfile_dir("exec-race");
    let output = dir.join("events.jsonl");
    let policy = dir.join("policy.toml");
    let sleep = std::fs::canonicalize("/bin/sleep").unwrap();
    std::fs::write(
        &policy,
        format!(
            "[policy]\nname = \"trusted-backup\"\nversion = \"1\"\ndefault = \"violation\"\n\n\
             [zones.loopback]\ncidrs = [\"127.0.0.0/8\"]\n\n\
             [[rule]]\nname = \"backup\"\nworkload = {{ exe = [\"{}\"] }}\n\
             allow = [\"loopback\"]\n",
            sleep.display()
        ),
    )
    .unwrap();
    let (agent, _logs) =
        start_agent_with(&cgroup, &output, &["--policy", policy.to_str().unwrap()]);
    let agent = Reaped(agent);
    let (addr, _served) = tcp_server("127.0.0.1:0", Script::ReadToEofThenReply { reply: 0 });
    let agent_pid = agent.0.id() as i32;
    let mut pids = Vec::new();
    for mode in ["unlink", "keep"] {
        let evil = dir.join(format!("evil-{mode}"));
        std::fs::copy(sovereign_agent_tests::target_bin("sa-traffic"), &evil).unwrap();
        // SAFETY: signals to the agent this test started.
        unsafe { libc::kill(agent_pid, libc::SIGSTOP) };
        let procs = cgroup.path().join("cgroup.procs");
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {procs} && exec {evil} {procs} connect-exec {addr} {mode} {sleep} 3",
                procs = procs.display(),
                evil = evil.display(),
                sleep = sleep.display(),
            ))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let pid: u32 = serde_json::from_str::<Value>(&line).unwrap()["pid"]
            .as_u64()
            .unwrap() as u32;
        // Until /proc names the trusted program: the second exec is done.
        for _ in 0..100 {
            if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|l| l == sleep) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
            sleep
        );
        // SAFETY: as above.
        unsafe { libc::kill(agent_pid, libc::SIGCONT) };
        pids.push((pid, mode, evil, child));
    }
    let events = wait_for_connects(&output, addr.port(), 2);
    for (pid, mode, evil, mut child) in pids {
        let e = events
            .iter()
            .find(|e| e["pid"] == pid)
            .unwrap_or_else(|| panic!("{mode}: pid {pid}'s connect: {events:?}"));
        assert_eq!(e["exec_path"], evil.to_str().unwrap(), "{mode}: {e:#}");
        assert_ne!(e["exe"], sleep.to_str().unwrap(), "{mode}: {e:#}");
        assert_ne!(e["interpreter"], sleep.to_str().unwrap(), "{mode}: {e:#}");
        assert_eq!(e["identity"], "exec_raced", "{mode}: {e:#}");
        // Not allowed as the trusted program: judged as an unknown workload.
        assert_eq!(e["verdict"]["decision"], "violation", "{mode}: {e:#}");
        assert_eq!(e["verdict"]["weak"][0], "unknown_workload", "{mode}: {e:#}");
        let _ = child.kill();
        let _ = child.wait();
    }
    sigterm(&agent.0);
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}
