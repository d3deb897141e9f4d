//! The watched workload is the adversary: each step here is an attack on the names the
//! agent's verdicts rest on, run with real tools (dnsmasq, dig, curl, openssl, Python
//! sockets and OpenSSL's own ClientHello) from a cgroup of its own under the watched one.
//! Before names carried their evidence, every one of them turned a violation into `allow`
//! (or hid it); each asserts the verdict, the `weak` flags, the alert at the API stream and
//! what the journal holds.
use std::path::Path;

use serde_json::{json, Value};
use sovereign_agent_tests::{
    api_socket_of, events_of, journal_dir_of,
    net::{TestNet, DNS},
    run_agent, run_in_cgroup, sigterm, start_agent_with, wait_for_event, wait_for_metric, Reaped,
    TestCgroup,
};

/// The issue's pure allow-list: the sovereign zone by address and by name, anything else a
/// violation. One workload (cgroup `segments`) is watched deny-list style instead, so that
/// an SNI hidden from the agent would hide a violation.
const POLICY: &str = r#"
[policy]
name = "allow-list"
version = "1"
default = "violation"

[zones.sovereign]
cidrs = ["198.51.100.0/24"]
domains = ["*.sovereign.example"]

[zones.external-ai]
ai = ["openai"]

[[rule]]
name = "deny-ai"
workload = { cgroup = ["/**/segments"] }
deny = ["external-ai"]
otherwise = "allow"
severity = "critical"

[[rule]]
name = "sovereign-only"
allow = ["sovereign"]
otherwise = "violation"
severity = "critical"
"#;

const FLOOD: usize = 200;
const MAP_PER_CGROUP: usize = 32;

/// A network namespace of a "pod" (`ip netns`), removed on drop.
struct PodNetns(String);

impl PodNetns {
    fn new() -> Self {
        let name = format!("sa-pod-{}", std::process::id());
        sovereign_agent_tests::net::sh(&format!("ip netns add {name}"));
        sovereign_agent_tests::net::sh(&format!("ip netns exec {name} ip link set lo up"));
        PodNetns(name)
    }

    /// `cmd` run in the pod's network namespace.
    fn exec(&self, cmd: &str) -> String {
        format!("ip netns exec {} {cmd}", self.0)
    }

    /// `dig llm.sovereign.example` at 127.0.0.53 from `cg`, in the pod's network namespace,
    /// until the pod's resolver answers.
    fn resolve(&self, cg: &TestCgroup) {
        for _ in 0..50 {
            let (_, out) = run_in_cgroup(
                cg,
                &format!(
                    "sh -c '{} || true'",
                    self.exec("dig +short +time=1 +tries=1 @127.0.0.53 llm.sovereign.example")
                ),
            );
            if String::from_utf8_lossy(&out.stdout).contains("203.0.113.20") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the pod's resolver did not answer");
    }
}

impl Drop for PodNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

fn attack(cg: &TestCgroup, args: &str) -> u32 {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/name_attacks.py");
    run_in_cgroup(cg, &format!("python3 {} {args}", script.display())).0
}

fn weak(e: &Value) -> Vec<String> {
    e["verdict"]["weak"]
        .as_array()
        .map(|a| a.iter().map(|w| w.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn flow(output: &Path, kind: &str, pid: u32, dst: &str) -> Value {
    wait_for_event(output, |e| {
        e["kind"] == kind && e["pid"] == pid && e["dst_ip"] == dst
    })
}

#[test]
fn a_workload_cannot_name_its_way_into_allow() {
    let net = TestNet::new();
    let watched = TestCgroup::new("names");
    let output = net.dir.join("events.jsonl");
    let policy = net.dir.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    // The host's resolvers (which include the 127.0.0.53 stub) and this network's server.
    let config = net.dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "name_map_entries = 64\n[names]\ntrusted_resolvers = [\"host\", \"{DNS}\"]\n\
             map_per_cgroup = {MAP_PER_CGROUP}\n"
        ),
    )
    .unwrap();
    let metrics_port = sovereign_agent_tests::free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let (agent, _logs) = start_agent_with(
        &watched,
        &output,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--metrics-listen",
            &metrics,
        ],
    );
    let agent = Reaped(agent);
    let mut expected_alerts: Vec<(&str, String)> = Vec::new();

    // 1. A CNAME chain from an allowed name to an AI endpoint, from a trusted resolver.
    let cname = watched.child("cname");
    run_in_cgroup(
        &cname,
        &format!("dig +short @{DNS} alias.sovereign.example"),
    );
    let (pid, _) = run_in_cgroup(&cname, "curl -s -o /dev/null http://203.0.113.10/");
    let e = flow(&output, "connect", pid, "203.0.113.10");
    assert_eq!(
        e["names"],
        json!(["alias.sovereign.example", "api.openai.com"]),
        "{e:#}"
    );
    assert_eq!(
        (&e["name_source"], &e["dns"][0]["verified"]),
        (&json!("dns"), &json!(true))
    );
    assert_eq!(e["verdict"]["decision"], "violation", "{e:#}");
    assert_eq!(e["verdict"]["rule"], "sovereign-only");
    assert!(weak(&e).contains(&"cname_leaves_zone".into()), "{e:#}");
    let hop = e["verdict"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["source"] == "cname")
        .unwrap_or_else(|| panic!("the hop is evidence: {e:#}"));
    assert!(hop["detail"]
        .as_str()
        .unwrap()
        .contains("alias.sovereign.example -> api.openai.com"));
    expected_alerts.push(("sovereign-only", "alias.sovereign.example:80".into()));

    // 2. An SNI claiming an allowed name, to an address nobody resolved.
    let sni = watched.child("sni");
    let (pid, _) = run_in_cgroup(
        &sni,
        "openssl s_client -connect 203.0.113.30:443 -servername llm.sovereign.example -brief </dev/null",
    );
    let close = flow(&output, "close", pid, "203.0.113.30");
    assert_eq!(
        (&close["sni"], &close["name_source"]),
        (&json!("llm.sovereign.example"), &json!("sni")),
        "{close:#}"
    );
    assert_eq!(close["verdict"]["decision"], "violation", "{close:#}");
    assert!(weak(&close).contains(&"sni_unverified".into()), "{close:#}");
    expected_alerts.push(("sovereign-only", "203.0.113.30:443".into()));

    // 3. A forged answer, unsolicited, from port 53 of the trusted stub address on the host.
    let forged = watched.child("forged");
    attack(&forged, "forge-udp");
    let refused = wait_for_event(&output, |e| {
        e["kind"] == "dns_refused" && e["cgroup_id"] == forged.id()
    });
    assert_eq!(refused["reason"], "no_query", "{refused:#}");
    assert_eq!(refused["resolver"], "127.0.0.53:53");
    assert_eq!(refused["names"], json!(["llm.sovereign.example"]));
    assert_eq!(refused["addresses"], json!(["203.0.113.20"]));
    assert!(
        refused["cgroup"].as_str().unwrap().ends_with("/forged"),
        "{refused:#}"
    );
    let (pid, _) = run_in_cgroup(&forged, "curl -s -o /dev/null http://203.0.113.20/");
    let e = flow(&output, "connect", pid, "203.0.113.20");
    assert_eq!(
        (&e["names"], &e["name_source"]),
        (&json!([]), &json!("none")),
        "{e:#}"
    );
    assert_eq!(e["verdict"]["decision"], "violation");
    expected_alerts.push(("sovereign-only", "203.0.113.20:80".into()));

    // 4. A resolver of the workload's own on the trusted stub address, in a user and network
    //    namespace of its own, answering the workload's own query (id and question right).
    let netns = watched.child("netns");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/name_attacks.py");
    run_in_cgroup(
        &netns,
        &format!("unshare -Urn python3 {} netns-resolver", script.display()),
    );
    let refused = wait_for_event(&output, |e| {
        e["kind"] == "dns_refused" && e["cgroup_id"] == netns.id()
    });
    assert_eq!(refused["reason"], "answered_by_own_cgroup", "{refused:#}");
    assert_eq!(refused["names"], json!(["llm.sovereign.example"]));
    let (pid, _) = run_in_cgroup(&netns, "curl -s -o /dev/null http://203.0.113.20/");
    let e = flow(&output, "connect", pid, "203.0.113.20");
    assert_eq!(e["names"], json!([]), "{e:#}");
    assert_eq!(e["verdict"]["decision"], "violation");

    // 4b. A pod: the app and a sidecar in sibling cgroups, both watched, sharing a network
    //     namespace in which the sidecar runs a resolver on the trusted stub address
    //     (issue 31, finding 2). On da56306 the answer was refused only when the serving
    //     socket had the app's own cgroup id: the sidecar's verified the name and made the
    //     connect `allow`. A watched socket that is not a named resolver serves claims.
    let pod = PodNetns::new();
    let app = watched.child("app");
    let sidecar = watched.child("sidecar");
    let _sidecar_resolver =
        sidecar.spawn(&pod.exec(&format!("python3 {} pod-resolver", script.display())));
    pod.resolve(&app);
    let refused = wait_for_event(&output, |e| {
        e["kind"] == "dns_refused" && e["cgroup_id"] == app.id()
    });
    assert_eq!(
        refused["reason"], "answered_by_watched_socket",
        "{refused:#}"
    );
    let (pid, _) = run_in_cgroup(&app, "curl -s -o /dev/null http://203.0.113.20/");
    let e = flow(&output, "connect", pid, "203.0.113.20");
    assert_eq!(e["names"], json!([]), "{e:#}");
    assert_eq!(e["verdict"]["decision"], "violation", "{e:#}");
    drop(_sidecar_resolver);

    // 4c. The same resolver outside the watched cgroups (no socket of it is watched): the
    //     answer is accepted, but 127.0.0.53 in the pod's network namespace is the pod's own
    //     resolver, not the host's: its names are claims.
    let _outside_resolver = Reaped(
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec {}",
                pod.exec(&format!("python3 {} pod-resolver", script.display()))
            ))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let app2 = watched.child("app2");
    pod.resolve(&app2);
    let (pid, _) = run_in_cgroup(&app2, "curl -s -o /dev/null http://203.0.113.20/");
    let e = flow(&output, "connect", pid, "203.0.113.20");
    assert_eq!(e["names"], json!(["llm.sovereign.example"]), "{e:#}");
    assert_eq!(
        (&e["name_source"], &e["dns"][0]["verified"]),
        (&json!("dns_untrusted"), &json!(false)),
        "{e:#}"
    );
    assert_eq!(e["verdict"]["decision"], "violation", "{e:#}");
    assert!(weak(&e).contains(&"dns_untrusted".into()), "{e:#}");
    drop(_outside_resolver);
    drop(pod);

    // 5. A resolver of the workload's own (a real dnsmasq) at an address nobody trusts.
    let own = watched.child("own");
    let _resolver = own.spawn(&format!(
        "dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces --listen-address=127.0.0.2 \
         --address=/llm.sovereign.example/203.0.113.20 --pid-file={}/own-dnsmasq.pid",
        net.dir.display()
    ));
    let mut answered = false;
    for _ in 0..50 {
        // Until dnsmasq listens, dig fails (no reply): that is what the retries are for.
        let (_, out) = run_in_cgroup(
            &own,
            "sh -c 'dig +short +time=1 +tries=1 @127.0.0.2 llm.sovereign.example || true'",
        );
        if String::from_utf8_lossy(&out.stdout).contains("203.0.113.20") {
            answered = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(answered, "the workload's own dnsmasq did not answer");
    let (pid, _) = run_in_cgroup(&own, "curl -s -o /dev/null http://203.0.113.20/");
    let e = flow(&output, "connect", pid, "203.0.113.20");
    assert_eq!(e["names"], json!(["llm.sovereign.example"]), "{e:#}");
    assert_eq!(e["name_source"], "dns_untrusted");
    assert_eq!(
        (&e["dns"][0]["verified"], &e["dns"][0]["resolver"]),
        (&json!(false), &json!("127.0.0.2:53"))
    );
    assert_eq!(e["verdict"]["decision"], "violation", "{e:#}");
    assert!(weak(&e).contains(&"dns_untrusted".into()), "{e:#}");
    expected_alerts.push(("sovereign-only", "llm.sovereign.example:80".into()));

    // 6. A ClientHello naming an allowed name to an allowed address, then connect(AF_UNSPEC)
    //    and the same socket (same cookie) connected to a foreign address.
    let reconnect = watched.child("reconnect");
    let pid = attack(
        &reconnect,
        &format!("reconnect {DNS}:443 203.0.113.10:80 llm.sovereign.example"),
    );
    let first = flow(&output, "close", pid, DNS);
    assert_eq!(first["sni"], "llm.sovereign.example", "{first:#}");
    assert_eq!(first["verdict"]["decision"], "allow");
    for kind in ["connect", "close"] {
        let e = flow(&output, kind, pid, "203.0.113.10");
        assert_eq!(e["cookie"], first["cookie"], "one socket");
        assert_eq!((&e["names"], e.get("sni")), (&json!([]), None), "{e:#}");
        assert_eq!(e["verdict"]["decision"], "violation", "{e:#}");
    }
    expected_alerts.push(("sovereign-only", "203.0.113.10:80".into()));

    // 7. A ClientHello whose first TCP segment is 1 byte, then 5 bytes (the record header),
    //    under a deny-list rule: the SNI is read anyway, and its violation alerts although the
    //    connect was allowed.
    let segments = watched.child("segments");
    for first in [1, 5] {
        let pid = attack(
            &segments,
            &format!("segmented 203.0.113.30 443 api.openai.com {first}"),
        );
        let connect = flow(&output, "connect", pid, "203.0.113.30");
        assert_eq!(connect["verdict"]["decision"], "allow", "{connect:#}");
        let close = flow(&output, "close", pid, "203.0.113.30");
        assert_eq!(
            close["sni"], "api.openai.com",
            "first segment {first}: {close:#}"
        );
        assert_eq!(close["verdict"]["decision"], "violation");
        assert_eq!(close["verdict"]["rule"], "deny-ai");
        assert_eq!(close["verdict"]["zones"], json!(["external-ai"]));
    }
    let late = wait_for_event(&output, |e| e["kind"] == "alert" && e["rule"] == "deny-ai");
    assert_eq!(late["destination"], "api.openai.com:443", "{late:#}");
    assert_eq!(late["flow"]["sni"], "api.openai.com");
    expected_alerts.push(("deny-ai", "api.openai.com:443".into()));

    // 8. One cgroup floods names; another's survive.
    let quiet = watched.child("quiet");
    let flood = watched.child("flood");
    run_in_cgroup(&quiet, &format!("dig +short @{DNS} llm.sovereign.example"));
    attack(&flood, &format!("flood {FLOOD}"));
    let (pid, _) = run_in_cgroup(&quiet, "curl -s -o /dev/null http://203.0.113.20/");
    let e = flow(&output, "connect", pid, "203.0.113.20");
    assert_eq!(
        e["names"],
        json!(["llm.sovereign.example", "edge.sovereign.example"]),
        "{e:#}"
    );
    assert_eq!(e["verdict"]["decision"], "allow", "{e:#}");
    let series = format!(
        "sovereign_agent_name_evictions_total{{cgroup_id=\"{}\"}}",
        flood.id()
    );
    let scrape = wait_for_metric(&metrics, &series, (FLOOD - MAP_PER_CGROUP) as f64);
    assert_eq!(
        sovereign_agent_tests::metric(&scrape, &series),
        Some((FLOOD - MAP_PER_CGROUP) as f64),
        "{scrape}"
    );
    assert!(
        !scrape.contains(&format!("cgroup_id=\"{}\"", quiet.id())),
        "the quiet cgroup lost nothing:\n{scrape}"
    );
    assert!(
        sovereign_agent_tests::metric(
            &scrape,
            "sovereign_agent_dns_refused_total{reason=\"no_query\"}"
        ) >= Some(1.0),
        "{scrape}"
    );

    // Every alert above is on the API stream, in the output's order.
    let alerts: Vec<Value> = events_of(&output)
        .into_iter()
        .filter(|e| e["kind"] == "alert")
        .collect();
    for (rule, destination) in &expected_alerts {
        assert!(
            alerts
                .iter()
                .any(|a| a["rule"] == *rule && a["destination"] == *destination),
            "no alert {rule} {destination} in {alerts:#?}"
        );
    }
    let (code, stdout, stderr) = run_agent([
        "tail",
        "--socket",
        api_socket_of(&output).to_str().unwrap(),
        "--since-seq",
        "0",
        "--kind",
        "alert",
        "--json",
        "--count",
        &alerts.len().to_string(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let streamed: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let key = |a: &Value| {
        (
            a["rule"].clone(),
            a["destination"].clone(),
            a["count"].clone(),
        )
    };
    assert_eq!(
        streamed.iter().map(key).collect::<Vec<_>>(),
        alerts.iter().map(key).collect::<Vec<_>>()
    );

    // The journal holds the same verdicts, evidence and refused answers.
    sigterm(&agent.0);
    let mut agent = agent;
    let _ = agent.0.wait();
    let (code, stdout, stderr) = run_agent([
        "journal",
        "export",
        journal_dir_of(&output).to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let journaled: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let live = events_of(&output);
    for e in live.iter().filter(|e| {
        matches!(
            e["kind"].as_str(),
            Some("dns_refused" | "alert" | "connect" | "close")
        )
    }) {
        let mut without_seq = |j: &Value| {
            let mut j = j.clone();
            j.as_object_mut().unwrap().remove("seq");
            j == *e
        };
        assert!(
            journaled.iter().any(&mut without_seq),
            "not journaled as it was output: {e:#}"
        );
    }
    // Replay under the same policy changes nothing: the evidence is in the record.
    let (code, stdout, stderr) = run_agent([
        "replay",
        journal_dir_of(&output).to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (&report["new_violations"], &report["newly_allowed"]),
        (&json!(0), &json!(0)),
        "{report:#}"
    );
}
