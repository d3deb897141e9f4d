//! The residency report of a journal the real agent wrote while real clients in the watched
//! cgroup talked to test hosts in a network namespace of the test's own: hosts on addresses
//! the (MaxMind test) country database places in Sweden and the United States, and
//! `api.openai.com` served by the namespace's dnsmasq. Every number in the JSON report is
//! checked against what the clients sent; the HTML is opened in a real headless Chromium
//! (screenshot, DOM, console, network log, print to PDF) and checked by `tidy`; a tampered
//! copy of the journal is reported as damaged; bad input gets one clear message.
use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;
use sovereign_agent_tests::{
    events_of, journal_dir_of,
    net::{sh, TestNet, DNS},
    run_agent, run_in_cgroup, sigterm, start_agent_with, Reaped, TestCgroup,
};

/// Hosts in Sweden and the United States, as the MaxMind test databases place them.
const SE: &str = "89.160.20.112";
const US: &str = "216.160.83.56";

const POLICY: &str = r#"
[policy]
name = "report-test"
version = "7"
default = "allow"

[datasets]
country = "GeoLite2-Country-Test.mmdb"
asn = "GeoLite2-ASN-Test.mmdb"

[zones.eea]
countries = ["EU", "NO", "IS", "LI"]

[zones.lab]
cidrs = ["198.51.100.0/24"]

[zones.external-ai]
ai = ["openai"]

[[rule]]
name = "eu-only"
allow = ["eea", "lab"]
deny = ["external-ai"]
otherwise = "violation"
severity = "high"
"#;

/// Reads until the client shuts its side, then answers 2,000 bytes and closes.
const SERVER: &str = r#"
import socket, threading
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9000))
s.listen(64)
def serve(c):
    while c.recv(65536):
        pass
    c.sendall(b"r" * 2000)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// `client.py ADDRESS N`: sends exactly N bytes, reads the 2,000-byte answer, closes.
const CLIENT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], 9000), timeout=5)
c.sendall(b"s" * int(sys.argv[2]))
c.shutdown(socket.SHUT_WR)
got = 0
while True:
    b = c.recv(65536)
    if not b:
        break
    got += len(b)
c.close()
assert got == 2000, got
"#;

/// The two hosts, on the namespace's loopback and routed through its veth; the routes are
/// removed on drop (the addresses go with the namespace).
struct Hosts;

impl Hosts {
    fn add(ns: &str) -> Self {
        for a in [SE, US] {
            sh(&format!("ip netns exec {ns} ip addr add {a}/32 dev lo"));
            sh(&format!("ip route add {a}/32 via {DNS}"));
        }
        Hosts
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for a in [SE, US] {
            let _ = Command::new("ip")
                .args(["route", "del", &format!("{a}/32")])
                .status();
        }
    }
}

fn row<'a>(report: &'a Value, address: &str) -> &'a Value {
    report["inventory"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == address)
        .unwrap_or_else(|| panic!("no inventory row for {address}: {report:#}"))
}

fn report_json(journal: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["report", journal.to_str().unwrap(), "--format", "json"];
    args.extend_from_slice(extra);
    let (code, out, err) = run_agent(&args);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// Runs headless Chromium in a network namespace of its own (it has nowhere to send
/// anything: the browser's own update checks die there, and a page request would show in
/// the network log); returns its stdout and stderr.
fn chromium(dir: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new("unshare")
        .args([
            "--net",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .args([
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium-profile").display()
        ))
        .args(args)
        .output()
        .expect("chromium (installed by cargo xtask setup)");
    assert!(out.status.success(), "chromium {args:?}: {out:?}");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_report_of_real_traffic_counts_what_was_sent_and_opens_in_a_browser() {
    let mut net = TestNet::new();
    let _hosts = Hosts::add(&net.ns);
    let dir = net.dir.clone();
    std::fs::write(dir.join("server.py"), SERVER).unwrap();
    std::fs::write(dir.join("client.py"), CLIENT).unwrap();
    net.serve(&format!(
        "ip netns exec {} python3 {}/server.py",
        net.ns,
        dir.display()
    ));
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/geoip");
    for f in ["GeoLite2-Country-Test.mmdb", "GeoLite2-ASN-Test.mmdb"] {
        std::fs::copy(testdata.join(f), dir.join(f)).unwrap();
    }
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    // The server answers before the agent starts (these probes are not watched).
    let client = |addr: &str, n: u32| format!("python3 {}/client.py {addr} {n}", dir.display());
    let mut up = false;
    for _ in 0..50 {
        up = Command::new("sh")
            .args(["-c", &client(SE, 1)])
            .status()
            .unwrap()
            .success();
        if up {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(up, "the test server did not answer: {}", net.logs());

    let cgroup = TestCgroup::new("report");
    let output = dir.join("events.jsonl");
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

    // Sweden: three connections, 5,000 bytes out, 6,000 in. United States: two, 1,400 out,
    // 4,000 in (violations: outside every allowed zone). api.openai.com (named by DNS): two
    // HTTP requests (violations: a denied zone).
    for n in [1000, 1500, 2500] {
        run_in_cgroup(&cgroup, &client(SE, n));
    }
    for _ in 0..2 {
        run_in_cgroup(&cgroup, &client(US, 700));
    }
    run_in_cgroup(&cgroup, &format!("dig +short @{DNS} api.openai.com"));
    for _ in 0..2 {
        run_in_cgroup(&cgroup, "curl -s -o /dev/null http://203.0.113.10/");
    }
    // Every close is on record before the agent stops.
    let mut closes = 0;
    for _ in 0..100 {
        closes = events_of(&output)
            .iter()
            .filter(|e| e["kind"] == "close" && e["dst_port"] == 9000)
            .count();
        if closes == 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(closes, 5, "close events on record");
    sigterm(&agent.0);
    let mut agent = agent;
    agent.0.wait().unwrap();
    let journal = journal_dir_of(&output);

    // The JSON report, with the datasets the agent recorded with its policy.
    let r = report_json(&journal, &[]);
    assert_eq!(r["integrity"]["intact"], true, "{:#}", r["integrity"]);
    let se = row(&r, SE);
    assert_eq!(se["port"], 9000);
    assert_eq!(se["flows"], 3);
    assert_eq!(
        (se["bytes_out"].as_u64(), se["bytes_in"].as_u64()),
        (Some(5000), Some(6000))
    );
    assert_eq!(se["location"]["country"], "SE");
    assert_eq!(se["location"]["asn"], 29518);
    assert_eq!(se["location"]["organisation"], "Bredband2 AB");
    assert_eq!(
        (se["eea"].as_bool(), se["violations"].as_u64()),
        (Some(true), Some(0))
    );
    assert_eq!(se["zones"], serde_json::json!(["eea"]));
    let python = se["workload"].as_str().unwrap().to_string();
    assert!(python.contains("python3"), "{se:#}");
    let us = row(&r, US);
    assert_eq!(
        (us["flows"].as_u64(), us["violations"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        (us["bytes_out"].as_u64(), us["bytes_in"].as_u64()),
        (Some(1400), Some(4000))
    );
    assert_eq!(us["location"]["country"], "US");
    assert_eq!(us["eea"], false);
    let ai = row(&r, "203.0.113.10");
    assert_eq!(ai["destination"], "api.openai.com:80");
    assert_eq!(ai["workload"], "/usr/bin/curl");
    assert_eq!(
        (ai["flows"].as_u64(), ai["violations"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(ai["name_sources"], serde_json::json!(["dns"]));
    assert_eq!(ai["zones"], serde_json::json!(["external-ai"]));

    let countries: Vec<(String, u64, u64)> = r["by_country"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["country"].as_str().unwrap().to_string(),
                c["flows"].as_u64().unwrap(),
                c["bytes_out"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(countries.contains(&("SE".into(), 3, 5000)), "{countries:?}");
    assert!(countries.contains(&("US".into(), 2, 1400)), "{countries:?}");
    let outside: Vec<&str> = r["outside"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["address"].as_str().unwrap())
        .collect();
    assert_eq!(outside, [US]);
    let ai_apis = r["ai_apis"].as_array().unwrap();
    assert_eq!(ai_apis.len(), 1, "{ai_apis:#?}");
    assert_eq!(ai_apis[0]["provider"], "openai");
    assert_eq!(ai_apis[0]["workload"], "/usr/bin/curl");
    assert_eq!(ai_apis[0]["flows"], 2);

    let v = &r["verdicts"];
    assert_eq!(v["violations"], 4, "{v:#}");
    assert_eq!(
        v["by_rule"],
        serde_json::json!([{"name": "eu-only", "count": 4}])
    );
    let groups = v["groups"].as_array().unwrap();
    let openai = groups
        .iter()
        .find(|g| g["destination"] == "api.openai.com:80")
        .unwrap();
    assert_eq!(openai["flows"], 2);
    assert_eq!(openai["severity"], "high");
    assert_eq!(openai["zones"], serde_json::json!(["external-ai"]));
    assert!(
        openai["evidence"][0]
            .as_str()
            .unwrap()
            .contains("api.openai.com"),
        "{openai:#}"
    );

    let scope = &r["scope"];
    assert_eq!(scope["policies"][0]["name"], "report-test");
    assert_eq!(scope["policies"][0]["version"], "7");
    let recorded: Vec<&str> = scope["datasets_recorded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(recorded, ["asn", "country"]);
    assert_eq!(scope["datasets_used"].as_array().unwrap().len(), 2);
    let coverage = &r["integrity"]["coverage"][0];
    assert_eq!(coverage["sessions"].as_array().unwrap().len(), 1);
    assert!(
        coverage["sessions"][0]["end"]
            .as_str()
            .unwrap()
            .starts_with("stop: "),
        "{coverage:#}"
    );
    assert_eq!(coverage["unclean_stops"], 0);
    assert_eq!(r["integrity"]["kernel_losses"], 0);
    assert_eq!(r["totals"]["violations"], 4);

    // A proposed policy that also allows the United States: the two US connections become
    // allowed (replay counts flow events: connect, established and close of each).
    let proposed = dir.join("proposed.toml");
    std::fs::write(
        &proposed,
        POLICY
            .replace("version = \"7\"", "version = \"8\"")
            .replace(
                r#"countries = ["EU", "NO", "IS", "LI"]"#,
                r#"countries = ["EU", "NO", "IS", "LI", "US"]"#,
            ),
    )
    .unwrap();
    let with_replay = report_json(&journal, &["--policy", proposed.to_str().unwrap()]);
    let replay = &with_replay["replay"];
    assert_eq!(replay["policy_version"], "8", "{replay:#}");
    assert_eq!(replay["newly_allowed"], 6, "{replay:#}");
    assert_eq!(replay["new_violations"], 0, "{replay:#}");
    assert_eq!(replay["changes"][0]["destination"], format!("{US}:9000"));
    assert_eq!(replay["changes"][0]["change"], "newly_allowed");

    // The CSV: the same rows.
    let (code, csv, err) = run_agent(["report", journal.to_str().unwrap(), "--format", "csv"]);
    assert_eq!(code, 0, "{err}");
    let se_line = csv.lines().find(|l| l.contains(SE)).unwrap();
    assert!(se_line.contains(",SE,true,"), "{se_line}");
    assert!(se_line.ends_with(",3,5000,6000,0,,eea"), "{se_line}");
    assert_eq!(
        csv.lines().count() - 1,
        r["inventory"].as_array().unwrap().len()
    );

    // The HTML, in a real browser.
    let html = dir.join("report.html");
    let (code, _, err) = run_agent([
        "report",
        journal.to_str().unwrap(),
        "--output",
        html.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let url = format!("file://{}", html.display());
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("report.png");
    let netlog = dir.join("netlog.json");
    let (_, log) = chromium(
        &dir,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,2000",
            &format!("--log-net-log={}", netlog.display()),
            &url,
        ],
    );
    assert!(
        std::fs::metadata(&png).unwrap().len() > 20_000,
        "a screenshot of a page with content"
    );
    // No console message at all (a CSP refusal, a script error or a log would be one).
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "{console:#?}");
    // No request made by the page: a request's isolation key names the page that made it.
    let netlog: Value = serde_json::from_slice(&std::fs::read(&netlog).unwrap()).unwrap();
    let page_requests: Vec<&Value> = netlog["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["params"]["network_isolation_key"]
                .as_str()
                .is_some_and(|k| k.starts_with("file://"))
                && e["params"]["url"]
                    .as_str()
                    .is_some_and(|u| !u.starts_with("file:"))
        })
        .collect();
    assert!(page_requests.is_empty(), "{page_requests:#?}");
    let (dom, _) = chromium(&dir, &["--dump-dom", &url]);
    for text in [
        "1. Scope and provenance",
        "2. Completeness and integrity",
        "3. Egress inventory",
        "4. Where the data went",
        "5. External AI APIs",
        "6. Verdicts",
        "7. Limitations",
        "Journal verified",
        "api.openai.com:80",
        SE,
        "Bytes sent by country",
        "eu-only",
    ] {
        assert!(dom.contains(text), "{text:?} not in the rendered page");
    }
    assert!(dom.matches("<svg").count() >= 2, "charts drawn");
    let pdf = dir.join("report.pdf");
    chromium(
        &dir,
        &[
            &format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer",
            &url,
        ],
    );
    let pdf = std::fs::read(&pdf).unwrap();
    assert!(pdf.starts_with(b"%PDF-") && pdf.len() > 20_000, "a PDF");
    // tidy: no errors (exit 2); warnings are listed but allowed (it predates inline SVG).
    let tidy = Command::new("tidy")
        .args(["-q", "-e", "--show-warnings", "no"])
        .arg(&html)
        .output()
        .expect("tidy (installed by cargo xtask setup)");
    assert!(
        tidy.status.code() != Some(2),
        "tidy found errors: {}",
        String::from_utf8_lossy(&tidy.stderr)
    );

    // A tampered copy: one byte of a record changed. Exit 1, the report still written and
    // saying so first; --allow-damaged exits 0.
    let tampered = dir.join("tampered");
    sh(&format!(
        "cp -r {} {}",
        journal.display(),
        tampered.display()
    ));
    let segment = std::fs::read_dir(&tampered)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "journal"))
        .expect("a segment file");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes
        .windows(14)
        .position(|w| w == b"api.openai.com")
        .expect("a recorded name");
    bytes[at] = b'x';
    std::fs::write(&segment, bytes).unwrap();
    let damaged = dir.join("damaged.html");
    let (code, _, err) = run_agent([
        "report",
        tampered.to_str().unwrap(),
        "--output",
        damaged.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the journal is damaged"), "{err}");
    let page = std::fs::read_to_string(&damaged).unwrap();
    let banner = page.find("THE JOURNAL IS DAMAGED").expect("a banner");
    assert!(banner < page.find("1. Scope and provenance").unwrap());
    let (code, _, err) = run_agent([
        "report",
        tampered.to_str().unwrap(),
        "--format",
        "json",
        "--allow-damaged",
    ]);
    assert_eq!(code, 0, "{err}");

    // Bad input: one message, the right exit code, no panic.
    for (args, want, says) in [
        (
            vec!["report", "/nonexistent/journal"],
            66,
            "/nonexistent/journal",
        ),
        (
            vec!["report", journal.to_str().unwrap(), "--since", "last week"],
            64,
            "--since",
        ),
        (
            vec!["report", journal.to_str().unwrap(), "--adequate", "XYZ"],
            64,
            "--adequate",
        ),
        (
            vec![
                "report",
                journal.to_str().unwrap(),
                "--datasets",
                "/nonexistent/datasets",
            ],
            65,
            "--datasets",
        ),
    ] {
        let (code, _, err) = run_agent(&args);
        assert_eq!(code, want, "{args:?}: {err}");
        assert!(
            err.contains(says) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    // An empty period is a report that says so.
    let empty = report_json(
        &journal,
        &["--since", "2001-01-01", "--until", "2001-01-02"],
    );
    assert_eq!(empty["totals"]["flows"], 0);
    assert!(
        empty["missing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_str().unwrap().contains("no records in this period")),
        "{:#}",
        empty["missing"]
    );
}
