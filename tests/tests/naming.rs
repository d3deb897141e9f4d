//! Destination naming with real components: dnsmasq serves names in a network namespace of
//! the test's own, test hosts live there on documentation addresses, and real clients (dig,
//! curl, openssl s_client) in the watched cgroup resolve and connect. The flow events must
//! carry the right names and sources, and the policy must match them.
use std::path::Path;

use serde_json::Value;
use sovereign_agent_tests::{
    net::{TestNet, DNS},
    run_in_cgroup, sigterm, start_agent_with, wait_for_event, Reaped, TestCgroup,
};

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
