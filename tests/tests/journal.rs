//! The forensic journal end to end: the real agent journals real flows; `journal verify`,
//! `journal export` and `replay` read it back; a writer killed with SIGKILL loses nothing it
//! reported durable; a full disk leaves a valid journal with the gap on record.
use std::{
    collections::HashSet,
    io::BufRead,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use sovereign_agent::{
    event::{Event, Lifecycle},
    journal::{reader, JournalOptions, JournalWriter},
};
use sovereign_agent_tests::{
    closed_port, events_of, journal_dir_of, loopback_policy, require_root, sigterm,
    start_agent_with, start_agent_wrapped, target_bin, wait_for_event, TestCgroup,
};

fn agent() -> Command {
    Command::new(target_bin("sovereign-agent"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sa-journal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run sovereign-agent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// Runs the agent with `policy` on a fresh cgroup, makes two refused connections from the
/// generator, stops the agent; returns (live events, journal dir, generator pid, ports).
fn journal_of_a_run(name: &str, policy: &Path) -> (Vec<Value>, PathBuf, u32, [u16; 2]) {
    let cgroup = TestCgroup::new(name);
    let dir = tmpdir(name);
    let output = dir.join("events.jsonl");
    let (mut child, _logs) =
        start_agent_with(&cgroup, &output, &["--policy", policy.to_str().unwrap()]);
    let a = closed_port("127.0.0.1:0");
    let b = closed_port("127.0.0.1:0");
    let (pid, _) = cgroup.traffic(&["refused", &a.to_string()]);
    let (pid2, _) = cgroup.traffic(&["refused", &b.to_string()]);
    for (p, port) in [(pid, a.port()), (pid2, b.port())] {
        wait_for_event(&output, |e| {
            e["kind"] == "close" && e["pid"] == p && e["dst_port"] == port
        });
    }
    sigterm(&child);
    assert!(child.wait().unwrap().success());
    (
        events_of(&output),
        journal_dir_of(&output),
        pid,
        [a.port(), b.port()],
    )
}

#[test]
fn the_agent_journals_every_event_and_export_reproduces_the_live_output() {
    require_root();
    let dir = tmpdir("e2e-policies");
    let allow = dir.join("allow.toml");
    let deny = dir.join("deny.toml");
    std::fs::write(
        &allow,
        loopback_policy(
            "loopback-ok",
            "1",
            "allow = [\"loopback\"]\notherwise = \"violation\"",
        ),
    )
    .unwrap();
    std::fs::write(
        &deny,
        loopback_policy(
            "loopback-denied",
            "2",
            "deny = [\"loopback\"]\nseverity = \"critical\"",
        ),
    )
    .unwrap();
    let (live, journal, pid, ports) = journal_of_a_run("jrun", &allow);

    let (code, out, err) = run(agent().args(["journal", "verify"]).arg(&journal));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": OK: "), "{out}");

    // Export gives back exactly the live output, in order, with gap-free sequence numbers.
    let (code, out, err) = run(agent().args(["journal", "export"]).arg(&journal));
    assert_eq!(code, 0, "{err}");
    let exported = lines(&out);
    // Every live event, and the stop record (written by the journal when it closes).
    assert_eq!(exported.len(), live.len() + 1);
    for (i, (e, l)) in exported.iter().zip(&live).enumerate() {
        assert_eq!(e["seq"], i as u64);
        let mut without_seq = e.clone();
        without_seq.as_object_mut().unwrap().remove("seq");
        assert_eq!(&without_seq, l, "record {i}");
    }
    assert_eq!(exported[0]["kind"], "agent_start");
    assert!(exported[0]["binary_hash"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(exported[1]["kind"], "policy");
    assert_eq!(exported[1]["name"], "loopback-ok");
    let last = exported.last().unwrap();
    assert_eq!(last["kind"], "agent_stop");
    let flows: Vec<&Value> = exported
        .iter()
        .filter(|e| e["dst_port"].is_number())
        .collect();
    assert_eq!(last["flows"], flows.len() as u64);
    for port in ports {
        let connect = flows
            .iter()
            .find(|e| e["kind"] == "connect" && e["dst_port"] == port)
            .expect("connect journaled");
        assert_eq!(connect["dst_ip"], "127.0.0.1");
        assert_eq!(connect["comm"], "sa-traffic");
        assert_eq!(connect["verdict"]["decision"], "allow");
    }

    // Filters.
    let (_, out, _) = run(agent()
        .args(["journal", "export", "--pid", &pid.to_string()])
        .arg(&journal));
    let by_pid = lines(&out);
    assert_eq!(
        by_pid.len(),
        2,
        "connect + close of the first generator: {out}"
    );
    assert!(by_pid
        .iter()
        .all(|e| e["pid"] == pid && e["dst_port"] == ports[0]));
    let (_, out, _) = run(agent()
        .args([
            "journal",
            "export",
            "--dst",
            "127.0.0.0/8",
            "--verdict",
            "allow",
        ])
        .arg(&journal));
    assert_eq!(lines(&out).len(), flows.len());
    let (_, out, _) = run(agent()
        .args(["journal", "export", "--verdict", "violation"])
        .arg(&journal));
    assert_eq!(out, "");
    let (code, _, err) = run(agent()
        .args(["journal", "export", "--since", "yesterday"])
        .arg(&journal));
    assert_eq!(code, 64);
    assert!(
        err.contains("--since") && err.contains("yesterday"),
        "{err}"
    );
    let (_, out, _) = run(agent()
        .args(["journal", "export", "--format", "csv"])
        .arg(&journal));
    let mut rows = out.lines();
    assert!(rows.next().unwrap().starts_with("seq,ts,kind,pid,"));
    assert_eq!(rows.count(), live.len() + 1);

    // Replay under the policy it ran with: nothing changes, exit 0.
    let (code, out, err) = run(agent()
        .arg("replay")
        .arg(&journal)
        .arg("--policy")
        .arg(&allow)
        .arg("--json"));
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["flow_events"], flows.len() as u64);
    assert_eq!(
        (r["new_violations"].as_u64(), r["unchanged"].as_u64()),
        (Some(0), Some(flows.len() as u64))
    );

    // Under a policy that denies loopback to the generator: every one of its flow events is
    // a new violation, grouped by destination; exit 2.
    let (code, out, err) = run(agent()
        .arg("replay")
        .arg(&journal)
        .arg("--policy")
        .arg(&deny)
        .arg("--json"));
    assert_eq!(code, 2, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["new_violations"], flows.len() as u64);
    assert_eq!(r["newly_allowed"], 0);
    let changes = r["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{changes:#?}");
    for port in ports {
        let g = changes
            .iter()
            .find(|g| g["destination"] == format!("127.0.0.1:{port}"))
            .expect("group per destination");
        assert_eq!(g["events"], 2);
        assert_eq!(
            (
                g["was"].as_str(),
                g["now_rule"].as_str(),
                g["now_severity"].as_str()
            ),
            (Some("allow"), Some("generator"), Some("critical"))
        );
        assert!(
            g["workload"].as_str().unwrap().ends_with("sa-traffic"),
            "{g}"
        );
    }
    // The table names the change.
    let (code, out, _) = run(agent()
        .arg("replay")
        .arg(&journal)
        .arg("--policy")
        .arg(&deny));
    assert_eq!(code, 2);
    assert!(
        out.contains("new violations   4") && out.contains("NEW VIOLATION"),
        "{out}"
    );
    // Filtered to one destination.
    let (_, out, _) = run(agent()
        .arg("replay")
        .arg(&journal)
        .arg("--policy")
        .arg(&deny)
        .args(["--json", "--dst"])
        .arg("127.0.0.1/32")
        .args(["--pid", &pid.to_string()]));
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["new_violations"], 2);
}

/// `output = "none"`: no JSON lines anywhere (not on stdout, not in a file called `none`),
/// and the journal still holds every flow.
#[test]
fn output_none_writes_no_json_lines_and_the_journal_keeps_every_flow() {
    require_root();
    let cgroup = TestCgroup::new("output-none");
    let dir = tmpdir("output-none");
    let output = dir.join("events.jsonl");
    // The agent's stdout into a file of its own, to show that nothing is written there.
    let stdout = dir.join("stdout");
    let redirect = format!("exec \"$@\" > {}", stdout.display());
    let (mut child, _logs) = start_agent_wrapped(
        &cgroup,
        &output,
        &["--output", "none"],
        &["sh", "-c", &redirect, "sh"],
    );
    let port = closed_port("127.0.0.1:0").port();
    let (pid, _) = cgroup.traffic(&["refused", &format!("127.0.0.1:{port}")]);
    let journal = journal_dir_of(&output);
    let flows = |journal: &Path| {
        let (code, out, err) = run(agent()
            .args(["journal", "export", "--pid", &pid.to_string()])
            .arg(journal));
        assert_eq!(code, 0, "{err}");
        lines(&out)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while flows(&journal).len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(
        std::fs::read_to_string(&stdout).unwrap(),
        "",
        "no JSON lines on stdout"
    );
    assert!(!output.exists(), "no output file");
    assert!(!Path::new("none").exists() && !dir.join("none").exists());
    let kinds: Vec<_> = flows(&journal)
        .iter()
        .filter(|e| e["dst_port"] == port)
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["connect", "close"], "the journal has the flow");
}

#[test]
fn verify_names_the_segment_and_offset_of_tampering() {
    require_root();
    let dir = tmpdir("tamper-policy");
    let allow = dir.join("allow.toml");
    std::fs::write(
        &allow,
        loopback_policy(
            "loopback-ok",
            "1",
            "allow = [\"loopback\"]\notherwise = \"violation\"",
        ),
    )
    .unwrap();
    let (_, journal, _, _) = journal_of_a_run("jtamper", &allow);
    let segment = journal.join("000000000000.journal");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() - 30;
    bytes[at] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();
    let (code, out, _) = run(agent().args(["journal", "verify"]).arg(&journal));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("INVALID") && out.contains("000000000000.journal at offset"),
        "{out}"
    );
    assert!(out.contains("checksum"), "{out}");

    let (code, _, err) = run(agent().args(["journal", "verify", "/etc"]));
    assert_eq!(code, 66);
    assert!(
        err.contains("/etc") && err.contains("not a journal"),
        "{err}"
    );
}

#[test]
fn signed_journal_verifies_only_with_its_key() {
    require_root();
    let dir = tmpdir("signed");
    let openssl = |args: &[&str]| {
        let s = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .status()
            .expect("openssl");
        assert!(s.success(), "openssl {args:?}");
    };
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", "key.pem"]);
    openssl(&["pkey", "-in", "key.pem", "-pubout", "-out", "key.pub.pem"]);
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", "other.pem"]);
    openssl(&[
        "pkey",
        "-in",
        "other.pem",
        "-pubout",
        "-out",
        "other.pub.pem",
    ]);
    let journal = dir.join("journal");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[journal]\ndir = \"{}\"\nsigning_key = \"{}\"\nsegment_max_bytes = 4096\n",
            journal.display(),
            dir.join("key.pem").display()
        ),
    )
    .unwrap();
    let cgroup = TestCgroup::new("jsigned");
    let output = dir.join("events.jsonl");
    let (mut child, _logs) = start_agent_with(
        &cgroup,
        &output,
        &[
            "--config",
            config.to_str().unwrap(),
            "--journal",
            journal.to_str().unwrap(),
        ],
    );
    for _ in 0..12 {
        let port = closed_port("127.0.0.1:0");
        cgroup.traffic(&["refused", &port.to_string()]);
    }
    wait_for_event(&output, |e| e["kind"] == "close");
    sigterm(&child);
    assert!(child.wait().unwrap().success());
    let segments = std::fs::read_dir(&journal)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".journal")
        })
        .count();
    assert!(segments >= 2, "4 KiB segments rotate: {segments}");
    let (code, out, _) = run(agent()
        .args(["journal", "verify", "--public-key"])
        .arg(dir.join("key.pub.pem"))
        .arg(&journal));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{segments} signatures verified")),
        "{out}"
    );
    let (code, out, _) = run(agent()
        .args(["journal", "verify", "--public-key"])
        .arg(dir.join("other.pub.pem"))
        .arg(&journal));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("does not verify with the given public key"),
        "{out}"
    );
    let (code, out, _) = run(agent().args(["journal", "verify"]).arg(&journal));
    assert_eq!(code, 0);
    assert!(out.contains("signatures NOT checked"), "{out}");
    // A bad key is one clear error at start.
    std::fs::write(dir.join("bad.pem"), "not a key").unwrap();
    std::fs::write(
        &config,
        format!(
            "[journal]\ndir = \"{}\"\nsigning_key = \"{}\"\n",
            journal.display(),
            dir.join("bad.pem").display()
        ),
    )
    .unwrap();
    let (code, _, err) = run(agent()
        .args(["run", "--output", "/dev/null", "--config"])
        .arg(&config));
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("journal.signing_key")
            && err.contains("bad.pem")
            && err.contains("openssl genpkey"),
        "{err}"
    );
}

/// A small deterministic generator, so a failure can be reproduced from its seed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing_reported_durable() {
    let dir = tmpdir("crash");
    let journal = dir.join("journal");
    let seed = u64::from(std::process::id());
    let mut rng = Lcg(seed);
    let mut durable: Vec<(u64, u64)> = Vec::new();
    let mut recovered = 0;
    let mut got_going = 0;
    for i in 0..40u64 {
        let first = i * 1_000_000;
        let mut child = Command::new(target_bin("sa-journal-writer"))
            .arg(&journal)
            .arg(first.to_string())
            .arg("16384")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (going_tx, going) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut last = None;
            let mut recovered = false;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(n) = line.strip_prefix("durable ") {
                    last = Some(n.parse::<u64>().unwrap());
                    let _ = going_tx.send(());
                } else if line.starts_with("recovered ") {
                    recovered = true;
                }
            }
            (last, recovered)
        });
        // Most random moments count from the writer's first durable batch, not from the
        // spawn: on a slow machine (the VM tests run under emulation) starting the process
        // alone can take longer than the whole window. One round in four kills it at once:
        // during its start and the recovery of the previous round's torn tail.
        if rng.next(4) != 0 {
            got_going += u32::from(going.recv_timeout(Duration::from_secs(30)).is_ok());
        }
        std::thread::sleep(Duration::from_millis(rng.next(150)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (last, was_recovered) = reader.join().unwrap();
        recovered += u32::from(was_recovered);
        if let Some(last) = last {
            durable.push((first, last));
        }
    }
    assert!(
        got_going >= 20 && durable.len() >= 20,
        "the writer got going in most rounds ({got_going}): {durable:?}"
    );
    // Reopening recovers the last torn tail (if any); then the journal verifies.
    let (w, _) = JournalWriter::open(JournalOptions::new(&journal)).unwrap();
    w.close().unwrap();
    let (code, out, err) = run(agent().args(["journal", "verify"]).arg(&journal));
    assert_eq!(code, 0, "seed {seed}: {out}{err}");
    let mut cookies = HashSet::new();
    reader::for_each_event(
        &journal,
        |_| {},
        |_, e| {
            if let Event::Flow(f) = e {
                cookies.insert(f.cookie);
            }
            Ok(())
        },
    )
    .unwrap();
    for (first, last) in &durable {
        for c in *first..=*last {
            assert!(
                cookies.contains(&c),
                "seed {seed}: record {c} was reported durable and is gone"
            );
        }
    }
    eprintln!(
        "crash test: {} kills, {} records durable, {} reopenings cut a torn tail",
        durable.len(),
        durable.iter().map(|(f, l)| l - f + 1).sum::<u64>(),
        recovered
    );
}

/// Unmounts on drop.
struct Tmpfs(PathBuf);
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_keeps_the_journal_valid_and_records_the_gap() {
    require_root();
    let mnt = tmpdir("fulldisk");
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs");
    let _guard = Tmpfs(mnt.clone());
    // Leave about 160 KiB for the journal.
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; 860 * 1024]).unwrap();
    let journal = mnt.join("journal");
    let opts = JournalOptions {
        segment_max_bytes: 64 * 1024,
        retention_max_age: None,
        retention_max_bytes: None,
        ..JournalOptions::new(&journal)
    };
    let (mut w, _) = JournalWriter::open(opts).unwrap();
    let mut written = 0u64;
    let mut failed = 0u64;
    let mut error = String::new();
    let batch = |from: u64| -> Vec<Event> {
        (from..from + 50)
            .map(|c| Event::Flow(Box::new(flow(c))))
            .collect()
    };
    for i in 0..200u64 {
        match w.append(&batch(i * 50)) {
            Ok(()) if failed == 0 => written += 50,
            Ok(()) => panic!("writes resumed without freeing space"),
            Err(e) => {
                failed += 50;
                error = e.to_string();
                if failed >= 150 {
                    break;
                }
            }
        }
    }
    assert!(
        written > 0 && failed == 150,
        "written {written} failed {failed}"
    );
    assert!(error.contains("No space left"), "{error}");
    assert_eq!(w.stats().not_journaled, 150);
    // Space comes back: the next batch goes in behind a record of the gap.
    std::fs::remove_file(&filler).unwrap();
    w.append(&batch(1_000_000)).unwrap();
    w.close().unwrap();
    let (code, out, err) = run(agent().args(["journal", "verify"]).arg(&journal));
    assert_eq!(code, 0, "{out}{err}");
    let mut cookies = Vec::new();
    let mut gap = None;
    reader::for_each_event(
        &journal,
        |_| {},
        |_, e| {
            match e {
                Event::Flow(f) => cookies.push(f.cookie),
                Event::Lifecycle(l) => {
                    if let Lifecycle::JournalGap { events, reason, .. } = l.body {
                        gap = Some((events, reason));
                    }
                }
                _ => {}
            }
            Ok(())
        },
    )
    .unwrap();
    let expected: Vec<u64> = (0..written).chain(1_000_000..1_000_050).collect();
    assert_eq!(
        cookies, expected,
        "everything written before the disk filled is intact"
    );
    let (events, reason) = gap.expect("gap recorded");
    assert_eq!(events, 150);
    assert!(reason.contains("No space left"), "{reason}");
}

fn flow(cookie: u64) -> sovereign_agent::event::FlowEvent {
    use sovereign_agent::{
        clock::WallClock,
        event::{EventKind, FlowEvent},
    };
    use sovereign_agent_common::{FlowRecord, RecordKind, AF_INET, IPPROTO_TCP};
    let mut rec = FlowRecord {
        kind: RecordKind::Connect as u32,
        family: AF_INET,
        protocol: IPPROTO_TCP,
        tgid: 7,
        pid: 7,
        cookie,
        dst_port: 443,
        ..FlowRecord::default()
    };
    rec.dst_addr[..4].copy_from_slice(&[203, 0, 113, 9]);
    FlowEvent::from_record(
        EventKind::Connect,
        &rec,
        &Default::default(),
        &WallClock::sample(),
    )
}

#[test]
fn an_agent_killed_with_sigkill_reopens_its_journal_and_the_gap_is_visible() {
    require_root();
    let dir = tmpdir("agent-kill");
    let cgroup = TestCgroup::new("jkill");
    let journal = dir.join("journal");
    let j = journal.to_str().unwrap();
    let first_out = dir.join("first.jsonl");
    let (mut first, _logs) = start_agent_with(&cgroup, &first_out, &["--journal", j]);
    let a = closed_port("127.0.0.1:0");
    let (pid_a, _) = cgroup.traffic(&["refused", &a.to_string()]);
    wait_for_event(&first_out, |e| e["kind"] == "close" && e["pid"] == pid_a);
    // Batches reach the disk within milliseconds of being read; give it a moment, then crash.
    std::thread::sleep(Duration::from_millis(500));
    first.kill().unwrap();
    first.wait().unwrap();

    let second_out = dir.join("second.jsonl");
    let (mut second, _logs) = start_agent_with(&cgroup, &second_out, &["--journal", j]);
    let b = closed_port("127.0.0.1:0");
    let (pid_b, _) = cgroup.traffic(&["refused", &b.to_string()]);
    wait_for_event(&second_out, |e| e["kind"] == "close" && e["pid"] == pid_b);
    sigterm(&second);
    assert!(second.wait().unwrap().success());

    let (code, out, err) = run(agent().args(["journal", "verify"]).arg(&journal));
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = run(agent().args(["journal", "export"]).arg(&journal));
    let records = lines(&out);
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "agent_start").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "agent_stop").count(),
        1,
        "{kinds:?}"
    );
    // The first run's events are all there, and it has no stop record: the second start
    // follows them directly, so the crash is visible.
    for e in events_of(&first_out) {
        if e["dst_port"].is_number() {
            assert!(
                records
                    .iter()
                    .any(|r| r["cookie"] == e["cookie"] && r["kind"] == e["kind"]),
                "{e} was lost"
            );
        }
    }
    let second_start = records
        .iter()
        .rposition(|r| r["kind"] == "agent_start")
        .unwrap();
    assert_ne!(records[second_start - 1]["kind"], "agent_stop");
    assert!(records[second_start..]
        .iter()
        .any(|r| r["pid"] == pid_b && r["kind"] == "connect"));
}

/// Issue 31, finding 7: recovery cut at the first bad frame even below the checkpoint. One
/// flipped byte in record 500 of a synced journal, then a restart: the records from 500 on
/// were gone, the chain was re-made over the cut, `journal verify` passed, the report called
/// it a torn tail, and the sequence went back under the same journal id (so a sink's cursor
/// and the collector dropped the new records 500.. as ones they had). Now the damaged segment
/// is kept aside whole, the journal goes on under a new id, the sinks' cursors come back to
/// the cut, and the `journal_recovered` record, `journal verify` (exit 3) and the report say
/// how many synced records were cut and where they are kept.
#[test]
fn damage_below_the_checkpoint_is_kept_aside_under_a_new_journal_id_and_said() {
    use sovereign_agent::journal::format;
    let dir = tmpdir("damage-below");
    let journal = dir.join("journal");
    let write = |first_cookie: &str, count: &str| {
        let out = Command::new(target_bin("sa-journal-writer"))
            .arg(&journal)
            .args([first_cookie, "67108864", count])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    write("0", "1000");
    let id_before = std::fs::read_to_string(journal.join("journal.id")).unwrap();
    let segment = journal.join("000000000000.journal");
    let mut bytes = std::fs::read(&segment).unwrap();
    // Every record was delivered by a sink: its cursor is at the journal's end.
    let mut off = format::HEADER_LEN;
    let (mut at_500, mut next_seq) = (None, 0);
    while off < bytes.len() {
        let f = format::decode_frame(&bytes[off..]).unwrap();
        if f.seq == 500 {
            at_500 = Some(off);
        }
        next_seq = f.seq + 1;
        off += f.bytes.len();
    }
    assert!(
        next_seq >= 1000,
        "the journal holds the writer's 1,000 records"
    );
    std::fs::write(journal.join("sink.siem.cursor"), format!("{next_seq}\n")).unwrap();
    let at = at_500.unwrap() + 40;
    bytes[at] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();
    // The agent restarts: its writer reopens the journal.
    write("1000000", "10");

    let id_after = std::fs::read_to_string(journal.join("journal.id")).unwrap();
    assert_ne!(id_after, id_before, "the journal goes on under a new id");
    let kept: Vec<_> = std::fs::read_dir(journal.join("damaged"))
        .expect("the damaged segment is kept aside")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        std::fs::read(&kept[0]).unwrap(),
        bytes,
        "kept whole, as it was"
    );
    assert_eq!(
        std::fs::read_to_string(journal.join("sink.siem.cursor"))
            .unwrap()
            .trim(),
        "500",
        "the sink delivers the new records from the cut on"
    );
    let removed = next_seq - 500;
    let (code, out, err) = run(agent().args(["journal", "verify"]).arg(&journal));
    assert_eq!(code, 3, "{out}{err}");
    let kept_name = format!("damaged/{}", kept[0].file_name().unwrap().to_string_lossy());
    assert!(
        out.contains("DAMAGE RECOVERED")
            && out.contains(&format!("{removed} synced records of segment 0"))
            && out.contains(&kept_name)
            && out.contains(id_before.trim()),
        "{out}"
    );
    let (code, out, err) = run(agent().args(["report", "--format", "json"]).arg(&journal));
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {err}"));
    let rows = report["integrity"]["recovered"].as_array().unwrap();
    let damage: Vec<_> = rows
        .iter()
        .filter(|r| r["below_checkpoint"] == true)
        .collect();
    assert_eq!(damage.len(), 1, "{rows:?} (exit {code})");
    assert_eq!(damage[0]["records_removed"], removed);
    assert_eq!(damage[0]["set_aside"], kept_name.as_str());
    assert_eq!(damage[0]["previous_journal_id"], id_before.trim());
    let _ = std::fs::remove_dir_all(&dir);
}
