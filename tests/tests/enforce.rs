//! Enforcement in the kernel (docs/enforce.md): an enforce rule's workload, by its cgroup,
//! gets `EPERM` from connect() and sendto() to a destination outside its allowed zones,
//! before anything leaves, and the agent records the refusal with its verdict. Real kernel
//! programs, a real network namespace with real servers, and a Python workload making the
//! socket calls; without enforcement every refused call here succeeds.
use std::{path::Path, time::Duration};

use serde_json::Value;
use sovereign_agent_tests::{
    closed_port, net::TestNet, run_in_cgroup, sigterm, start_agent_with, wait_for_event,
    wait_for_log, Reaped, TestCgroup,
};

const POLICY: &str = r#"
[policy]
name = "enforce"
version = "1"
default = "allow"

[zones.resident]
cidrs = ["198.51.100.0/24", "fd5a::/64"]

[zones.blocked]
cidrs = ["203.0.113.20/32"]

[[rule]]
name = "resident-only"
mode = "enforce"
workload = { cgroup = ["/**/enforced"] }
allow = ["resident"]
otherwise = "violation"
severity = "critical"

[[rule]]
name = "one-host-denied"
mode = "enforce"
workload = { cgroup = ["/**/denied"] }
deny = ["blocked"]
otherwise = "allow"
severity = "high"

[[rule]]
name = "lockdown"
mode = "enforce"
workload = { cgroup = ["/**/lockdown"] }
otherwise = "violation"
"#;

/// Each socket call the workload makes: (label, family, type, address, port).
const CALLS: &[(&str, &str, &str, &str, u16)] = &[
    ("tcp4-resident", "4", "tcp", "198.51.100.2", 80),
    ("tcp4-foreign", "4", "tcp", "203.0.113.20", 80),
    ("tcp6-resident", "6", "tcp", "fd5a::2", 80),
    ("tcp6-foreign", "6", "tcp", "2001:db8::10", 80),
    ("tcp6-mapped-foreign", "6", "tcp", "::ffff:203.0.113.20", 80),
    ("udp4-resident", "4", "udp", "198.51.100.2", 9),
    ("udp4-foreign", "4", "udp", "203.0.113.20", 9),
    ("udp6-foreign", "6", "udp", "2001:db8::10", 9),
    ("tcp4-failsafe", "4", "tcp", "203.0.113.40", 80),
];

/// Makes every call of [`CALLS`] (and one to a closed loopback port), printing `label result`
/// per line: `ok`, or the errno's name.
fn workload_script(loopback_port: u16) -> String {
    let calls: Vec<String> = CALLS
        .iter()
        .map(|(label, fam, ty, addr, port)| {
            format!("('{label}', '{fam}', '{ty}', '{addr}', {port})")
        })
        .chain(std::iter::once(format!(
            "('loopback', '4', 'tcp', '127.0.0.1', {loopback_port})"
        )))
        .collect();
    format!(
        r#"python3 -c "
import errno, socket
for label, fam, ty, addr, port in [{}]:
    f = socket.AF_INET if fam == '4' else socket.AF_INET6
    t = socket.SOCK_STREAM if ty == 'tcp' else socket.SOCK_DGRAM
    s = socket.socket(f, t)
    s.settimeout(3)
    try:
        if ty == 'tcp':
            s.connect((addr, port))
        else:
            s.sendto(b'x', (addr, port))
        r = 'ok'
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e))
    s.close()
    print(label, r, flush=True)
""#,
        calls.join(", ")
    )
}

fn results(out: &std::process::Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn result<'a>(results: &'a [(String, String)], label: &str) -> &'a str {
    results.iter().find(|(l, _)| l == label).map_or_else(
        || panic!("no result for {label}: {results:?}"),
        |(_, r)| r.as_str(),
    )
}

fn refused(output: &Path, pid: u32, dst: &str, protocol: &str) -> Value {
    wait_for_event(output, |e| {
        e["kind"] == "refused" && e["pid"] == pid && e["dst_ip"] == dst && e["proto"] == protocol
    })
}

#[test]
fn an_enforce_rule_refuses_foreign_destinations_in_the_kernel_and_records_each_refusal() {
    let net = TestNet::new();
    let watched = TestCgroup::new("enforce");
    let output = net.dir.join("events.jsonl");
    let policy = net.dir.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let config = net.dir.join("agent.toml");
    std::fs::write(
        &config,
        "[names]\ntrusted_resolvers = [\"198.51.100.2\"]\n[enforce]\nfailsafe = [\"203.0.113.40\"]\n",
    )
    .unwrap();
    let enforced = watched.child("enforced");
    let free = watched.child("free");
    let denied = watched.child("denied");
    let lockdown = watched.child("lockdown");
    let loopback = closed_port("127.0.0.1:0");
    let script = workload_script(loopback.port());

    let (agent, logs) = start_agent_with(
        &watched,
        &output,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let agent = Reaped(agent);

    // The enforced workload: resident destinations connect, foreign ones get EPERM, over
    // IPv4, IPv6 and IPv4-mapped IPv6, TCP and UDP; loopback and the failsafe list are never
    // refused (the loopback port is closed: refused by the peer, not by the policy).
    let (pid, out) = run_in_cgroup(&enforced, &script);
    let r = results(&out);
    for (label, expected) in [
        ("tcp4-resident", "ok"),
        ("tcp4-foreign", "EPERM"),
        ("tcp6-resident", "ok"),
        ("tcp6-foreign", "EPERM"),
        ("tcp6-mapped-foreign", "EPERM"),
        ("udp4-resident", "ok"),
        ("udp4-foreign", "EPERM"),
        ("udp6-foreign", "EPERM"),
        ("tcp4-failsafe", "ok"),
        ("loopback", "ECONNREFUSED"),
    ] {
        assert_eq!(result(&r, label), expected, "{label}: {r:?}");
    }
    // Each refusal is recorded with who made it and the verdict of the rule that refused it.
    for (dst, protocol) in [
        ("203.0.113.20", "tcp"),
        ("2001:db8::10", "tcp"),
        ("203.0.113.20", "udp"),
        ("2001:db8::10", "udp"),
    ] {
        let e = refused(&output, pid, dst, protocol);
        assert_eq!(e["verdict"]["decision"], "violation", "{e:#}");
        assert_eq!(e["verdict"]["rule"], "resident-only", "{e:#}");
        assert_eq!(e["cgroup_id"], enforced.id(), "{e:#}");
    }
    // An allowed connect is an ordinary connect.
    let ok = wait_for_event(&output, |e| {
        e["kind"] == "connect" && e["pid"] == pid && e["dst_ip"] == "198.51.100.2"
    });
    assert_eq!(ok["verdict"]["decision"], "allow", "{ok:#}");

    // A deny rule refuses only what it denies.
    let (_, out) = run_in_cgroup(&denied, &script);
    let r = results(&out);
    assert_eq!(result(&r, "tcp4-foreign"), "EPERM", "{r:?}");
    assert_eq!(result(&r, "udp4-foreign"), "EPERM", "{r:?}");
    assert_eq!(result(&r, "tcp6-mapped-foreign"), "EPERM", "{r:?}");
    assert_eq!(result(&r, "tcp4-resident"), "ok", "{r:?}");
    assert_eq!(result(&r, "tcp6-foreign"), "ok", "{r:?}");

    // Under a deny-everything rule the failsafe destinations are still reachable: loopback,
    // the trusted resolver (198.51.100.2, on any port) and the configured list.
    let (_, out) = run_in_cgroup(&lockdown, &script);
    let r = results(&out);
    for (label, expected) in [
        ("tcp4-resident", "ok"),
        ("udp4-resident", "ok"),
        ("tcp4-failsafe", "ok"),
        ("loopback", "ECONNREFUSED"),
        ("tcp6-resident", "EPERM"),
        ("tcp4-foreign", "EPERM"),
        ("udp6-foreign", "EPERM"),
    ] {
        assert_eq!(result(&r, label), expected, "lockdown {label}: {r:?}");
    }

    // A workload no enforce rule selects is only watched.
    let (free_pid, out) = run_in_cgroup(&free, &script);
    let r = results(&out);
    assert_eq!(result(&r, "tcp4-foreign"), "ok", "{r:?}");
    assert_eq!(result(&r, "tcp6-foreign"), "ok", "{r:?}");
    let v = wait_for_event(&output, |e| {
        e["kind"] == "connect" && e["pid"] == free_pid && e["dst_ip"] == "203.0.113.20"
    });
    assert_eq!(v["verdict"]["decision"], "allow", "{v:#}");

    // A cgroup created after the agent started is classified by the next walk of the tree
    // (and meanwhile takes its parent's class, here none).
    let late = watched.child("late").child("enforced");
    std::thread::sleep(Duration::from_millis(2500));
    let (_, out) = run_in_cgroup(&late, &script);
    let r = results(&out);
    assert_eq!(result(&r, "tcp4-foreign"), "EPERM", "{r:?}");

    // Fail-open: once the agent stops, its programs are detached and nothing is refused.
    sigterm(&agent.0);
    assert!(wait_for_log(&logs, |l| l.contains("programs detached")));
    drop(agent);
    let (_, out) = run_in_cgroup(&enforced, &script);
    let r = results(&out);
    assert_eq!(result(&r, "tcp4-foreign"), "ok", "{r:?}");
}

/// A policy that enforces on a kernel that refuses a hook that decides is an error at start
/// that names the hook, never a silent downgrade to monitoring; the same policy in monitor
/// mode runs with the hook missing.
#[test]
fn an_enforcing_policy_without_a_deciding_hook_stops_the_start() {
    let watched = TestCgroup::new("enforce-refused");
    let dir = std::env::temp_dir().join(format!("sa-enforce-refused-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let out = std::process::Command::new("env")
        .arg("SOVEREIGN_TEST_REFUSE_HOOKS=cgroup/connect4")
        .arg(sovereign_agent_tests::target_bin("sovereign-agent"))
        .args(["run", "--cgroup"])
        .arg(watched.path())
        .arg("--policy")
        .arg(&policy)
        .arg("--output")
        .arg(dir.join("events.jsonl"))
        .arg("--journal")
        .arg(dir.join("journal"))
        .arg("--api-socket")
        .arg(dir.join("api.sock"))
        .args(["--metrics-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("the policy has enforce rules (resident-only, one-host-denied, lockdown)")
            && stderr.contains("cgroup/connect4"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
