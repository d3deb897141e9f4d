//! NATS for the tests and benches of the `nats` sink and the collector's JetStream source: real
//! `nats-server`s with JetStream on loopback, and an independent client (nats-py, through
//! tests/python/jetstream.py) to create streams and read them back.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{collector_command, free_port, Reaped};

/// The Python of `cargo xtask setup`'s venv (it has nats-py).
pub fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python-grpc/bin/python");
    assert!(
        venv.exists(),
        "run `cargo xtask setup` (installs nats-py in target/python-grpc)"
    );
    venv
}

/// Runs tests/python/jetstream.py; its stdout.
pub fn jetstream(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/jetstream.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "jetstream.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `nats-server`s with JetStream; more than one are clustered over loopback routes.
pub struct Cluster {
    dir: PathBuf,
    client_ports: Vec<u16>,
    nodes: Vec<Option<Child>>,
}

impl Cluster {
    /// `n` nodes, their configuration, stores and logs in `dir`.
    pub fn start(dir: &Path, n: usize) -> Cluster {
        let client_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes: Vec<String> = route_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        for i in 0..n {
            let cluster = if n > 1 {
                format!(
                    "cluster {{ name: sovereign, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                    route_ports[i],
                    routes.join(", ")
                )
            } else {
                String::new()
            };
            std::fs::write(
                dir.join(format!("n{i}.conf")),
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{}\n\
                     jetstream {{ store_dir: \"{}\" }}\n{cluster}",
                    client_ports[i],
                    dir.join(format!("n{i}-store")).display(),
                ),
            )
            .unwrap();
        }
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            client_ports,
            nodes: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            cluster.start_node(i);
        }
        cluster
    }

    pub fn start_node(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("n{i}.log")))
            .unwrap();
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(self.dir.join(format!("n{i}.conf")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server (installed by `cargo xtask setup`)");
        self.nodes[i] = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.client_ports[i])).is_err() {
            assert!(Instant::now() < deadline, "nats-server n{i} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The running nodes' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().flatten().map(Child::id).collect()
    }

    /// The nodes' client URLs, comma-separated.
    pub fn servers(&self) -> String {
        self.client_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }
}

/// A `sovereign-collector` named `name` (its journal and socket under `dir/name`) that
/// consumes `stream` on `servers` (the certificates of
/// [`collector_certs`](crate::collector_certs) in `dir`; it appends its log to `dir/name/stderr`).
pub fn start_stream_collector(dir: &Path, name: &str, servers: &str, stream: &str) -> Reaped {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let socket = home.join("collector.sock");
    let _ = std::fs::remove_file(&socket);
    let mut command = collector_command(dir, free_port(), &home.join("journal"), &socket);
    command.args(["--nats-stream", stream]).stderr(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.join("stderr"))
            .unwrap(),
    );
    for server in servers.split(',') {
        command.args(["--nats-server", server]);
    }
    let child = command.spawn().expect("sovereign-collector");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "the collector {name} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Reaped(child)
}
