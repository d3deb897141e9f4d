//! Helpers for the root-only integration tests: a child cgroup per test, the traffic
//! generator, small servers, and event collection with a deadline.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use sovereign_agent::event::{Event, FlowEvent};

pub mod nats;
pub mod net;
pub mod rsyslog;
pub mod webhook;
use tokio::sync::mpsc::UnboundedReceiver;

/// Fails the test run with a clear sentence when not root: these tests load kernel programs.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "the integration tests load eBPF programs and need root: run `sudo cargo xtask test`"
        );
    }
}

/// A binary of this workspace, next to the running test executable (target/<profile>/), or
/// from `SOVEREIGN_TEST_BIN_DIR`.
pub fn target_bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("SOVEREIGN_TEST_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Runs this workspace's `sovereign-agent` binary; returns (exit code, stdout, stderr).
pub fn run_agent<I, S>(args: I) -> (i32, String, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(target_bin("sovereign-agent"))
        .args(args)
        .output()
        .expect("run sovereign-agent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A child cgroup of the cgroup v2 root, removed (after its processes exit) on drop.
pub struct TestCgroup {
    path: PathBuf,
}

impl TestCgroup {
    pub fn new(name: &str) -> Self {
        require_root();
        static N: AtomicU32 = AtomicU32::new(0);
        let root = sovereign_agent::capture::cgroup::cgroup2_root().expect("cgroup v2 is mounted");
        let path = root.join(format!(
            "sa-test-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self { path }
    }

    /// A cgroup named exactly `name` at the hierarchy's root (a `.slice`, so that the agent
    /// takes a `.service` below it for a systemd unit), removed on drop.
    pub fn at_root(name: &str) -> Self {
        require_root();
        let root = sovereign_agent::capture::cgroup::cgroup2_root().expect("cgroup v2 is mounted");
        let path = root.join(name);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A child cgroup `name` of this one (watched with it), removed on drop; drop it before
    /// its parent.
    pub fn child(&self, name: &str) -> TestCgroup {
        let path = self.path.join(name);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TestCgroup { path }
    }

    /// The cgroup's id, as the kernel puts it in records: its directory's inode number.
    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.path).expect("cgroup exists").ino()
    }

    /// Starts `sh -c SCRIPT` in this cgroup without waiting for it (a server).
    pub fn spawn(&self, script: &str) -> Reaped {
        Reaped(
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "echo $$ > {}/cgroup.procs && exec {script}",
                    self.path.display()
                ))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("sh"),
        )
    }

    /// Runs the traffic generator inside this cgroup and returns its (pid, local port). It
    /// stays alive 300 ms after its traffic, so its /proc entry is there when events are read
    /// (except in mode `exit`, which exits at once).
    pub fn traffic(&self, args: &[&str]) -> (u32, u16) {
        let out = Command::new(target_bin("sa-traffic"))
            .env("SA_TRAFFIC_LINGER_MS", "300")
            .arg(self.path.join("cgroup.procs"))
            .args(args)
            .output()
            .expect("run sa-traffic");
        assert!(
            out.status.success(),
            "sa-traffic {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sa-traffic output");
        (
            v["pid"].as_u64().unwrap() as u32,
            v["local_port"].as_u64().unwrap() as u16,
        )
    }

    /// Programs attached to this cgroup, as `bpftool cgroup show` lists them.
    pub fn attached_programs(&self) -> String {
        let out = Command::new("bpftool")
            .args(["cgroup", "show"])
            .arg(&self.path)
            .output()
            .expect("bpftool is installed by `cargo xtask setup`");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Processes that already exited may take a moment to leave the cgroup.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: could not remove {}", self.path.display());
    }
}

/// What the test server does with each connection.
#[derive(Clone, Copy, Debug)]
pub enum Script {
    /// Read until the client half-closes, reply, close.
    ReadToEofThenReply { reply: usize },
    /// Read `expect` bytes, reply, close first.
    ReplyAndClose { expect: usize, reply: usize },
    /// Read `expect` bytes, reply, wait for the client to close, then close.
    ReplyAndWaitForClose { expect: usize, reply: usize },
}

/// A TCP server on `bind` running `script` for every connection. Returns its address and a
/// receiver of the byte counts it read per connection.
pub fn tcp_server(bind: &str, script: Script) -> (SocketAddr, std::sync::mpsc::Receiver<usize>) {
    let listener = TcpListener::bind(bind).expect("bind test server");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = Vec::new();
            let reply = match script {
                Script::ReadToEofThenReply { reply } => {
                    let _ = s.read_to_end(&mut buf);
                    reply
                }
                Script::ReplyAndClose { expect, reply }
                | Script::ReplyAndWaitForClose { expect, reply } => {
                    buf.resize(expect, 0);
                    let _ = s.read_exact(&mut buf);
                    reply
                }
            };
            let _ = s.write_all(&vec![b'y'; reply]);
            if let Script::ReplyAndWaitForClose { .. } = script {
                let _ = s.read_to_end(&mut Vec::new());
            }
            drop(s);
            if tx.send(buf.len()).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

/// A TCP port on `ip` with no listener (bound, then closed).
pub fn closed_port(bind: &str) -> SocketAddr {
    let l = TcpListener::bind(bind).unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

/// Receives events until `done` holds for the flows seen so far, or the deadline passes
/// (then the test fails and prints what arrived).
pub async fn collect_until(
    rx: &mut UnboundedReceiver<Event>,
    deadline: Duration,
    done: impl Fn(&[FlowEvent]) -> bool,
) -> Vec<FlowEvent> {
    let start = Instant::now();
    let mut flows = Vec::new();
    while !done(&flows) {
        let left = deadline.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(Event::Flow(f))) => flows.push(*f),
            Ok(Some(Event::Loss(l))) => panic!("kernel lost {} records in a test", l.lost),
            Ok(Some(
                Event::Lifecycle(_) | Event::Alert(_) | Event::DnsRefused(_) | Event::Flood(_),
            )) => {}
            Ok(None) | Err(_) => {
                panic!("events did not arrive within {deadline:?}; got {flows:#?}")
            }
        }
    }
    flows
}

/// A child process killed and reaped when the test ends, however it ends.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sovereign-agent run` on `cgroup` writing to `output` (plus `extra` arguments) and
/// waits until it reports that it is capturing; returns it and its stderr lines.
pub fn start_agent_with(
    cgroup: &TestCgroup,
    output: &Path,
    extra: &[&str],
) -> (Child, std::sync::mpsc::Receiver<String>) {
    start_agent_wrapped(cgroup, output, extra, &[])
}

/// [`start_agent_with`], the agent started through `wrapper` (e.g. `["unshare", "-C"]`).
pub fn start_agent_wrapped(
    cgroup: &TestCgroup,
    output: &Path,
    extra: &[&str],
    wrapper: &[&str],
) -> (Child, std::sync::mpsc::Receiver<String>) {
    let (child, _, logs) = start_agent_logged(cgroup, output, extra, wrapper);
    (child, logs)
}

/// [`start_agent_wrapped`], also returning the log lines the agent wrote before `capturing`
/// (what it said while attaching).
pub fn start_agent_logged(
    cgroup: &TestCgroup,
    output: &Path,
    extra: &[&str],
    wrapper: &[&str],
) -> (Child, Vec<String>, std::sync::mpsc::Receiver<String>) {
    // Each agent journals next to its output (never to the system default, shared by tests
    // that run at the same time), unless the test chose.
    let mut journal = Vec::new();
    if !extra
        .iter()
        .any(|a| *a == "--journal" || *a == "--no-journal")
    {
        journal.push("--journal".into());
        journal.push(journal_dir_of(output).into_os_string());
    }
    // Likewise its API socket.
    if !extra
        .iter()
        .any(|a| *a == "--api-socket" || *a == "--no-api")
    {
        journal.push("--api-socket".into());
        journal.push(api_socket_of(output).into_os_string());
    }
    // And its metrics endpoint, on a port of its own.
    if !extra
        .iter()
        .any(|a| *a == "--metrics-listen" || *a == "--no-metrics")
    {
        journal.push("--metrics-listen".into());
        journal.push("127.0.0.1:0".into());
    }
    // The output file, unless the test chose (`--output none`).
    if !extra.contains(&"--output") {
        journal.push("--output".into());
        journal.push(output.into());
    }
    let agent = target_bin("sovereign-agent");
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(&agent);
            c
        }
        None => Command::new(&agent),
    };
    let mut child = command
        .args(["run", "--log-format", "json", "--cgroup"])
        .arg(cgroup.path())
        .args(&journal)
        .args(extra)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sovereign-agent");
    let rx = stderr_lines(&mut child);
    let mut before = Vec::new();
    // Generous: under the VM test's emulated CPU (no KVM) on a busy host, loading and
    // verifying the programs has taken over 20 s; a healthy start here takes well under 1 s.
    loop {
        match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(line) if line.contains("\"capturing\"") => return (child, before, rx),
            Ok(line) => before.push(line),
            Err(_) => {
                drop(Reaped(child));
                panic!("agent did not report `capturing` in time: {before:#?}");
            }
        }
    }
}

/// The API socket `start_agent` gives an agent writing to `output`.
pub fn api_socket_of(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".sock");
    output.with_file_name(name)
}

/// The journal directory `start_agent` gives an agent writing to `output`.
pub fn journal_dir_of(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    output.with_file_name(name)
}

pub fn start_agent(
    cgroup: &TestCgroup,
    output: &Path,
) -> (Child, std::sync::mpsc::Receiver<String>) {
    start_agent_with(cgroup, output, &[])
}

pub fn sigterm(child: &Child) {
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// Runs `sh -c SCRIPT` after moving the shell into the cgroup; with `exec` in front of the
/// last command its pid is the shell's. Returns the shell's pid and output.
pub fn run_in_cgroup(cgroup: &TestCgroup, script: &str) -> (u32, std::process::Output) {
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec {script}",
            cgroup.path().display()
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sh");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (pid, out)
}

/// Every JSON line written so far (a last line still being written is left for next time).
pub fn events_of(output: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(output).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is one JSON object"))
        .collect()
}

/// Waits (up to 10 s) until an event satisfies `pred`.
pub fn wait_for_event(
    output: &Path,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..200 {
        if let Some(e) = events_of(output).into_iter().find(|e| pred(e)) {
            return e;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no matching event in {:#?}", events_of(output));
}

/// Waits (up to 10 s) for a stderr line of the agent that satisfies `pred`.
pub fn wait_for_log(logs: &std::sync::mpsc::Receiver<String>, pred: impl Fn(&str) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match logs.recv_timeout(left) {
            Ok(line) if pred(&line) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// Makes a key and a certificate signed by `ca` (or self-signed when `ca` is None).
pub fn openssl_cert(dir: &Path, name: &str, ca: Option<&str>, days: &str, ext: &str) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = format!("{name}.key");
    let pem = format!("{name}.pem");
    let subj = format!("/CN={name}");
    match ca {
        None => run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-subj",
            &subj,
            "-days",
            days,
        ]),
        Some(ca) => {
            let csr = format!("{name}.csr");
            let extfile = format!("{name}.ext");
            std::fs::write(dir.join(&extfile), ext).unwrap();
            run(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subj,
            ]);
            let ca_pem = format!("{ca}.pem");
            let ca_key = format!("{ca}.key");
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                days,
                "-extfile",
                &extfile,
            ]);
        }
    }
}

/// The certificates of a collector on 127.0.0.1 and one agent, in `dir`: a CA (`ca`), the
/// collector's server certificate (`collector`) and the agent's client certificate (`agent`),
/// valid for two days.
pub fn collector_certs(dir: &Path, agent: &str) {
    openssl_cert(dir, "ca", None, "2", "");
    // Subscribers' certificates come from a CA of their own (docs/collector.md, "Roles"):
    // `team` reads the fleet's events.
    openssl_cert(dir, "subscribers-ca", None, "2", "");
    openssl_cert(
        dir,
        "team",
        Some("subscribers-ca"),
        "2",
        "extendedKeyUsage=clientAuth\n",
    );
    openssl_cert(
        dir,
        "collector",
        Some("ca"),
        "2",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    openssl_cert(dir, agent, Some("ca"), "2", "extendedKeyUsage=clientAuth\n");
}

/// A policy with one zone, loopback (127.0.0.0/8), and one rule for the `sa-traffic`
/// generator: `rule` is its body, e.g. `deny = ["loopback"]\nseverity = "critical"`.
pub fn loopback_policy(name: &str, version: &str, rule: &str) -> String {
    format!(
        "[policy]\nname = \"{name}\"\nversion = \"{version}\"\ndefault = \"allow\"\n\n\
         [zones.loopback]\ncidrs = [\"127.0.0.0/8\"]\n\n\
         [[rule]]\nname = \"generator\"\nworkload = {{ comm = [\"sa-traffic\"] }}\n{rule}\n"
    )
}

/// Runs the Python grpcio client (tests/python/agent_client.py) against the API on `socket`:
/// health, reflection, status, then `count` events from `since` of `kind`. Returns its JSON
/// lines (health, services, status, then one per event); fails the test if it fails.
pub fn python_client(
    socket: &Path,
    since: u64,
    count: usize,
    kind: &str,
) -> Vec<serde_json::Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("../target/python-grpc/bin/python");
    assert!(
        python.exists(),
        "run `cargo xtask setup` (installs the Python gRPC client)"
    );
    let out = Command::new(python)
        .arg(root.join("python/agent_client.py"))
        .arg(root.join("../proto"))
        .arg(socket)
        .args([since.to_string(), count.to_string(), kind.to_string()])
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.1 on `addr`: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    (status, body.to_string())
}

/// The value of the sample `series` (name with its labels, as exposed) in a Prometheus text
/// exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Polls `/metrics` on `addr` until `series` has `value` (or 10 s pass); returns the last
/// scrape, for the test's own assertions.
pub fn wait_for_metric(addr: &str, series: &str, value: f64) -> String {
    let start = Instant::now();
    loop {
        let (status, body) = http_get(addr, "/metrics");
        assert_eq!(status, 200, "{body}");
        if metric(&body, series) == Some(value) || start.elapsed() > Duration::from_secs(10) {
            return body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The lines `child` writes to its (piped) stderr, as they come.
pub fn stderr_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Runs `promtool check metrics` (Prometheus's own linter) on `text`.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus, installed by `cargo xtask setup`)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts each (series, value) of a scrape; on a mismatch prints the whole scrape.
pub fn assert_metrics(text: &str, expected: &[(&str, f64)]) {
    for (series, value) in expected {
        assert_eq!(metric(text, series), Some(*value), "{series} in:\n{text}");
    }
}

/// Starts `sovereign-collector` on 127.0.0.1:`port` with the certificates in `dir` (`ca`,
/// `collector`; see [`openssl_cert`]), its journal and API socket in `dir`; returns once its
/// socket is there.
pub fn start_collector(dir: &Path, port: u16) -> Reaped {
    start_collector_with(dir, port, &[])
}

/// [`start_collector`] with `extra` arguments.
pub fn start_collector_with(dir: &Path, port: u16, extra: &[&str]) -> Reaped {
    let socket = dir.join("collector.sock");
    let _ = std::fs::remove_file(&socket);
    let child = collector_command(dir, port, &dir.join("collector-journal"), &socket)
        .args(extra)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sovereign-collector");
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(socket.exists(), "the collector did not start");
    Reaped(child)
}

/// `sovereign-collector` listening on 127.0.0.1:`port` with the certificates in `dir` (see
/// [`collector_certs`]), `journal` and its API on `socket`.
pub fn collector_command(dir: &Path, port: u16, journal: &Path, socket: &Path) -> Command {
    let mut command = Command::new(target_bin("sovereign-collector"));
    command
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--journal")
        .arg(journal)
        .arg("--tls-cert")
        .arg(dir.join("collector.pem"))
        .arg("--tls-key")
        .arg(dir.join("collector.key"))
        .arg("--agent-ca")
        .arg(dir.join("ca.pem"))
        .arg("--subscriber-ca")
        .arg(dir.join("subscribers-ca.pem"))
        .arg("--api-socket")
        .arg(socket);
    command
}

/// What `read` returns once two reads a second apart agree (a journal or a count that has
/// stopped moving).
pub fn settled<T: PartialEq>(mut read: impl FnMut() -> T) -> T {
    let mut last = read();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// The first `n` events of `kind` that the API on `socket` (an agent's or a collector's)
/// holds, read with `sovereign-agent tail --json` (waits up to 60 s for them).
pub fn tail_events(socket: &Path, kind: &str, n: usize) -> Vec<serde_json::Value> {
    let mut tail = Command::new(target_bin("sovereign-agent"))
        .args([
            "tail",
            "--json",
            "--since-seq",
            "0",
            "--kind",
            kind,
            "--count",
        ])
        .arg(n.to_string())
        .arg("--socket")
        .arg(socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read while it runs: thousands of events are more than a pipe holds.
    let mut stdout = tail.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        text
    });
    let start = Instant::now();
    while tail.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = tail.kill();
            let got = reader.join().unwrap();
            panic!(
                "{} did not hold {n} {kind} events within 60 s; got {}",
                socket.display(),
                got.lines().count()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = tail.wait().unwrap();
    let text = reader.join().unwrap();
    assert!(
        status.success(),
        "tail {} --kind {kind}: {status}",
        socket.display()
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `sovereign-agent status --json` of the API on `socket`.
pub fn status_of(socket: &Path) -> serde_json::Value {
    let out = Command::new(target_bin("sovereign-agent"))
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
