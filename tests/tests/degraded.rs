//! A kernel that refuses a hook: the agent starts with the rest and says what it lacks, in its
//! start event (`hooks_failed`), its status (gRPC API), `/readyz`, the
//! `sovereign_agent_hook_attached` metric and a warning in its log; and what the missing hook
//! would have reported is absent, not invented. The refusal is simulated with the agent's test
//! switch (SOVEREIGN_TEST_REFUSE_HOOKS), so every hook is covered on any kernel; the VM tests
//! (`cargo xtask vm-test`) run this suite on the kernels of the matrix too.
use std::{path::PathBuf, process::Command, time::Duration};

use sovereign_agent_tests::{
    api_socket_of, events_of, free_port, http_get, metric, require_root, sigterm,
    start_agent_logged, target_bin, tcp_server, wait_for_event, Reaped, Script, TestCgroup,
};

/// Every hook, as the agent names it (`hooks` of its start event).
const HOOKS: [&str; 13] = [
    "cgroup/connect4",
    "cgroup/connect6",
    "cgroup/sendmsg4",
    "cgroup/sendmsg6",
    "sockops",
    "cgroup/sock_release",
    "cgroup_skb/ingress",
    "cgroup_skb/egress",
    "tracepoint/task/task_newtask",
    "tracepoint/syscalls/sys_enter_execve",
    "tracepoint/syscalls/sys_enter_execveat",
    "tracepoint/sched/sched_process_exec",
    "tracepoint/sched/sched_process_exit",
];

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sa-degraded-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The agent on `cgroup`, with `hook` refused: the agent, every log line it wrote up to
/// `capturing`, and its metrics address.
fn start_refusing(
    cgroup: &TestCgroup,
    output: &std::path::Path,
    hook: &str,
) -> (Reaped, Vec<String>, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let refuse = format!("SOVEREIGN_TEST_REFUSE_HOOKS={hook}");
    let (child, logs, _) = start_agent_logged(
        cgroup,
        output,
        &["--metrics-listen", &addr],
        &["env", &refuse],
    );
    (Reaped(child), logs, addr)
}

#[test]
fn each_refused_hook_is_reported_everywhere_and_the_agent_runs_with_the_rest() {
    require_root();
    let dir = tmpdir("each");
    for (i, hook) in HOOKS.iter().enumerate() {
        let cgroup = TestCgroup::new("degraded");
        let output = dir.join(format!("events-{i}.jsonl"));
        let (child, logs, addr) = start_refusing(&cgroup, &output, hook);

        let start = wait_for_event(&output, |e| e["kind"] == "agent_start");
        assert_eq!(start["hooks_failed"], serde_json::json!([hook]), "{start}");
        let attached: Vec<&str> = start["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h.as_str())
            .collect();
        assert_eq!(attached.len(), HOOKS.len() - 1, "{start}");
        assert!(!attached.contains(hook), "{start}");
        // What every flow after this start lacks, journaled with it.
        let lacks = start["not_reported"].as_array().expect("not_reported");
        assert!(
            lacks.len() == 1
                && lacks[0].as_str().is_some_and(
                    |l| l.starts_with(&format!("{hook}: ")) && l.len() > hook.len() + 4
                ),
            "{start}"
        );

        // /readyz: still ready (the rest works), and says what is missing.
        let (status, body) = http_get(&addr, "/readyz");
        assert_eq!(status, 200, "{body}");
        assert!(
            body.starts_with("ready, degraded")
                && body.contains(&format!("{hook} (not reported: ")),
            "{body}"
        );
        // The metric: 0 for this hook, 1 for the others.
        let (_, text) = http_get(&addr, "/metrics");
        for h in HOOKS {
            let series = format!("sovereign_agent_hook_attached{{hook=\"{h}\"}}");
            let expected = if h == *hook { 0.0 } else { 1.0 };
            assert_eq!(metric(&text, &series), Some(expected), "{series}");
        }
        // The status command, from the API.
        let out = Command::new(target_bin("sovereign-agent"))
            .args(["status", "--json", "--socket"])
            .arg(api_socket_of(&output))
            .output()
            .unwrap();
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(
            status["hooks_failed"],
            serde_json::json!([hook]),
            "{status}"
        );

        // The log said which hook and what is not reported.
        assert!(
            logs.iter().any(|l| l.contains("hook unavailable")
                && l.contains(hook)
                && l.contains("not reported")),
            "no warning naming {hook}: {logs:#?}"
        );
        sigterm(&child.0);
    }
}

#[test]
fn without_the_tcp_state_hook_a_connect_is_reported_and_no_close_is_invented() {
    require_root();
    let dir = tmpdir("sockops");
    let cgroup = TestCgroup::new("no-sockops");
    let output = dir.join("events.jsonl");
    let (child, _logs, _addr) = start_refusing(&cgroup, &output, "sockops");
    let (server, done) = tcp_server("127.0.0.1:0", Script::ReadToEofThenReply { reply: 7 });
    let (pid, port) = cgroup.traffic(&["tcp", &server.to_string(), "5", "7"]);
    let _ = done.recv_timeout(Duration::from_secs(10));

    let start = wait_for_event(&output, |e| e["kind"] == "agent_start");
    assert_eq!(
        start["not_reported"],
        serde_json::json!(["sockops: TCP established/close events and byte counts"]),
        "{start}"
    );
    let connect = wait_for_event(&output, |e| {
        e["kind"] == "connect" && e["pid"] == pid && e["dst_port"] == server.port()
    });
    assert_eq!(connect["dst_ip"], "127.0.0.1", "{connect}");
    let cookie = connect["cookie"].clone();
    // A connection with a close would have one by now on a kernel with the hook (the
    // capture tests wait for exactly that); without it there is none, and no byte counts.
    std::thread::sleep(Duration::from_millis(1500));
    let invented: Vec<_> = events_of(&output)
        .into_iter()
        .filter(|e| {
            (e["kind"] == "established" || e["kind"] == "close")
                && (e["cookie"] == cookie || e["src_port"] == port)
        })
        .collect();
    assert!(invented.is_empty(), "{invented:#?}");
    sigterm(&child.0);
}
