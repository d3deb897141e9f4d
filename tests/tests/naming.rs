//! Destination naming with real components: dnsmasq serves names in a network namespace of
//! the test's own, test hosts live there on documentation addresses, and real clients (dig,
//! curl, openssl s_client) in the watched cgroup resolve and connect. The flow events must
//! carry the right names and sources, and the policy must match them.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use sovereign_agent_tests::{
    run_in_cgroup, sigterm, start_agent_with, wait_for_event, Reaped, TestCgroup,
};

fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace `ns` joined to the host by a veth pair: DNS server at 198.51.100.2 (and
/// fd5a::2), test hosts 203.0.113.{10,20,30,40} and 2001:db8::10 routed through it.
struct TestNet {
    ns: String,
    veth: String,
    dir: PathBuf,
    servers: Vec<Reaped>,
}

const DNS: &str = "198.51.100.2";

impl TestNet {
    fn new() -> TestNet {
        let id = std::process::id() % 100_000;
        let (ns, veth) = (format!("sa-names-{id}"), format!("sanm{id}"));
        let dir = std::env::temp_dir().join(format!("sa-names-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut net = TestNet {
            ns: ns.clone(),
            veth: veth.clone(),
            dir: dir.clone(),
            servers: Vec::new(),
        };
        let x = |c: &str| format!("ip netns exec {ns} {c}");
        sh(&format!("ip netns add {ns}"));
        sh(&format!("ip link add {veth} type veth peer name {veth}p"));
        sh(&format!("ip link set {veth}p netns {ns}"));
        sh(&format!("ip addr add 198.51.100.1/30 dev {veth} && ip -6 addr add fd5a::1/64 dev {veth} nodad && ip link set {veth} up"));
        sh(&x(&format!("ip addr add {DNS}/30 dev {veth}p")));
        sh(&x(&format!("ip -6 addr add fd5a::2/64 dev {veth}p nodad")));
        sh(&x(&format!("ip link set {veth}p up")));
        sh(&x("ip link set lo up"));
        for a in [
            "203.0.113.10/32",
            "203.0.113.20/32",
            "203.0.113.30/32",
            "203.0.113.40/32",
        ] {
            sh(&x(&format!("ip addr add {a} dev lo")));
        }
        sh(&x("ip -6 addr add 2001:db8::10/128 dev lo nodad"));
        sh(&format!(
            "ip route add 203.0.113.0/24 via {DNS} && ip -6 route add 2001:db8::/64 via fd5a::2"
        ));

        // The DNS server: an A record, a CNAME chain, an AAAA record, a name for DNS over TCP.
        net.serve(&x(&format!(
            "dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces --listen-address={DNS} \
             --pid-file={}/dnsmasq.pid --address=/api.openai.com/203.0.113.10 \
             --host-record=edge.sovereign.example,203.0.113.20 --cname=llm.sovereign.example,edge.sovereign.example \
             --host-record=v6.sovereign.example,2001:db8::10 --host-record=tcp.sovereign.example,203.0.113.40",
            dir.display()
        )));
        // HTTP on every test host, TLS on 203.0.113.30 (a self-signed certificate).
        net.serve(&x(&format!(
            "python3 -m http.server 80 --bind :: --directory {}",
            dir.display()
        )));
        sh(&format!(
            "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=test -days 1 -keyout {0}/key.pem -out {0}/cert.pem 2>/dev/null",
            dir.display()
        ));
        net.serve(&x(&format!(
            "openssl s_server -quiet -accept 203.0.113.30:443 -cert {0}/cert.pem -key {0}/key.pem -www",
            dir.display()
        )));
        // Wait until the servers answer.
        let mut state = String::new();
        for _ in 0..100 {
            let dns = Command::new("dig")
                .args([
                    "+short",
                    "+time=1",
                    "+tries=1",
                    &format!("@{DNS}"),
                    "api.openai.com",
                ])
                .output()
                .unwrap();
            let up = |url: &str| {
                Command::new("curl")
                    .args(["-sk", "-o", "/dev/null", "--max-time", "1", url])
                    .status()
                    .is_ok_and(|s| s.success())
            };
            let (d, h, t) = (
                String::from_utf8_lossy(&dns.stdout).contains("203.0.113.10"),
                up("http://203.0.113.10/"),
                up("https://203.0.113.30/"),
            );
            state = format!("dns {d}, http {h}, tls {t}");
            if d && h && t {
                return net;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "test network did not come up ({state}); server logs:\n{}",
            net.logs()
        );
    }

    /// A configuration that trusts this network's DNS server, as a host whose resolv.conf
    /// names it would.
    fn trusting_config(&self) -> PathBuf {
        let path = self.dir.join("agent.toml");
        std::fs::write(
            &path,
            format!("[names]\ntrusted_resolvers = [\"{DNS}\", \"fd5a::2\"]\n"),
        )
        .unwrap();
        path
    }

    /// Starts a server; its output goes to a log file in the test directory.
    fn serve(&mut self, cmd: &str) {
        let log =
            std::fs::File::create(self.dir.join(format!("server-{}.log", self.servers.len())))
                .unwrap();
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {cmd}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.servers.push(Reaped(child));
    }

    fn logs(&self) -> String {
        (0..self.servers.len())
            .map(|i| {
                std::fs::read_to_string(self.dir.join(format!("server-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.servers.clear(); // kill and reap
        let _ = Command::new("ip")
            .args(["route", "del", "203.0.113.0/24"])
            .status();
        let _ = Command::new("ip")
            .args(["-6", "route", "del", "2001:db8::/64"])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const POLICY: &str = r#"
[policy]
name = "naming"
version = "1"
default = "allow"

[zones.external-ai]
ai = ["openai"]

[zones.sovereign]
domains = ["*.sovereign.example"]

[[rule]]
name = "no-foreign-ai"
allow = ["sovereign"]
deny = ["external-ai"]
otherwise = "allow"
severity = "critical"
"#;

fn connect_of(output: &Path, pid: u32) -> Value {
    wait_for_event(output, |e| e["kind"] == "connect" && e["pid"] == pid)
}

#[test]
fn flows_are_named_from_dns_answers_and_tls_sni() {
    let net = TestNet::new();
    let cgroup = TestCgroup::new("naming");
    let output = net.dir.join("events.jsonl");
    let policy = net.dir.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let config = net.trusting_config();
    let (agent, _logs) = start_agent_with(
        &cgroup,
        &output,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let agent = Reaped(agent);

    // A: resolve, then connect (two processes of the same cgroup).
    run_in_cgroup(&cgroup, &format!("dig +short @{DNS} api.openai.com"));
    let (pid, _) = run_in_cgroup(&cgroup, "curl -s -o /dev/null http://203.0.113.10/");
    let e = connect_of(&output, pid);
    assert_eq!(e["names"], serde_json::json!(["api.openai.com"]), "{e:#}");
    assert_eq!(e["name_source"], "dns");
    assert_eq!(e["verdict"]["decision"], "violation", "{e:#}");
    assert_eq!(e["verdict"]["zones"], serde_json::json!(["external-ai"]));
    assert!(
        !e["verdict"]["weak"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w == "no_name"),
        "{e:#}"
    );

    // A CNAME chain, in order.
    run_in_cgroup(&cgroup, &format!("dig +short @{DNS} llm.sovereign.example"));
    let (pid, _) = run_in_cgroup(&cgroup, "curl -s -o /dev/null http://203.0.113.20/");
    let e = connect_of(&output, pid);
    assert_eq!(
        e["names"],
        serde_json::json!(["llm.sovereign.example", "edge.sovereign.example"]),
        "{e:#}"
    );
    assert_eq!(e["verdict"]["decision"], "allow");

    // DNS over TCP.
    run_in_cgroup(
        &cgroup,
        &format!("dig +tcp +short @{DNS} tcp.sovereign.example"),
    );
    let (pid, _) = run_in_cgroup(&cgroup, "curl -s -o /dev/null http://203.0.113.40/");
    assert_eq!(
        connect_of(&output, pid)["names"],
        serde_json::json!(["tcp.sovereign.example"])
    );

    // An IPv6 answer.
    run_in_cgroup(
        &cgroup,
        &format!("dig +short @{DNS} AAAA v6.sovereign.example"),
    );
    let (pid, _) = run_in_cgroup(&cgroup, "curl -s -o /dev/null http://[2001:db8::10]/");
    let e = connect_of(&output, pid);
    assert_eq!(
        (e["family"].as_str(), e["dst_ip"].as_str()),
        (Some("ipv6"), Some("2001:db8::10"))
    );
    assert_eq!(e["names"], serde_json::json!(["v6.sovereign.example"]));

    // TLS with no DNS at all: the name comes from the ClientHello, on the flow's close.
    let (pid, _) = run_in_cgroup(
        &cgroup,
        "openssl s_client -connect 203.0.113.30:443 -servername sni-only.sovereign.example -brief </dev/null",
    );
    let close = wait_for_event(&output, |e| e["kind"] == "close" && e["pid"] == pid);
    assert_eq!(
        close["names"],
        serde_json::json!(["sni-only.sovereign.example"]),
        "{close:#}"
    );
    assert_eq!(close["name_source"], "sni");

    // A name another cgroup resolved does not name this cgroup's flows.
    let other = TestCgroup::new("naming-other");
    run_in_cgroup(&other, &format!("dig +short @{DNS} api.openai.com"));
    sigterm(&agent.0);
}
