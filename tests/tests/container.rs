//! The agent in a container, the way the DaemonSet runs it, watching another container.
//!
//! Real components throughout: the image is built by `docker build` from
//! packaging/Containerfile (on a Debian base made by debootstrap and `docker import`, since
//! there is no registry here) with the package `cargo xtask package deb` makes; the agent runs
//! from that image's file system under runc with the DaemonSet's pod settings, read from
//! packaging/kubernetes/daemonset.yaml: the host's PID namespace, its own cgroup, mount and
//! network namespaces, a read-only root, no new privileges, exactly the DaemonSet's
//! capabilities (Debian's Docker 20.10 cannot grant CAP_BPF or CAP_PERFMON, runc can), and the
//! DaemonSet's host mounts (cgroup file system, bpffs, tracefs). The workload is a busybox
//! container run by dockerd, whose short-lived `nc` processes must carry their executable,
//! container id, runtime and the host's cgroup path.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use sovereign_agent_tests::{events_of, require_root, Reaped};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A dockerd of the test's own: its own socket, data and state directories, no bridge and no
/// iptables rules (the containers run without a network).
struct Dockerd {
    child: Child,
    dir: PathBuf,
    host: String,
}

impl Dockerd {
    fn start() -> Dockerd {
        let dir = std::env::temp_dir().join(format!("sa-dockerd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let host = format!("unix://{}/docker.sock", dir.display());
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .args(["-H", &host, "--iptables=false", "--ip6tables=false"])
            .args(["--bridge=none", "--ip-masq=false"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd (Debian's docker.io; `cargo xtask setup` installs it)");
        let d = Dockerd { child, dir, host };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d.docker(&["info"]).status().is_ok_and(|s| s.success()) {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start: {}",
                std::fs::read_to_string(d.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        d
    }

    fn docker(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", &self.host)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", &self.host).args(args);
        run(&mut c)
    }

    /// `docker import` of a directory's contents as `tag`.
    fn import(&self, rootfs: &Path, tag: &str) {
        let tar = self
            .dir
            .join(format!("{}.tar", tag.replace(['/', ':'], "_")));
        run(Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg("."));
        self.ok(&["import", tar.to_str().unwrap(), tag]);
        let _ = std::fs::remove_file(tar);
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = Command::new("docker")
            .env("DOCKER_HOST", &self.host)
            .args(["ps", "-aq"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in ids.split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]).status();
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        // What dockerd leaves mounted (its network namespace file), deepest first.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| Path::new(m).starts_with(&self.dir))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Debian 12 root file system from Debian's packages (debootstrap), kept under target/ so a
/// second run does not fetch it again.
fn debian_rootfs() -> PathBuf {
    let dir = root().join("target/test-images/debian-bookworm");
    if dir.join("usr/bin/apt-get").exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mirror = std::env::var("SOVEREIGN_TEST_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    run(Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&dir)
        .arg(mirror));
    dir
}

/// A root file system holding only busybox-static and the applets the workload calls.
fn busybox_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("busybox");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("/bin/busybox (busybox-static; `cargo xtask setup` installs it)");
    for applet in ["sh", "nc", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    rootfs
}

/// The DaemonSet's added capabilities (`add: [...]`), as runc names them.
fn daemonset_capabilities() -> Vec<String> {
    let yaml = std::fs::read_to_string(root().join("packaging/kubernetes/daemonset.yaml")).unwrap();
    let line = yaml
        .lines()
        .find(|l| l.trim_start().starts_with("add: ["))
        .expect("the DaemonSet adds capabilities");
    let list = line.split('[').nth(1).unwrap().trim_end_matches(']');
    list.split(',')
        .map(|c| format!("CAP_{}", c.trim().trim_matches('"')))
        .collect()
}

/// The DaemonSet's host mounts: (hostPath, mountPath, read-only).
fn daemonset_host_mounts() -> Vec<(String, String, bool)> {
    let yaml = std::fs::read_to_string(root().join("packaging/kubernetes/daemonset.yaml")).unwrap();
    let value = |block: &str, key: &str| -> Option<String> {
        block
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
            .map(|v| v.trim_matches('"').to_string())
    };
    // volumeMounts entries (name, mountPath, readOnly) and volumes (name, hostPath.path).
    let mut mounts = Vec::new();
    let (mounts_part, volumes_part) = yaml.split_once("      volumes:").unwrap();
    let mounts_part = mounts_part.split_once("volumeMounts:").unwrap().1;
    for entry in mounts_part.split("- name: ").skip(1) {
        let name = entry.lines().next().unwrap().trim().to_string();
        let Some(path) = value(entry, "mountPath") else {
            continue;
        };
        let read_only = value(entry, "readOnly").as_deref() == Some("true");
        let volume = volumes_part
            .split("- name: ")
            .find(|v| v.lines().next().unwrap().trim() == name)
            .unwrap();
        if volume.contains("hostPath:") {
            mounts.push((value(volume, "path").unwrap(), path, read_only));
        }
    }
    mounts
}

#[test]
fn the_agent_in_a_daemonset_like_container_names_another_containers_processes() {
    require_root();
    let work = std::env::temp_dir().join(format!("sa-container-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let dockerd = Dockerd::start();

    // The agent's image, from packaging/Containerfile.
    dockerd.import(&debian_rootfs(), "docker.io/library/debian:bookworm-slim");
    let context = work.join("context");
    let debs = context.join("target/debian");
    std::fs::create_dir_all(&debs).unwrap();
    run(Command::new("cargo")
        .current_dir(root())
        .args(["xtask", "package", "deb", "--profile", "dev", "--out"])
        .arg(&debs));
    dockerd.ok(&[
        "build",
        "--network",
        "host",
        "-f",
        root().join("packaging/Containerfile").to_str().unwrap(),
        "-t",
        "sovereign-agent:test",
        context.to_str().unwrap(),
    ]);
    let image_box = dockerd
        .ok(&["create", "sovereign-agent:test"])
        .trim()
        .to_string();
    let bundle = work.join("bundle");
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let tar = work.join("agent.tar");
    dockerd.ok(&["export", "-o", tar.to_str().unwrap(), &image_box]);
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-xf")
        .arg(&tar));

    // runc with the DaemonSet's pod settings.
    let out = work.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut host_mounts = daemonset_host_mounts();
    let cgroup_root = sovereign_agent::capture::cgroup::cgroup2_root().unwrap();
    for m in &mut host_mounts {
        // The DaemonSet mounts /sys/fs/cgroup: on hybrid hosts the v2 hierarchy is below it.
        if m.0 == "/sys/fs/cgroup" {
            m.0 = cgroup_root.display().to_string();
        }
        // Host directories of the journal and API socket: the test's own.
        if m.1.starts_with("/var/lib/sovereign-agent") || m.1.starts_with("/run/sovereign-agent") {
            let dir = work.join(m.1.trim_start_matches('/').replace('/', "_"));
            std::fs::create_dir_all(&dir).unwrap();
            m.0 = dir.display().to_string();
        }
    }
    assert!(
        host_mounts
            .iter()
            .any(|(_, path, _)| path == "/sys/kernel/tracing"),
        "the DaemonSet mounts tracefs: {host_mounts:?}"
    );
    let caps = daemonset_capabilities();
    run(Command::new("runc").current_dir(&bundle).arg("spec"));
    let config_path = bundle.join("config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!([
        "/usr/bin/sovereign-agent",
        "run",
        "--config",
        "/etc/sovereign-agent/agent.toml",
        "--cgroup",
        "/host/sys/fs/cgroup",
        "--output",
        "/out/events.jsonl",
        "--log-format",
        "json"
    ]);
    config["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps
    });
    config["process"]["noNewPrivileges"] = json!(true);
    config["root"]["readonly"] = json!(true);
    // hostPID: no PID namespace; the pod's own cgroup, mount, network, IPC and UTS ones. The
    // pod's network namespace has its loopback up (the metrics listener binds to it).
    let netns = format!("sa-pod-{}", std::process::id());
    run(Command::new("ip").args(["netns", "add", &netns]));
    struct Netns(String);
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _netns = Netns(netns.clone());
    run(Command::new("ip").args(["-n", &netns, "link", "set", "lo", "up"]));
    config["linux"]["namespaces"] = json!([
        {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "cgroup"},
        {"type": "network", "path": format!("/var/run/netns/{netns}")}
    ]);
    let mounts = config["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
    mounts.push(json!({"destination": "/out", "type": "bind",
        "source": out, "options": ["rbind", "rw"]}));
    for (host, path, read_only) in &host_mounts {
        mounts.push(json!({"destination": path, "type": "bind", "source": host,
            "options": ["rbind", if *read_only { "ro" } else { "rw" }]}));
    }
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let id = format!("sa-agent-{}", std::process::id());
    let agent_log = std::fs::File::create(work.join("agent.log")).unwrap();
    let agent = Command::new("runc")
        .current_dir(&bundle)
        .args(["run", &id])
        .stdin(Stdio::null())
        .stdout(agent_log.try_clone().unwrap())
        .stderr(agent_log)
        .spawn()
        .expect("runc");
    /// The agent's container: stopped (SIGTERM, as the kubelet does) and deleted at the end;
    /// the runc process is reaped after that.
    struct Container {
        id: String,
        _runc: Reaped,
    }
    impl Drop for Container {
        fn drop(&mut self) {
            let _ = Command::new("runc")
                .args(["kill", &self.id, "TERM"])
                .status();
            std::thread::sleep(Duration::from_millis(500));
            let _ = Command::new("runc")
                .args(["delete", "-f", &self.id])
                .status();
        }
    }
    let agent = Container {
        id,
        _runc: Reaped(agent),
    };
    let events = out.join("events.jsonl");
    let deadline = Instant::now() + Duration::from_secs(30);
    let start = loop {
        if let Some(e) = events_of(&events)
            .into_iter()
            .find(|e| e["kind"] == "agent_start")
        {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not start in its container: {}",
            std::fs::read_to_string(work.join("agent.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for hook in [
        "cgroup/connect4",
        "tracepoint/sched/sched_process_exec",
        "tracepoint/task/task_newtask",
    ] {
        assert!(
            start["hooks"].as_array().unwrap().iter().any(|h| h == hook),
            "{hook} attached in the container: {start:#}\n{}",
            std::fs::read_to_string(work.join("agent.log")).unwrap_or_default()
        );
    }

    // The workload: 20 short-lived nc processes in a container without a network.
    dockerd.import(&busybox_rootfs(&work), "sa-busybox:test");
    const N: usize = 20;
    let container_id = dockerd
        .ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "sa-busybox:test",
            "/bin/sh",
            "-c",
            &format!(
                "sleep 1; i=0; while [ $i -lt {N} ]; do nc 127.0.0.1 9; i=$((i+1)); done; sleep 60"
            ),
        ])
        .trim()
        .to_string();
    assert_eq!(container_id.len(), 64, "{container_id}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let connects = loop {
        let c: Vec<Value> = events_of(&events)
            .into_iter()
            .filter(|e| e["kind"] == "connect" && e["dst_port"] == 9)
            .collect();
        if c.len() >= N || Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(connects.len(), N, "every connect of the workload");
    // The host's path of the container's cgroup, whichever driver dockerd uses.
    let host_path = [
        format!("/docker/{container_id}"),
        format!("/system.slice/docker-{container_id}.scope"),
    ]
    .into_iter()
    .find(|p| cgroup_root.join(p.trim_start_matches('/')).is_dir())
    .expect("the container's cgroup on the host");
    let cgroup_id = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(cgroup_root.join(host_path.trim_start_matches('/')))
            .unwrap()
            .ino()
    };
    let mut pids = std::collections::HashSet::new();
    for e in &connects {
        assert_eq!(e["container_id"], container_id.as_str(), "{e:#}");
        assert_eq!(e["container_runtime"], "docker", "{e:#}");
        assert_eq!(e["cgroup"], host_path.as_str(), "the host's path: {e:#}");
        assert_eq!(e["cgroup_id"], cgroup_id, "{e:#}");
        assert_eq!(e["exe"], "/bin/busybox", "{e:#}");
        assert_eq!(e["comm"], "nc", "{e:#}");
        assert_eq!(e["cmdline"], "nc 127.0.0.1 9", "{e:#}");
        assert_eq!(e["parent_exe"], "/bin/busybox", "{e:#}");
        assert!(e.get("identity").is_none(), "{e:#}");
        pids.insert(e["pid"].as_u64().unwrap());
    }
    assert_eq!(pids.len(), N, "one process per connect");
    drop(agent);
    drop(dockerd);
    let _ = std::fs::remove_dir_all(&work);
}
