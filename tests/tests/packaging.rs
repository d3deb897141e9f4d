//! The packaging, checked by the tools that consume it: the Debian package built by
//! `cargo xtask package deb`, linted by lintian, installed, upgraded (conffile kept) and
//! removed by dpkg; the systemd unit verified by `systemd-analyze verify` and its
//! capability set shown to be enough to capture; the Kubernetes manifests validated against
//! the API schemas; the shipped configuration and example policies accepted by the agent.
use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
};

use sovereign_agent_tests::{
    closed_port, require_root, sigterm, stderr_lines, target_bin, wait_for_event, wait_for_log,
    Reaped, TestCgroup,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let (code, stdout, stderr) = run(cmd);
    assert_eq!(code, 0, "{shown}: {stdout}{stderr}");
    stdout
}

/// Builds the package with revision `revision` into `out`.
fn build_deb(out: &Path, revision: &str) -> PathBuf {
    let stdout = ok(Command::new("cargo")
        .current_dir(root())
        .args([
            "xtask",
            "package",
            "deb",
            "--profile",
            "dev",
            "--revision",
            revision,
            "--out",
        ])
        .arg(out));
    PathBuf::from(stdout.trim().lines().last().unwrap())
}

fn installed_version() -> Option<String> {
    let (code, stdout, _) =
        run(Command::new("dpkg-query").args(["-W", "-f=${Status} ${Version}", "sovereign-agent"]));
    (code == 0 && stdout.starts_with("install ok installed"))
        .then(|| stdout.rsplit(' ').next().unwrap().to_string())
}

fn mode(path: &str) -> (u32, u32, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.permissions().mode() & 0o7777, m.uid(), m.gid())
}

#[test]
fn the_debian_package_installs_upgrades_keeps_its_conffile_and_purges_cleanly() {
    require_root();
    let out = std::env::temp_dir().join(format!("sa-deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    // A leftover from an interrupted run must not decide the outcome.
    let _ = run(Command::new("dpkg").args(["-P", "sovereign-agent"]));

    let first = build_deb(&out, "1");
    let second = build_deb(&out, "2");
    assert!(
        first.ends_with("sovereign-agent_0.1.0-1_amd64.deb"),
        "{first:?}"
    );

    // Debian's own checker: no errors (the remaining warnings are listed in
    // packaging/README.md).
    let (_, lint, lint_err) = run(Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(&first));
    assert!(
        !lint.lines().any(|l| l.starts_with("E:")),
        "lintian errors:\n{lint}{lint_err}"
    );

    ok(Command::new("dpkg").arg("-i").arg(&first));
    assert_eq!(installed_version().as_deref(), Some("0.1.0-1"));
    let files = ok(Command::new("dpkg").args(["-L", "sovereign-agent"]));
    for f in [
        "/usr/bin/sovereign-agent",
        "/usr/bin/sovereign-collector",
        "/lib/systemd/system/sovereign-agent.service",
        "/lib/systemd/system/sovereign-agent-report.service",
        "/lib/systemd/system/sovereign-agent-report.timer",
        "/etc/sovereign-agent/agent.toml",
        "/usr/share/sovereign-agent/examples/policies/eu-only-llm.toml",
        "/usr/share/doc/sovereign-agent/copyright",
    ] {
        assert!(
            files.lines().any(|l| l == f),
            "{f} not in the package:\n{files}"
        );
    }
    assert_eq!(mode("/usr/bin/sovereign-agent"), (0o755, 0, 0));
    assert_eq!(mode("/usr/bin/sovereign-collector"), (0o755, 0, 0));
    assert_eq!(
        mode("/lib/systemd/system/sovereign-agent.service"),
        (0o644, 0, 0)
    );
    assert_eq!(mode("/etc/sovereign-agent/agent.toml"), (0o644, 0, 0));
    let conffiles =
        std::fs::read_to_string("/var/lib/dpkg/info/sovereign-agent.conffiles").unwrap();
    assert_eq!(conffiles, "/etc/sovereign-agent/agent.toml\n");

    // The installed binary runs, and accepts the configuration and the policies it ships.
    let version = ok(Command::new("/usr/bin/sovereign-agent").arg("--version"));
    assert_eq!(version.trim(), "sovereign-agent 0.1.0");
    ok(Command::new("/usr/bin/sovereign-agent").args([
        "config",
        "check",
        "/etc/sovereign-agent/agent.toml",
    ]));
    let datasets = root().join("testdata/cloud-ranges");
    for entry in std::fs::read_dir("/usr/share/sovereign-agent/examples/policies").unwrap() {
        ok(Command::new("/usr/bin/sovereign-agent")
            .args(["policy", "check"])
            .arg(entry.unwrap().path())
            .arg("--datasets")
            .arg(&datasets));
    }

    // systemd's own verification of the installed unit: no error and no warning.
    let (code, stdout, stderr) = run(Command::new("systemd-analyze")
        .args(["verify", "/lib/systemd/system/sovereign-agent.service"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stderr.trim(), "", "systemd-analyze verify warnings");
    // The weekly report: its timer and service (shipped, not enabled).
    let (code, stdout, stderr) = run(Command::new("systemd-analyze").args([
        "verify",
        "/lib/systemd/system/sovereign-agent-report.timer",
        "/lib/systemd/system/sovereign-agent-report.service",
    ]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stderr.trim(), "", "systemd-analyze verify warnings");
    // Enabled (for the next boot) even where systemd does not run now.
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/sovereign-agent.service").exists()
    );

    // Upgrade: an operator's change to the conffile survives.
    let config = "/etc/sovereign-agent/agent.toml";
    let changed = std::fs::read_to_string(config)
        .unwrap()
        .replace("level = \"info\"", "level = \"debug\"");
    std::fs::write(config, &changed).unwrap();
    ok(Command::new("dpkg").arg("-i").arg(&second));
    assert_eq!(installed_version().as_deref(), Some("0.1.0-2"));
    assert_eq!(std::fs::read_to_string(config).unwrap(), changed);

    // Remove keeps the conffile (dpkg's rule); purge leaves nothing of the package.
    ok(Command::new("dpkg").args(["-r", "sovereign-agent"]));
    assert!(!Path::new("/usr/bin/sovereign-agent").exists());
    assert!(!Path::new("/lib/systemd/system/sovereign-agent.service").exists());
    assert!(Path::new(config).exists());
    ok(Command::new("dpkg").args(["-P", "sovereign-agent"]));
    assert_eq!(installed_version(), None);
    for f in files.lines().filter(|f| f.contains("sovereign")) {
        assert!(!Path::new(f).exists(), "{f} left after purge");
    }
    for f in [
        "/etc/sovereign-agent",
        "/etc/systemd/system/multi-user.target.wants/sovereign-agent.service",
        "/etc/systemd/system/sovereign-agent.service",
    ] {
        assert!(
            std::fs::symlink_metadata(f).is_err(),
            "{f} left after purge"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// The unit's `CapabilityBoundingSet` is enough: the agent, given only those capabilities
/// (as systemd would), attaches and records a flow with its executable.
#[test]
fn the_units_capability_set_is_enough_to_capture() {
    require_root();
    let unit =
        std::fs::read_to_string(root().join("packaging/systemd/sovereign-agent.service")).unwrap();
    let caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect();
    assert!(
        !unit.contains("CAP_SYS_ADMIN"),
        "the unit must not need CAP_SYS_ADMIN"
    );
    let dir = std::env::temp_dir().join(format!("sa-caps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cgroup = TestCgroup::new("caps");
    let output = dir.join("events.jsonl");
    let mut child = Command::new("setpriv")
        .arg(format!("--bounding-set=-all,{}", caps.join(",")))
        .arg("--inh-caps=-all")
        .arg(target_bin("sovereign-agent"))
        .args([
            "run",
            "--log-format",
            "json",
            "--metrics-listen",
            "127.0.0.1:0",
            "--cgroup",
        ])
        .arg(cgroup.path())
        .arg("--output")
        .arg(&output)
        .arg("--journal")
        .arg(dir.join("journal"))
        .arg("--api-socket")
        .arg(dir.join("api.sock"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let logs = stderr_lines(&mut child);
    let child = Reaped(child);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.0.id())).unwrap();
    let eff = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    assert_ne!(
        eff.split_whitespace().nth(1),
        Some("000001ffffffffff"),
        "not restricted"
    );
    assert!(
        wait_for_log(&logs, |l| l.contains("\"capturing\"")),
        "did not attach with {caps:?}"
    );
    let refused = closed_port("127.0.0.1:0");
    let (pid, _) = cgroup.traffic(&["refused", &refused.to_string()]);
    let e = wait_for_event(&output, |e| e["kind"] == "connect" && e["pid"] == pid);
    assert_eq!(e["dst_port"], refused.port());
    assert!(
        e["exe"]
            .as_str()
            .is_some_and(|x| x.ends_with("/sa-traffic")),
        "{e}"
    );
    sigterm(&child.0);
}

/// Every manifest validates against the Kubernetes API schemas (strict: no unknown field)
/// with a real validator, for the oldest and newest Kubernetes versions we support.
#[test]
fn the_kubernetes_manifests_validate_against_the_api_schemas() {
    let validator = root().join("target/python-grpc/bin/kubernetes-validate");
    assert!(
        validator.exists(),
        "run `cargo xtask setup` (installs kubernetes-validate)"
    );
    let dir = root().join("packaging/kubernetes");
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    manifests.sort();
    let names: Vec<String> = manifests
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "namespace.yaml",
        "serviceaccount.yaml",
        "configmap.yaml",
        "daemonset.yaml",
        "service.yaml",
        "report-cronjob.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing: {names:?}"
        );
    }
    for version in ["1.31.0", "1.37.0"] {
        let (code, stdout, stderr) = run(Command::new(&validator)
            .args(["--strict", "-k", version])
            .args(&manifests));
        assert_eq!(code, 0, "Kubernetes {version}:\n{stdout}{stderr}");
        assert!(
            !stdout.contains("WARN") && !stdout.contains("ERROR"),
            "{stdout}"
        );
    }
    // The ConfigMap's agent.toml and policy.toml are accepted by the agent itself.
    let configmap = std::fs::read_to_string(dir.join("configmap.yaml")).unwrap();
    let tmp = std::env::temp_dir().join(format!("sa-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for (key, check) in [("agent.toml", "config"), ("policy.toml", "policy")] {
        let body = yaml_block(&configmap, key);
        let path = tmp.join(key);
        std::fs::write(&path, body).unwrap();
        let mut cmd = Command::new(target_bin("sovereign-agent"));
        cmd.args([check, "check"]).arg(&path);
        if check == "config" {
            // The pod's paths do not exist here; the keys and values are what is checked.
            cmd.env("SOVEREIGN_POLICY", "")
                .env("SOVEREIGN_DATASETS", "");
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with("policy") && !l.starts_with("datasets"))
                .collect::<Vec<_>>()
                .join("\n");
            std::fs::write(&path, text).unwrap();
        }
        ok(&mut cmd);
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The literal block `key: |` of a ConfigMap, unindented.
fn yaml_block(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("{key} not in the ConfigMap"));
    let indent = header.len() - header.trim_start().len() + 2;
    let mut out = String::new();
    for l in lines {
        if !l.trim().is_empty() && l.len() - l.trim_start().len() < indent {
            break;
        }
        out.push_str(l.get(indent..).unwrap_or(""));
        out.push('\n');
    }
    out
}
