//! A connection opened before the agent starts is not a blind spot: the agent reports it at
//! start (`existing`, judged like a connect) and its `close` with the bytes of the whole
//! connection, including those exchanged before the agent ran.
use std::{
    io::{Read, Write},
    net::TcpListener,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use sovereign_agent_tests::{events_of, start_agent_with, wait_for_event, Reaped, TestCgroup};

/// Reads 1,000 bytes, replies 300, reads to the end, and closes only a second after the
/// client did (so the client's counts never include a FIN of ours).
fn server() -> (u16, std::sync::mpsc::Receiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut first = vec![0u8; 1000];
        s.read_exact(&mut first).unwrap();
        s.write_all(&[b'y'; 300]).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let _ = tx.send(first.len() + rest.len());
        std::thread::sleep(Duration::from_secs(1));
    });
    (port, rx)
}

/// A client in `cgroup` that connects to `port`, sends 1,000 bytes, reads the 300 of the
/// reply and waits for the file `go`; then sends 500 more and closes. Returns once it has
/// talked, with its pid.
fn talking_client(cgroup: &TestCgroup, port: u16, go: &Path) -> (Reaped, u32) {
    let client = format!(
        "import os, socket, time\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         s.sendall(b'a' * 1000)\n\
         got = 0\n\
         while got < 300:\n    got += len(s.recv(4096))\n\
         print('talked', flush=True)\n\
         while not os.path.exists('{go}'):\n    time.sleep(0.05)\n\
         s.sendall(b'b' * 500)\n\
         s.close()\n\
         time.sleep(2)\n",
        go = go.display()
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec python3 -c \"$0\"",
            cgroup.path().display()
        ))
        .arg(&client)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "talked");
    let pid = child.id();
    (Reaped(child), pid)
}

#[test]
fn a_connection_open_before_start_is_reported_then_closed_with_all_its_bytes() {
    let cgroup = TestCgroup::new("existing");
    let dir = std::env::temp_dir().join(format!("sa-existing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("events.jsonl");
    let go = dir.join("go");
    let _ = std::fs::remove_file(&go);
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[policy]\nname = \"no-loopback\"\nversion = \"1\"\ndefault = \"allow\"\n\n\
         [zones.loopback]\ncidrs = [\"127.0.0.0/8\"]\n\n\
         [[rule]]\nname = \"nobody-to-loopback\"\nworkload = { exe = [\"**\"] }\n\
         deny = [\"loopback\"]\n",
    )
    .unwrap();
    let (port, served) = server();

    // The client connects and talks before the agent exists, then waits for `go`.
    let (client, pid) = talking_client(&cgroup, port, &go);

    let (agent, _logs) =
        start_agent_with(&cgroup, &output, &["--policy", policy.to_str().unwrap()]);
    let agent = Reaped(agent);
    let existing = wait_for_event(&output, |e| e["kind"] == "existing");
    assert_eq!(existing["pid"], pid, "{existing:#}");
    assert_eq!(existing["dst_ip"], "127.0.0.1");
    assert_eq!(existing["dst_port"], port);
    assert_eq!(existing["proto"], "tcp");
    assert!(
        existing["exe"].as_str().unwrap().contains("python3"),
        "{existing:#}"
    );
    assert!(
        existing["cgroup"].as_str().unwrap().ends_with("existing"),
        "{existing:#}"
    );
    // Judged like a connect.
    assert_eq!(existing["verdict"]["decision"], "violation", "{existing:#}");
    assert_eq!(existing["verdict"]["rule"], "nobody-to-loopback");
    // Only the client's side: the server's accepted socket is not in the watched cgroup, and
    // nothing is reported twice.
    let count = |kind: &str| {
        events_of(&output)
            .iter()
            .filter(|e| e["kind"] == kind && e["dst_port"] == port)
            .count()
    };
    assert_eq!(count("existing"), 1);
    assert_eq!(count("connect"), 0);

    std::fs::write(&go, b"").unwrap();
    assert_eq!(served.recv_timeout(Duration::from_secs(10)).unwrap(), 1500);
    let close = wait_for_event(&output, |e| e["kind"] == "close" && e["dst_port"] == port);
    assert_eq!(close["cookie"], existing["cookie"], "{close:#}");
    assert_eq!(close["pid"], pid);
    // Every byte of the connection, the 1,000 sent before the agent started included.
    assert_eq!(close["bytes_sent"], 1500, "{close:#}");
    assert_eq!(close["bytes_received"], 300, "{close:#}");
    assert_eq!(close["was_established"], true);
    drop(client);
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_existing_events_when_switched_off() {
    let cgroup = TestCgroup::new("existing-off");
    let dir = std::env::temp_dir().join(format!("sa-existing-off-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("events.jsonl");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec python3 -c \"import socket, time; \
             s = socket.create_connection(('127.0.0.1', {port})); print('up', flush=True); \
             time.sleep(30)\"",
            cgroup.path().display()
        ))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(&config, "existing_connections = false\n").unwrap();
    let (agent, _logs) =
        start_agent_with(&cgroup, &output, &["--config", config.to_str().unwrap()]);
    let agent = Reaped(agent);
    wait_for_event(&output, |e| e["kind"] == "agent_start");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !events_of(&output).iter().any(|e| e["kind"] == "existing"),
        "existing reported although switched off"
    );
    drop(agent);
    drop(child);
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}

/// Issue 31, finding 10: a process in the agent's network namespace addresses a forged
/// socket-destroy announcement (SOCK_DIAG_BY_FAMILY, the cookie of a live connection found at
/// start, zero bytes) to the agent's netlink listener. Before the fix the agent reported that
/// connection's `close` with 0 bytes while it went on; now only the kernel ends it.
#[test]
fn a_forged_destroy_announcement_does_not_end_an_existing_connection() {
    let cgroup = TestCgroup::new("existing-forged");
    let dir = std::env::temp_dir().join(format!("sa-existing-forged-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("events.jsonl");
    let go = dir.join("go");
    let _ = std::fs::remove_file(&go);
    let (port, served) = server();
    let (client, _) = talking_client(&cgroup, port, &go);
    let (agent, _logs) = start_agent_with(&cgroup, &output, &[]);
    let agent = Reaped(agent);
    let existing = wait_for_event(&output, |e| {
        e["kind"] == "existing" && e["dst_port"] == port
    });
    let cookie = existing["cookie"].as_u64().unwrap();

    // The forger: an inet_diag_msg for the live connection, unicast to every sock_diag
    // socket that listens to a multicast group (the agent's destroy listener).
    let forger = dir.join("forger.py");
    std::fs::write(
        &forger,
        format!(
            r"import socket, struct
cookie, port = {cookie}, {port}
sent = 0
for line in open('/proc/net/netlink').read().splitlines()[1:]:
    f = line.split()
    if int(f[1]) != 4 or int(f[3], 16) == 0:
        continue
    sockid = struct.pack('>HH', 0, port) + bytes(16) + socket.inet_aton('127.0.0.1') + bytes(12)
    sockid += struct.pack('=IQ', 0, cookie)
    body = struct.pack('=BBBB', socket.AF_INET, 7, 0, 0) + sockid + struct.pack('=IIIII', 0, 0, 0, 0, 0)
    msg = struct.pack('=IHHII', 16 + len(body), 20, 0, 1, 0) + body
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)
    s.sendto(msg, (int(f[2]), 0))
    sent += 1
print(sent)
"
        ),
    )
    .unwrap();
    let (_, out) =
        sovereign_agent_tests::run_in_cgroup(&cgroup, &format!("python3 {}", forger.display()));
    let sent: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(sent >= 1, "the forger found the listener: {out:?}");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !events_of(&output)
            .iter()
            .any(|e| e["kind"] == "close" && e["cookie"] == cookie),
        "a forged announcement ended a live connection's record"
    );
    // The real end still comes, with every byte.
    std::fs::write(&go, b"").unwrap();
    assert_eq!(served.recv_timeout(Duration::from_secs(10)).unwrap(), 1500);
    let close = wait_for_event(&output, |e| e["kind"] == "close" && e["cookie"] == cookie);
    assert_eq!(close["bytes_sent"], 1500, "{close:#}");
    assert_eq!(close["bytes_received"], 300, "{close:#}");
    drop(client);
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same for a process in a network namespace of its own (a pod's, say): the agent lists
/// that namespace's sockets and hears their ends there.
#[test]
fn a_connection_in_another_network_namespace_is_found_too() {
    let ns = format!("sa-existing-{}", std::process::id());
    let sh = |cmd: &str| {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{cmd}");
    };
    sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up"));
    struct Netns(String);
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _netns = Netns(ns.clone());
    let cgroup = TestCgroup::new("existing-netns");
    let dir = std::env::temp_dir().join(format!("sa-existing-netns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("events.jsonl");
    let go = dir.join("go");
    // The server: in the namespace, outside the watched cgroup; reads until EOF, then counts.
    let server = Command::new("ip")
        .args(["netns", "exec", &ns, "python3", "-c"])
        .arg(
            "import socket, sys\n\
             l = socket.socket(); l.bind(('127.0.0.1', 7443)); l.listen()\n\
             print('listening', flush=True)\n\
             c, _ = l.accept(); c.sendall(b'z' * 40); n = 0\n\
             while True:\n    d = c.recv(65536)\n    if not d: break\n    n += len(d)\n\
             print(n, flush=True)\n\
             import time; time.sleep(1)\n",
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Reaped(server);
    let mut server_out = std::io::BufReader::new(server.0.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut server_out, &mut line).unwrap();
    assert_eq!(line.trim(), "listening");
    let client = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec ip netns exec {ns} python3 -c \"$0\"",
            cgroup.path().display()
        ))
        .arg(format!(
            "import os, socket, time\n\
             s = socket.create_connection(('127.0.0.1', 7443)); s.sendall(b'a' * 700)\n\
             got = 0\n\
             while got < 40:\n    got += len(s.recv(4096))\n\
             print('talked', flush=True)\n\
             while not os.path.exists('{go}'):\n    time.sleep(0.05)\n\
             s.sendall(b'b' * 300); s.close(); time.sleep(2)\n",
            go = go.display()
        ))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut client = Reaped(client);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(client.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "talked");
    let (agent, _logs) = start_agent_with(&cgroup, &output, &[]);
    let agent = Reaped(agent);
    let existing = wait_for_event(&output, |e| e["kind"] == "existing");
    assert_eq!(existing["pid"], client.0.id(), "{existing:#}");
    assert_eq!(
        (&existing["dst_ip"], &existing["dst_port"]),
        (&serde_json::json!("127.0.0.1"), &serde_json::json!(7443))
    );
    std::fs::write(&go, b"").unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut server_out, &mut line).unwrap();
    assert_eq!(line.trim(), "1000");
    let close = wait_for_event(&output, |e| e["kind"] == "close" && e["dst_port"] == 7443);
    assert_eq!(close["cookie"], existing["cookie"]);
    assert_eq!(
        (&close["bytes_sent"], &close["bytes_received"]),
        (&serde_json::json!(1000), &serde_json::json!(40)),
        "{close:#}"
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}
