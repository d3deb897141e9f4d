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
/// turn; naming: the cgroup_skb
/// programs with a real DNS server and TLS clients; existing: sock_diag at start; identity:
/// the process tracepoints; journal: crash safety; name_attacks: forged names, in user and
/// network namespaces). `flood` is a load test calibrated to native speed (a million
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
];

/// Modules the guest loads, with what they depend on: the 9p root over virtio; veth for the
/// tests' network namespaces; and the socket-diagnostics modules the agent's scan of open
/// connections uses (a Debian system loads those on first use; the guest has no modprobe).
/// Those built into a kernel are skipped.
const MODULES: &[&str] = &[
    "9p",
    "9pnet_virtio",
    "virtio_pci",
    "veth",
    "inet_diag",
    "tcp_diag",
    "udp_diag",
];

/// Marker lines on the guest's console.
const MARK: &str = "@@vmtest";

pub struct Options {
    /// `6.1`, `host`, a kernel package (.deb) or a directory it was extracted into.
    pub kernel: String,
    pub suites: Vec<String>,
    /// Arguments for every test executable (e.g. a name filter).
    pub test_args: Vec<String>,
    /// The whole run, boot included.
    pub timeout: Duration,
}

/// One suite's outcome: each test's result, and the suite's exit code and time.
#[derive(Default)]
struct Suite {
    tests: Vec<(String, String)>,
    rc: Option<i32>,
    seconds: u64,
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
        let kernel = Kernel::resolve(root, &opts.kernel)?;
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
        write_initramfs(&kernel, &script, &keep, &initramfs)?;
        let label = format!("{} ({})", kernel.release, kernel.package);
        eprintln!("xtask: vm-test on {label}: booting a qemu guest");
        (
            label,
            run_streaming(&mut qemu(&kernel, &initramfs), &dir, opts.timeout)?,
        )
    };
    report(&label, &console, &chosen)
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

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn uname_r() -> Result<String> {
    let out = Command::new("uname").arg("-r").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A kernel to boot: its image and its modules directory.
struct Kernel {
    package: String,
    release: String,
    vmlinuz: PathBuf,
    modules: PathBuf,
}

impl Kernel {
    fn resolve(root: &Path, choice: &str) -> Result<Kernel> {
        let cache = root.join("target/vm/kernels");
        std::fs::create_dir_all(&cache)?;
        let dir = if choice == "6.1" {
            let package = debian_61_package()?;
            let dir = cache.join(&package);
            if !dir.join("boot").is_dir() {
                let deb = download(&package, &cache)?;
                extract(&deb, &dir)?;
            }
            dir
        } else {
            let path = PathBuf::from(choice);
            if path.is_dir() {
                path
            } else if path.extension().is_some_and(|e| e == "deb") {
                let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                let dir = cache.join(stem.as_ref());
                if !dir.join("boot").is_dir() {
                    extract(&path, &dir)?;
                }
                dir
            } else {
                bail!(
                    "--kernel {choice}: expected 6.1, host, a kernel package (.deb) or the \
                     directory one was extracted into"
                );
            }
        };
        Self::from_dir(&dir)
    }

    /// An extracted kernel package: boot/vmlinuz-RELEASE and lib/modules/RELEASE.
    fn from_dir(dir: &Path) -> Result<Kernel> {
        let boot = dir.join("boot");
        let vmlinuz = std::fs::read_dir(&boot)
            .with_context(|| format!("{}: no boot/ directory", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
            .with_context(|| format!("{}: no vmlinuz-*", boot.display()))?;
        let release = vmlinuz
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .trim_start_matches("vmlinuz-")
            .to_string();
        let modules = dir.join("lib/modules").join(&release);
        if !modules.is_dir() {
            bail!("{}: missing (the kernel's modules)", modules.display());
        }
        Ok(Kernel {
            package: dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            release,
            vmlinuz,
            modules,
        })
    }
}

/// The Debian 6.1 LTS kernel package that `linux-image-amd64` points at (Debian 12), e.g.
/// linux-image-6.1.0-57-amd64. The `-amd64` flavour, not `-cloud-amd64`: the cloud kernel has
/// no 9p, which the guest's root needs.
fn debian_61_package() -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()
        .context("apt-cache (the 6.1 kernel comes from Debian's archive)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let package = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string);
    match package {
        Some(p) if p.starts_with("linux-image-6.1.") => Ok(p),
        other => bail!(
            "this machine's apt sources do not offer Debian's 6.1 kernel (linux-image-amd64 \
             depends on {other:?}); download a linux-image-6.1.0-*-amd64 package and pass \
             --kernel PATH.deb"
        ),
    }
}

fn download(package: &str, dir: &Path) -> Result<PathBuf> {
    eprintln!("xtask: apt-get download {package}");
    // apt downloads as its own user (_apt) into a directory that user may write.
    let staging = std::env::temp_dir().join(format!("sa-vm-download-{}", std::process::id()));
    std::fs::create_dir_all(&staging)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o777))?;
    let status = Command::new("apt-get")
        .args(["download", "-q", package])
        .current_dir(&staging)
        .status()
        .context("apt-get")?;
    if !status.success() {
        bail!("apt-get download {package} failed ({status})");
    }
    for entry in std::fs::read_dir(&staging)? {
        let path = entry?.path();
        let to = dir.join(path.file_name().unwrap_or_default());
        std::fs::copy(&path, &to)?;
    }
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(&format!("{package}_")) && n.ends_with(".deb")
            })
        })
        .with_context(|| format!("apt-get download {package} left no .deb"))
}

fn extract(deb: &Path, dir: &Path) -> Result<()> {
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(&partial)
        .status()
        .context("dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb -x {} failed ({status})", deb.display());
    }
    std::fs::rename(&partial, dir)?;
    Ok(())
}

/// The modules to load, dependencies first, as paths under the kernel's modules directory.
fn module_load_order(kernel: &Kernel) -> Result<Vec<PathBuf>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![kernel.modules.join("kernel")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                if let Some(stem) = name.strip_suffix(".ko") {
                    files.insert(stem.replace('-', "_"), path.clone());
                }
            }
        }
    }
    let builtin = std::fs::read_to_string(kernel.modules.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko"))
        .map(|m| m.replace('-', "_"))
        .collect::<std::collections::HashSet<_>>();
    let mut order = Vec::new();
    fn visit(
        name: &str,
        files: &BTreeMap<String, PathBuf>,
        builtin: &std::collections::HashSet<String>,
        order: &mut Vec<PathBuf>,
    ) -> Result<()> {
        if builtin.contains(name) {
            return Ok(());
        }
        let path = files.get(name).with_context(|| {
            format!("the kernel has no module {name} (compressed modules are not supported)")
        })?;
        if order.contains(path) {
            return Ok(());
        }
        for dep in module_depends(path)? {
            visit(&dep, files, builtin, order)?;
        }
        order.push(path.clone());
        Ok(())
    }
    for m in MODULES {
        visit(m, &files, &builtin, &mut order)?;
    }
    Ok(order)
}

/// The `depends=` entry of a module's .modinfo section.
fn module_depends(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path)?;
    let key = b"\0depends=";
    let Some(at) = bytes.windows(key.len()).position(|w| w == key) else {
        return Ok(Vec::new());
    };
    let rest = &bytes[at + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    Ok(String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect())
}

/// The guest's first program: mount the host's file system and run the script in it.
fn init_script(modules: &[String], keep: &[PathBuf]) -> String {
    // Directories the tests run from (the workspace, the target directory) stay visible when
    // they lie under a directory that gets a fresh tmpfs (a clone in /tmp, say): held by a
    // bind mount meanwhile, then moved back into place.
    let (mut hold, mut restore) = (String::new(), String::new());
    for (i, dir) in keep.iter().enumerate() {
        let dir = shell_quote(&dir.display().to_string());
        hold += &format!("mkdir -p /hold/{i}; mount --bind $R{dir} /hold/{i}\n");
        restore += &format!(
            "if [ -d $R{dir}/. ] && [ \"$(ls -A $R{dir})\" ]; then umount /hold/{i}; \
             else mkdir -p $R{dir}; mount --move /hold/{i} $R{dir}; fi\n"
        );
    }
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do insmod /modules/$m || echo "{MARK} insmod $m failed"; done
R=/newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot $R \
  || echo "{MARK} cannot mount the host's file system"
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
{hold}for d in tmp run var/tmp; do mount -t tmpfs tmpfs $R/$d; done
{restore}mount -t cgroup2 cgroup2 $R/sys/fs/cgroup
mount -t bpf bpf $R/sys/fs/bpf
mount -t tracefs tracefs $R/sys/kernel/tracing
mount -t debugfs debugfs $R/sys/kernel/debug
cp /run-tests $R/run/vmtest-run-tests
# The host's file system becomes the root of the mount namespace (as switch_root does), not a
# chroot: user namespaces, which the name-attack tests create, are refused inside a chroot.
cd $R
mount --move . /
exec chroot . /bin/sh -c 'ip link set lo up
export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
sh /run/vmtest-run-tests 2>&1
echo o > /proc/sysrq-trigger'
"#,
        modules = modules.join(" "),
    )
}

/// busybox, the modules and the scripts, as a newc cpio archive.
fn write_initramfs(kernel: &Kernel, script: &str, keep: &[PathBuf], out: &Path) -> Result<()> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("no busybox (Debian package busybox-static)")?;
    let mut cpio = Cpio::default();
    for dir in ["bin", "dev", "proc", "sys", "modules", "newroot"] {
        cpio.dir(dir);
    }
    cpio.file("bin/busybox", &std::fs::read(&busybox)?, 0o755);
    let mut names = Vec::new();
    for path in module_load_order(kernel)? {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        cpio.file(&format!("modules/{name}"), &std::fs::read(&path)?, 0o644);
        names.push(name);
    }
    cpio.file("init", init_script(&names, keep).as_bytes(), 0o755);
    cpio.file("run-tests", script.as_bytes(), 0o644);
    std::fs::write(out, cpio.finish()).with_context(|| format!("writing {}", out.display()))
}

/// The "newc" cpio format the kernel unpacks an initramfs from.
#[derive(Default)]
struct Cpio {
    bytes: Vec<u8>,
    inode: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.inode += 1;
        let header = format!(
            "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            self.inode,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            data.len(),
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            name.len() + 1,
            0, // check
        );
        self.bytes.extend_from_slice(header.as_bytes());
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, &[]);
    }

    fn file(&mut self, name: &str, data: &[u8], perm: u32) {
        self.entry(name, 0o100_000 | perm, data);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.bytes
    }
}

fn qemu(kernel: &Kernel, initramfs: &Path) -> Command {
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

/// Prints what passed and failed, per suite, and fails if anything did.
fn report(label: &str, console: &str, chosen: &[(String, PathBuf)]) -> Result<()> {
    let mut suites: BTreeMap<String, Suite> = BTreeMap::new();
    let mut current: Option<String> = None;
    let (mut hooks, mut kernel, mut done) = (None, None, false);
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    for line in console.lines() {
        // A marker may follow the firmware's escape sequences on the console's first line.
        if let Some(rest) = line.find(MARK).map(|at| &line[at + MARK.len()..]) {
            let rest = rest.trim();
            if let Some(name) = rest.strip_prefix("begin ") {
                current = Some(name.to_string());
                suites.entry(name.to_string()).or_default();
            } else if let Some(rest) = rest.strip_prefix("end ") {
                let mut words = rest.split_whitespace();
                let name = words.next().unwrap_or_default().to_string();
                let suite = suites.entry(name).or_default();
                for w in words {
                    if let Some(rc) = w.strip_prefix("rc=") {
                        suite.rc = rc.parse().ok();
                    } else if let Some(s) = w.strip_prefix("seconds=") {
                        suite.seconds = s.parse().unwrap_or(0);
                    }
                }
                current = None;
            } else if let Some(json) = rest.strip_prefix("hooks") {
                hooks = serde_json::from_str::<serde_json::Value>(json.trim()).ok();
            } else if let Some(k) = rest.strip_prefix("kernel ") {
                kernel = Some(k.to_string());
            } else if rest == "done" {
                done = true;
            } else if let Some(log) = rest.strip_prefix("agent-log ") {
                warnings.push(log.to_string());
            } else {
                problems.push(rest.to_string());
            }
        } else if let (Some(name), Some(test)) = (&current, line.strip_prefix("test ")) {
            if let Some((test, result)) = test.rsplit_once(" ... ") {
                let suite = suites.entry(name.clone()).or_default();
                suite
                    .tests
                    .push((test.to_string(), result.trim().to_string()));
            }
        }
    }
    println!("## vm-test: {label}");
    println!();
    println!("Kernel: {}", kernel.as_deref().unwrap_or("(did not say)"));
    for p in &problems {
        println!("- {p}");
    }
    for w in &warnings {
        println!("- the agent warned: {w}");
    }
    match &hooks {
        Some(h) => println!(
            "Hooks attached: {}\nHooks refused: {}",
            list(&h["hooks"]),
            list(&h["hooks_failed"])
        ),
        None => println!("Hooks: the agent did not start (see the console log)"),
    }
    println!();
    println!("| suite | passed | failed | ignored | seconds |");
    println!("|---|---|---|---|---|");
    let mut failures = Vec::new();
    for (name, _) in chosen {
        let suite = suites.remove(name).unwrap_or_default();
        let count = |r: &str| suite.tests.iter().filter(|(_, x)| x == r).count();
        let (passed, failed, ignored) = (count("ok"), count("FAILED"), count("ignored"));
        println!(
            "| {name} | {passed} | {failed} | {ignored} | {} |",
            suite.seconds
        );
        for (test, result) in &suite.tests {
            if result != "ok" && result != "ignored" {
                failures.push(format!("{name}::{test} {result}"));
            }
        }
        match suite.rc {
            Some(0) if passed > 0 || failed > 0 => {}
            Some(0) => failures.push(format!("{name}: no test ran")),
            Some(rc) if failed == 0 => failures.push(format!("{name}: exited with {rc}")),
            Some(_) => {}
            None => failures.push(format!("{name}: did not finish")),
        }
    }
    println!();
    if !done {
        failures.push("the run did not finish (see the console log)".into());
    }
    if hooks
        .as_ref()
        .is_some_and(|h| list(&h["hooks_failed"]) != "none")
    {
        println!("(a refused hook is reported, not failed: the agent degrades without it)");
    }
    if failures.is_empty() {
        println!("vm-test: {label}: all passed");
        Ok(())
    } else {
        for f in &failures {
            println!("FAILED: {f}");
        }
        bail!("vm-test: {label}: {} failure(s)", failures.len())
    }
}

fn list(v: &serde_json::Value) -> String {
    let items: Vec<&str> = v
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}
