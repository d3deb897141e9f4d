//! A network of the test's own for naming tests: a namespace joined to the host by a veth
//! pair, with dnsmasq as its DNS server and HTTP and TLS test hosts on documentation
//! addresses routed through it.
use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use crate::Reaped;

pub fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace `ns` joined to the host by a veth pair: DNS server at 198.51.100.2 (and
/// fd5a::2), test hosts 203.0.113.{10,20,30,40} and 2001:db8::10 routed through it.
/// Only one may exist at a time (its routes are the host's).
pub struct TestNet {
    pub ns: String,
    veth: String,
    pub dir: PathBuf,
    servers: Vec<Reaped>,
}

pub const DNS: &str = "198.51.100.2";

impl TestNet {
    /// Creates the namespace, the servers and the routes, and waits until they answer.
    #[allow(
        clippy::new_without_default,
        reason = "it sets up namespaces and servers"
    )]
    pub fn new() -> TestNet {
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

        // The DNS server: an A record, CNAME chains (one from an allowed name to an AI
        // endpoint), an AAAA record, a name for DNS over TCP.
        net.serve(&x(&format!(
            "dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces --listen-address={DNS} \
             --pid-file={}/dnsmasq.pid --host-record=api.openai.com,203.0.113.10 \
             --host-record=edge.sovereign.example,203.0.113.20 --cname=llm.sovereign.example,edge.sovereign.example \
             --host-record=v6.sovereign.example,2001:db8::10 --host-record=tcp.sovereign.example,203.0.113.40 \
             --cname=alias.sovereign.example,api.openai.com",
            dir.display()
        )));
        // HTTP on every test host, TLS on 203.0.113.30 and on the DNS server's own address
        // (a self-signed certificate).
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
        net.serve(&x(&format!(
            "openssl s_server -quiet -accept {DNS}:443 -cert {0}/cert.pem -key {0}/key.pem -www",
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
    pub fn trusting_config(&self) -> PathBuf {
        let path = self.dir.join("agent.toml");
        std::fs::write(
            &path,
            format!("[names]\ntrusted_resolvers = [\"{DNS}\", \"fd5a::2\"]\n"),
        )
        .unwrap();
        path
    }

    /// Starts a server; its output goes to a log file in the test directory.
    pub fn serve(&mut self, cmd: &str) {
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

    pub fn logs(&self) -> String {
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
