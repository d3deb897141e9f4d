//! `sovereign-agent policy check|explain` on the shipped example policies and the real
//! provider files.
use std::path::{Path, PathBuf};

use sovereign_agent_tests::run_agent;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

fn agent(args: &[&str]) -> (i32, String, String) {
    let datasets = repo("../shared/data/cloud-ranges");
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    all.extend(["--datasets".as_ref(), datasets.as_os_str()]);
    run_agent(all)
}

#[test]
fn check_lists_the_datasets_with_their_versions() {
    for example in ["eu-only-llm", "crm-sync-eu", "monitor-ai-inventory"] {
        let file = repo(&format!("examples/policies/{example}.toml"));
        let (code, stdout, stderr) = agent(&["policy", "check", file.to_str().unwrap()]);
        assert_eq!(code, 0, "{example}: {stderr}");
        assert!(stdout.contains("valid"), "{stdout}");
        assert!(stdout.contains("syncToken 1753388594"), "{stdout}");
        assert!(stdout.contains("changeNumber 363"), "{stdout}");
    }
}

#[test]
fn explain_prints_the_reasoning_and_exits_2_for_a_violation() {
    let file = repo("examples/policies/eu-only-llm.toml");
    let f = file.to_str().unwrap();
    // 3.5.140.0/22 is AWS ap-northeast-2 (AMAZON, S3 and EC2 entries) in the July 2025 file.
    let (code, stdout, stderr) = agent(&[
        "policy",
        "explain",
        f,
        "--dst",
        "3.5.140.2:443",
        "--exe",
        "/opt/llm/bin/server",
        "--cgroup",
        "/system.slice/llm-gpu.service",
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stdout.contains("verdict   violation (severity critical)"),
        "{stdout}"
    );
    assert!(stdout.contains("rule      llm-servers"), "{stdout}");
    assert!(stdout.contains("AWS ap-northeast-2/EC2"), "{stdout}");
    assert!(stdout.contains("no_name:"), "{stdout}");

    // Mistral serves from the EU (catalogue): allowed for the LLM servers.
    let (code, stdout, _) = agent(&[
        "policy",
        "explain",
        f,
        "--dst",
        "203.0.113.5",
        "--name",
        "api.mistral.ai",
        "--exe",
        "/opt/llm/bin/server",
        "--cgroup",
        "/system.slice/llm-gpu.service",
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["zones"], serde_json::json!(["eu-ai"]));
    assert!(v["evidence"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("api.mistral.ai"));

    // Any other process calling OpenAI: the second rule's deny.
    let (code, stdout, _) = agent(&[
        "policy",
        "explain",
        f,
        "--dst",
        "203.0.113.5",
        "--name",
        "api.openai.com",
        "--exe",
        "/usr/bin/python3",
        "--comm",
        "python3",
    ]);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.contains("rule      everything-else-no-foreign-ai"),
        "{stdout}"
    );

    let (code, _, stderr) = agent(&["policy", "explain", f, "--dst", "not-an-ip"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--dst \"not-an-ip\""), "{stderr}");
}
