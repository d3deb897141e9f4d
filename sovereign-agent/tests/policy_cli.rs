//! `sovereign-agent policy check|explain` on the shipped example policies and the real
//! provider files.
use std::path::{Path, PathBuf};

mod common;
use common::run_agent;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

fn agent(args: &[&str]) -> (i32, String, String) {
    let datasets = repo("testdata/cloud-ranges");
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
        assert!(!stderr.contains("warning"), "{example}: {stderr}");
        assert!(stdout.contains("valid"), "{stdout}");
        assert!(stdout.contains("syncToken 1753388594"), "{stdout}");
        assert!(stdout.contains("changeNumber 363"), "{stdout}");
    }
}

/// The README's example: the LLM server talking to AWS Seoul is a violation wherever the
/// binary runs, not only inside its systemd unit.
#[test]
fn the_readme_example_is_a_violation_from_any_cgroup() {
    let file = repo("examples/policies/eu-only-llm.toml");
    for cgroup in [None, Some("/user.slice/user-1000.slice/session-4.scope")] {
        let mut args = vec![
            "policy",
            "explain",
            file.to_str().unwrap(),
            "--dst",
            "3.5.140.2:443",
            "--exe",
            "/opt/llm/bin/server",
        ];
        if let Some(c) = cgroup {
            args.extend(["--cgroup", c]);
        }
        let (code, stdout, stderr) = agent(&args);
        assert_eq!(code, 2, "{cgroup:?}: {stdout}{stderr}");
        assert!(stdout.contains("rule      llm-servers"), "{stdout}");
    }
}

/// A rule that needs two fields at once, followed by a permissive rule: `policy check` says
/// which process falls through, and how to write the alternatives.
#[test]
fn check_warns_when_a_process_can_fall_through_to_a_more_permissive_rule() {
    let dir = std::env::temp_dir().join(format!("sa-fallthrough-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("policy.toml");
    std::fs::write(
        &file,
        "[policy]\nname = \"p\"\nversion = \"1\"\ndefault = \"allow\"\n\n\
         [zones.eu]\ncidrs = [\"10.0.0.0/8\"]\n\n\
         [[rule]]\nname = \"llm\"\n\
         workload = { exe = [\"/opt/llm/**\"], cgroup = [\"/system.slice/llm-*.service\"] }\n\
         allow = [\"eu\"]\n\n\
         [[rule]]\nname = \"rest\"\ndeny = []\notherwise = \"allow\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run_agent(["policy", "check", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("warning: rule \"llm\""), "{stderr}");
    assert!(
        stderr.contains("exe /opt/llm/bin/x but another cgroup"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rule \"rest\", whose otherwise is allow"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "workload = [{ exe = [\"/opt/llm/**\"] }, { cgroup = [\"/system.slice/llm-*.service\"] }]"
        ),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
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

    // A process that exited before it was read cannot be told apart from the LLM servers:
    // `unknown_workload` (default "violation") under their rule, said as such.
    let (code, stdout, _) = agent(&["policy", "explain", f, "--dst", "10.1.2.3:443", "--exited"]);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains("rule      llm-servers"), "{stdout}");
    assert!(stdout.contains("unknown_workload:"), "{stdout}");

    let (code, _, stderr) = agent(&["policy", "explain", f, "--dst", "not-an-ip"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--dst \"not-an-ip\""), "{stderr}");
}

#[test]
fn check_refuses_an_enforce_rule_that_rests_on_names_or_process_facts() {
    let dir = tempfile::tempdir().unwrap();
    // The kernel knows the cgroup and the address, nothing else: an enforce rule that rests
    // on more is an error, never a silent downgrade to monitoring.
    for (policy, expected) in [
        (
            "[policy]\nname = \"p\"\nversion = \"1\"\ndefault = \"allow\"\n[zones.z]\ndomains = [\"crm.example.eu\"]\n\
             [[rule]]\nname = \"r\"\nmode = \"enforce\"\nallow = [\"z\"]\n",
            "zone \"z\" has domains or ai entries",
        ),
        (
            "[policy]\nname = \"p\"\nversion = \"1\"\ndefault = \"allow\"\n[zones.z]\ncidrs = [\"10.0.0.0/8\"]\n\
             [[rule]]\nname = \"r\"\nmode = \"enforce\"\nworkload = { exe = [\"/opt/llm/**\"] }\nallow = [\"z\"]\n",
            "selects by exe",
        ),
        (
            "[policy]\nname = \"p\"\nversion = \"1\"\ndefault = \"allow\"\n[zones.z]\ncidrs = [\"10.0.0.0/8\"]\n\
             [[rule]]\nname = \"llm\"\nworkload = { comm = [\"python*\"] }\nallow = [\"z\"]\n\
             [[rule]]\nname = \"r\"\nmode = \"enforce\"\nallow = [\"z\"]\n",
            "comes after rule \"llm\", which selects by comm",
        ),
        (
            "[policy]\nname = \"p\"\nversion = \"1\"\ndefault = \"allow\"\n[zones.z]\ncidrs = [\"10.0.0.0/8\"]\n\
             [[rule]]\nname = \"r\"\nmode = \"audit\"\nallow = [\"z\"]\n",
            "mode = \"audit\" is not built yet",
        ),
    ] {
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, policy).unwrap();
        let (code, _, stderr) = run_agent(["policy", "check", path.to_str().unwrap()]);
        assert_ne!(code, 0, "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(stderr.contains("policy.toml:"), "names the file: {stderr}");
    }
}
