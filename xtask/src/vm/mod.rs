//! cargo xtask vm-test: the root-only integration tests on another kernel, in a qemu guest.
//!
//! The guest boots a Debian kernel package (fetched with `apt-get download`, cached under
//! target/vm/) with a small initramfs of our own: busybox, the kernel modules that a 9p root
//! and the tests need, and an init script that mounts this machine's file system read-only
//! over 9p, gives it fresh /tmp, /run, cgroup2, bpffs and tracefs, and runs the chosen test
//! executables of the `tests` crate (built here, at the same paths). Results come back on the
//! serial console, one marker line per suite; the whole console is kept in
//! target/vm/<kernel>/console.log. No network leaves the guest: the tests use loopback and
//! network namespaces of their own.
//!
//! The guest runs under TCG (no KVM on these machines; SOVEREIGN_VM_ACCEL=kvm where there is):
//! about five seconds to boot, then the tests at a fraction of native speed.
//!
//! `--kernel host` runs the same suites and the same hook probe on this machine's kernel,
//! without a guest, and reports them the same way.
//!
//! kernel.rs fetches a kernel package and orders its modules; initramfs.rs writes what the
//! guest boots into; report.rs reads the console back into a per-suite report.
mod initramfs;
mod kernel;
mod report;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// The suites run by default: every hook and kernel-facing path (capture: the connect,
/// sendmsg, sockops and release programs and the ring buffers; degraded: each hook refused in
/// turn; naming: the cgroup_skb programs with a real DNS server and TLS clients; existing:
/// sock_diag at start; identity: the process tracepoints; journal: crash safety;
/// name_attacks: forged names, in user and network namespaces; enforce: connect and sendmsg
/// refusing, the ancestor-cgroup helper and LPM tries). `flood` is a load test calibrated to native speed (a million
/// destinations in seconds), which emulation cannot reach; the rest (API, collector,
/// container, packaging, operations) exercise user space and outside tools, not the kernel.
pub const DEFAULT_SUITES: &[&str] = &[
    "capture",
    "degraded",
    "naming",
    "existing",
    "identity",
    "journal",
    "name_attacks",
    "enforce",
];

/// Marker lines on the guest's console.
pub(crate) const MARK: &str = "@@vmtest";

pub struct Options {
    /// `6.1`, `host`, a kernel package (.deb) or a directory it was extracted into.
    pub kernel: String,
    pub suites: Vec<String>,
    /// Arguments for every test executable (e.g. a name filter).
    pub test_args: Vec<String>,
    /// The whole run, boot included.
    pub timeout: Duration,
}

pub fn run(root: &Path, opts: &Options) -> Result<()> {
    let executables = build(root)?;
    let mut chosen = Vec::new();
    for name in &opts.suites {
        let exe = executables.get(name).with_context(|| {
            format!(
                "no test suite {name:?} in the tests crate (there are: {})",
                executables.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        chosen.push((name.clone(), exe.clone()));
    }
    let script = guest_script(root, &chosen, &opts.test_args);
    let (label, console) = if opts.kernel == "host" {
        let label = format!("host {}", uname_r()?);
        eprintln!("xtask: vm-test on this machine's kernel ({label}), no guest");
        let dir = root.join("target/vm/host");
        std::fs::create_dir_all(&dir)?;
        (
            label,
            run_streaming(
                Command::new("sh").arg("-c").arg(&script),
                &dir,
                opts.timeout,
            )?,
        )
    } else {
        let kernel = kernel::Kernel::resolve(root, &opts.kernel)?;
        let dir = root.join("target/vm").join(&kernel.release);
        std::fs::create_dir_all(&dir)?;
        let initramfs = dir.join("initramfs.cpio");
        // The workspace and every directory a test executable lives in.
        let mut keep = vec![root.to_path_buf()];
        for (_, exe) in &chosen {
            if let Some(dir) = exe.parent() {
                if !keep.iter().any(|k| dir.starts_with(k)) {
                    keep.push(dir.to_path_buf());
                }
            }
        }
        initramfs::write(&kernel, &script, &keep, &initramfs)?;
        let label = format!("{} ({})", kernel.release, kernel.package);
        eprintln!("xtask: vm-test on {label}: booting a qemu guest");
        (
            label,
            run_streaming(&mut qemu(&kernel, &initramfs), &dir, opts.timeout)?,
        )
    };
    report::print(&label, &console, &chosen)
}

/// Builds the binaries and the `tests` crate's executables; returns each suite's executable.
fn build(root: &Path) -> Result<BTreeMap<String, PathBuf>> {
    crate::cargo(&[&["build"], crate::ALL_HOST_CRATES, &["--bins"]].concat())?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(root)
        .args([
            "test",
            "--package",
            "sovereign-agent-tests",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the integration tests failed");
    }
    let mut suites = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(m) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_test = m["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "test"));
        if m["reason"] == "compiler-artifact" && is_test {
            if let (Some(name), Some(exe)) =
                (m["target"]["name"].as_str(), m["executable"].as_str())
            {
                suites.insert(name.to_string(), PathBuf::from(exe));
            }
        }
    }
    Ok(suites)
}

/// What the guest (or this machine, with `--kernel host`) runs, as a shell script: a probe
/// of which hooks attach, then each suite, between marker lines.
fn guest_script(root: &Path, suites: &[(String, PathBuf)], test_args: &[String]) -> String {
    let agent = root.join("target/debug/sovereign-agent");
    let args: Vec<String> = test_args.iter().map(|a| shell_quote(a)).collect();
    let mut s = format!(
        r#"cd {root}
echo "{MARK} kernel $(uname -r)"
# Which hooks attach: the agent's own start event says so.
probe=$(mktemp -d)
cg=$(awk '{{ for (i = 7; i < NF; i++) if ($i == "-") {{ if ($(i + 1) == "cgroup2") {{ print $5; exit }} break }} }}' /proc/self/mountinfo)/sa-vmtest-probe-$$
mkdir -p "$cg"
{agent} run --cgroup "$cg" --output "$probe/events.jsonl" --journal "$probe/journal" \
  --no-api --no-metrics --log-format json 2>"$probe/log" &
agent=$!
i=0
while [ $i -lt 300 ] && ! grep -q capturing "$probe/log" && kill -0 $agent 2>/dev/null; do
  sleep 1; i=$((i + 1))
done
kill -TERM $agent 2>/dev/null; wait $agent
echo "{MARK} hooks $(grep -m1 '"agent_start"' "$probe/events.jsonl")"
grep -i '"level":"(warn|error)"' -E "$probe/log" | sed 's/^/{MARK} agent-log /'
rmdir "$cg"; rm -rf "$probe"
"#,
        root = shell_quote(&root.display().to_string()),
        agent = shell_quote(&agent.display().to_string()),
    );
    for (name, exe) in suites {
        s += &format!(
            r#"echo "{MARK} begin {name}"
start=$(date +%s)
{exe} {args} 2>&1
echo "{MARK} end {name} rc=$? seconds=$(( $(date +%s) - start ))"
"#,
            exe = shell_quote(&exe.display().to_string()),
            args = ["--color", "never"]
                .iter()
                .map(ToString::to_string)
                .chain(args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    s += &format!("echo \"{MARK} done\"\n");
    s
}

pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn uname_r() -> Result<String> {
    let out = Command::new("uname").arg("-r").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn qemu(kernel: &kernel::Kernel, initramfs: &Path) -> Command {
    let accel = std::env::var("SOVEREIGN_VM_ACCEL").unwrap_or_else(|_| "tcg".into());
    // Multi-threaded TCG (a host thread per guest CPU) is not safe for code the guest
    // patches while another CPU runs it: the kernel's jump labels, flipped when a tracepoint
    // is attached, left a CPU spinning in a half-patched `jmp` (a soft lockup in
    // syscall_trace_enter, in three runs of about a dozen). One host thread for both guest CPUs
    // keeps the guest SMP and the patching coherent.
    let accel_arg = if accel == "tcg" {
        "tcg,thread=single".to_string()
    } else {
        accel.clone()
    };
    let mut c = Command::new("qemu-system-x86_64");
    c.args(["-accel", &accel_arg])
        .args(["-cpu", if accel == "kvm" { "host" } else { "max" }])
        .args(["-smp", "2", "-m", "4G", "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyS0 panic=-1 quiet loglevel=5"])
        .args([
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        ]);
    c
}

/// Runs `command`, keeping its output in `dir`/console.log and showing progress; returns the
/// output. Killed when `timeout` is over.
fn run_streaming(command: &mut Command, dir: &Path, timeout: Duration) -> Result<String> {
    let log_path = dir.join("console.log");
    let mut log = std::fs::File::create(&log_path)?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    let pid = child.id();
    let deadline = Instant::now() + timeout;
    let watchdog = std::thread::spawn(move || {
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return false;
            }
        }
        let _ = Command::new("kill").arg(pid.to_string()).status();
        true
    });
    let mut console = String::new();
    let mut reader = BufReader::new(child.stdout.take().expect("piped"));
    let mut raw = Vec::new();
    while reader.read_until(b'\n', &mut raw)? > 0 {
        log.write_all(&raw)?;
        let line = String::from_utf8_lossy(&raw).replace('\r', "");
        if line.starts_with(MARK) || line.starts_with("test ") {
            eprint!("vm: {line}");
        }
        console += &line;
        raw.clear();
    }
    child.wait()?;
    if watchdog.join().unwrap_or(false) {
        bail!(
            "vm-test: stopped after {} s (the console is in {})",
            timeout.as_secs(),
            log_path.display()
        );
    }
    Ok(console)
}
