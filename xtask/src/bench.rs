//! cargo xtask bench: whole-system overhead of the agent, measured the only honest way: the
//! same workload in the same cgroup, alternating rounds without and with the real agent
//! attached, medians compared. Figures go to docs/performance.md by hand, with this command.
//!
//! Workloads (tests/src/bin/sa-traffic.rs, release build):
//! - connect-loop: TCP connect + close to a local listener; every connection makes three
//!   events (connect, established, close), so this is the worst case per connection;
//! - connect-out: the same to a listener outside the watched cgroup (a remote peer's place);
//! - connect-paced: connect-loop at 5,000 connections a second: per-connect latency and CPU
//!   per event when the agent is not competing with a saturating workload;
//! - udp-loop: sendto() of one datagram to one destination; after the first, every datagram
//!   only increments a kernel counter;
//! - udp-distinct: one datagram to each of 200,000 new destinations: one event each, as fast
//!   as the workload can send (the sustained event rate, and whether any was lost);
//! - exec-loop: fork + exec of /bin/true, waited for: four process records each (fork,
//!   arguments, exec, exit), no flow.
//!
//! The agent runs as issue 13 asks it to be measured: journal (fsync per batch), API socket
//! and metrics endpoint on, no JSON lines output; `SOVEREIGN_BENCH_OUTPUT=jsonl` adds the JSON
//! lines output (to a file), which costs the agent about 0.6 µs per event more. Events and
//! losses are counted from the journal after each round.
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context, Result};

const ROUNDS: usize = 5;

struct Workload {
    /// What the report calls it (and `SOVEREIGN_BENCH_ONLY` selects).
    name: &'static str,
    /// sa-traffic's mode.
    mode: &'static str,
    addr: &'static str,
    n: u64,
    unit: &'static str,
    /// At most this many operations per second (`SA_TRAFFIC_RATE`); 0: as fast as it can.
    rate: u32,
}

const WORKLOADS: [Workload; 6] = [
    Workload {
        name: "connect-loop",
        mode: "connect-loop",
        addr: "127.0.0.1:0",
        n: 10_000,
        unit: "connections/s",
        rate: 0,
    },
    // The same connections to a listener outside the watched cgroup, as a host connecting out
    // to remote peers has them: only the client's side runs the agent's programs (in
    // connect-loop both ends are watched, so every packet runs them twice).
    Workload {
        name: "connect-out",
        mode: "connect-to",
        addr: "127.0.0.1:0",
        n: 10_000,
        unit: "connections/s",
        rate: 0,
    },
    // The same connections at a steady 5,000 a second (still far more than an LLM or CRM host
    // opens): the throughput is the pacing's, so what it measures is the latency a connection
    // sees and the agent's CPU per event when it is not competing for both cores.
    Workload {
        name: "connect-paced",
        mode: "connect-loop",
        addr: "127.0.0.1:0",
        n: 5_000,
        unit: "connections/s",
        rate: 5_000,
    },
    Workload {
        name: "udp-loop",
        mode: "udp-loop",
        addr: "127.0.0.1:9",
        n: 500_000,
        unit: "datagrams/s",
        rate: 0,
    },
    // Every datagram to a new destination: one `send` event each (and a `close` per
    // destination the agent keeps, when the socket closes). The sustained-rate
    // figure: events per second with zero loss.
    Workload {
        name: "udp-distinct",
        mode: "udp-distinct",
        addr: "127.0.0.1:0",
        n: 200_000,
        unit: "new destinations/s",
        rate: 0,
    },
    // Each exec makes four process records (fork, arguments, exec, exit) and no flow.
    Workload {
        name: "exec-loop",
        mode: "exec-loop",
        addr: "127.0.0.1:9",
        n: 2_000,
        unit: "execs/s",
        rate: 0,
    },
];

pub fn run(root: &Path) -> Result<()> {
    // The workload generator (sa-traffic) lives in the tests crate, outside default-members.
    crate::cargo(&[&["build", "--release"], crate::ALL_HOST_CRATES, &["--bins"]].concat())?;
    let bin = root.join("target/release");
    let cgroup = make_cgroup()?;
    // Rounds are comparable only if waking a thread costs the same in each: an idle CPU that
    // halts takes far longer to wake (here 10,000 loopback connects took 0.96-1.09 s with
    // idle halts, 0.28-0.31 s without), and a running agent keeps CPUs from idling, which made
    // rounds *with* the agent look faster than rounds without. So CPUs are kept out of idle
    // states for the whole run (PM QoS: 0 µs wake-up latency, released when the file closes).
    let _no_idle = hold_no_idle();
    // The kernel's run-time statistics cost two clock reads per program run (about 0.5 µs per
    // connection here), so they are off in the measured rounds and on only in a round of
    // their own (see `kernel_round`).
    let _stats = BpfStats::set(false);
    let result = bench_all(&bin, &cgroup);
    let _ = std::fs::remove_dir(&cgroup);
    result
}

/// `/dev/cpu_dma_latency` held at 0 (the kernel's PM QoS request lasts while it is open).
fn hold_no_idle() -> Option<std::fs::File> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/cpu_dma_latency")
        .map_err(|e| eprintln!("bench: warning: CPUs may idle between operations: {e}"))
        .ok()?;
    f.write_all(&0i32.to_ne_bytes()).ok()?;
    Some(f)
}

/// The kernel's run-time statistics of BPF programs, switched on or off and put back after.
struct BpfStats(Option<String>);

impl BpfStats {
    const SYSCTL: &'static str = "/proc/sys/kernel/bpf_stats_enabled";

    fn set(on: bool) -> Self {
        let before = std::fs::read_to_string(Self::SYSCTL).ok();
        let _ = std::fs::write(Self::SYSCTL, if on { "1" } else { "0" });
        BpfStats(before)
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(before) = &self.0 {
            let _ = std::fs::write(Self::SYSCTL, before.trim());
        }
    }
}

/// Run time (ns) and runs of every loaded program with one of the agent's program names.
fn program_stats() -> std::collections::BTreeMap<String, (u64, u64)> {
    let mut stats = std::collections::BTreeMap::new();
    let Ok(out) = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
    else {
        return stats;
    };
    let Ok(progs) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return stats;
    };
    for p in progs.as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or_default();
        if !AGENT_PROGRAMS.contains(&name) {
            continue;
        }
        let e = stats.entry(name.to_string()).or_insert((0, 0));
        e.0 += p["run_time_ns"].as_u64().unwrap_or(0);
        e.1 += p["run_cnt"].as_u64().unwrap_or(0);
    }
    stats
}

/// The agent's programs as bpftool names them (15 characters at most).
const AGENT_PROGRAMS: [&str; 13] = [
    "connect4",
    "connect6",
    "sendmsg4",
    "sendmsg6",
    "tcp_state",
    "sock_release",
    "dns_ingress",
    "names_egress",
    "process_fork",
    "execve_args",
    "execveat_args",
    "process_exec",
    "process_exit",
];

/// One round of a workload: operations per second, and for connect-loop the p50 and p99 of one
/// connect + first byte + close, in nanoseconds.
struct Round {
    rate: f64,
    p50: f64,
    p99: f64,
}

fn bench_all(bin: &Path, cgroup: &Path) -> Result<()> {
    println!(
        "| workload | without agent | with agent | ratio (spread) | p50 ratio | p99 ratio | agent CPU | events | lost | agent max RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut kernel = Vec::new();
    // SOVEREIGN_BENCH_ONLY=connect-loop,udp-loop: only these workloads (quicker A/B runs).
    let only = std::env::var("SOVEREIGN_BENCH_ONLY").ok();
    for w in WORKLOADS.iter().filter(|w| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|m| m == w.name))
    }) {
        // connect-out's listener, in the watched cgroup's parent, for all of its rounds.
        let peer = (w.mode == "connect-to")
            .then(|| Peer::start(bin, cgroup))
            .transpose()?;
        let addr = peer.as_ref().map_or(w.addr.to_string(), |p| p.addr.clone());
        let run_round = || round(bin, cgroup, w, &addr);
        let (mut base, mut with): (Vec<Round>, Vec<Round>) = (Vec::new(), Vec::new());
        let (mut cpu_s, mut events, mut rss_kb, mut lost) = (0.0, 0u64, 0u64, 0u64);
        run_round()?; // warm-up: page cache, first-use allocations
        for r in 0..ROUNDS {
            // Alternate the order, so neither side always runs right after the other.
            let agent_first = r % 2 == 1;
            if !agent_first {
                base.push(run_round()?);
            }
            let (agent, out) = start_fresh_agent(bin, cgroup)?;
            let cpu_before = cpu_seconds(agent.id())?;
            with.push(run_round()?);
            std::thread::sleep(Duration::from_millis(300)); // let it drain
            let cpu = cpu_seconds(agent.id())? - cpu_before;
            let rss = stop_agent(agent)?;
            if agent_first {
                base.push(run_round()?);
            }
            cpu_s += cpu;
            rss_kb = rss_kb.max(rss);
            let text = journal_export(bin, &out)?;
            events += text.lines().count() as u64;
            // Records the kernel could not deliver (`loss` events).
            lost += text
                .lines()
                .filter(|l| l.contains("\"kind\":\"loss\""))
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["lost"].as_u64())
                .sum::<u64>();
            eprintln!(
                "bench: {} round {}: without {:.0}, with {:.0} {}",
                w.name,
                r + 1,
                base[r].rate,
                with[r].rate,
                w.unit
            );
        }
        let ratios: Vec<f64> = base
            .iter()
            .zip(&with)
            .map(|(b, a)| a.rate / b.rate)
            .collect();
        let spread = format!(
            "{:.2}-{:.2}",
            ratios.iter().copied().fold(f64::MAX, f64::min),
            ratios.iter().copied().fold(0.0, f64::max)
        );
        let med =
            |v: &[Round], f: fn(&Round) -> f64| median(&mut v.iter().map(f).collect::<Vec<_>>());
        let (b, a) = (med(&base, |r| r.rate), med(&with, |r| r.rate));
        let latency = |f: fn(&Round) -> f64| {
            let (b, a) = (med(&base, f), med(&with, f));
            if b > 0.0 {
                format!("{:.2} ({:.1} / {:.1} µs)", a / b, b / 1e3, a / 1e3)
            } else {
                "-".into()
            }
        };
        println!(
            "| {} ×{} | {:.0} {} | {:.0} {} | {:.3} ({spread}) | {} | {} | {:.2} s for {} events ({:.1} µs/event) | {} per round | {lost} | {} MiB |",
            w.name,
            w.n,
            b,
            w.unit,
            a,
            w.unit,
            a / b,
            latency(|r| r.p50),
            latency(|r| r.p99),
            cpu_s,
            events,
            if events > 0 { cpu_s * 1e6 / events as f64 } else { 0.0 },
            events / ROUNDS as u64,
            rss_kb / 1024
        );
        kernel.push((w.name, kernel_round(bin, cgroup, &run_round)?));
    }
    println!();
    println!("Kernel time per program run (ns/run, runs in one more with-agent round with kernel.bpf_stats_enabled=1):");
    println!();
    for (mode, programs) in kernel {
        let cells: Vec<String> = programs
            .iter()
            .filter(|(_, (_, runs))| *runs > 0)
            .map(|(name, (ns, runs))| format!("{name} {} ns × {runs}", ns / runs))
            .collect();
        println!("- {mode}: {}", cells.join(", "));
    }
    Ok(())
}

/// One more with-agent round, with the kernel's statistics on: each program's run time and
/// runs in it.
fn kernel_round(
    bin: &Path,
    cgroup: &Path,
    round: &dyn Fn() -> Result<Round>,
) -> Result<std::collections::BTreeMap<String, (u64, u64)>> {
    let (agent, _) = start_fresh_agent(bin, cgroup)?;
    let stats = BpfStats::set(true);
    let before = program_stats();
    let measured = round();
    std::thread::sleep(Duration::from_millis(300));
    let after = program_stats();
    drop(stats);
    stop_agent(agent)?;
    measured?;
    Ok(after
        .into_iter()
        .map(|(name, (ns, runs))| {
            let (ns0, runs0) = before.get(&name).copied().unwrap_or((0, 0));
            (name, (ns.saturating_sub(ns0), runs.saturating_sub(runs0)))
        })
        .collect())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn make_cgroup() -> Result<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let root = mountinfo
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4))?
        })
        .context("no cgroup v2 mounted")?;
    let path = PathBuf::from(root).join(format!("sa-bench-{}", std::process::id()));
    std::fs::create_dir(&path)
        .with_context(|| format!("mkdir {} (root needed)", path.display()))?;
    Ok(path)
}

/// A `sa-traffic serve` listener outside the watched cgroup, killed when dropped.
struct Peer {
    child: Child,
    addr: String,
}

impl Peer {
    fn start(bin: &Path, cgroup: &Path) -> Result<Peer> {
        let parent = cgroup.parent().context("the bench cgroup has no parent")?;
        let mut child = Command::new(bin.join("sa-traffic"))
            .arg(parent.join("cgroup.procs"))
            .args(["serve", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .context("sa-traffic serve")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let port = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["local_port"].as_u64());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("sa-traffic serve printed no port: {line:?}");
        };
        Ok(Peer {
            child,
            addr: format!("127.0.0.1:{port}"),
        })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs one workload round inside the cgroup, against `addr`.
fn round(bin: &Path, cgroup: &Path, w: &Workload, addr: &str) -> Result<Round> {
    let mut command = Command::new(bin.join("sa-traffic"));
    if w.rate > 0 {
        command.env("SA_TRAFFIC_RATE", w.rate.to_string());
    }
    let out = command
        .arg(cgroup.join("cgroup.procs"))
        .args([w.mode, addr, &w.n.to_string()])
        .output()
        .context("sa-traffic")?;
    if !out.status.success() {
        bail!(
            "sa-traffic {}: {}",
            w.mode,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Option<f64> {
        let rest = text.split(&format!("\"{name}\":")).nth(1)?;
        rest.split([',', '}']).next()?.trim().parse().ok()
    };
    let ns = field("elapsed_ns").context("sa-traffic printed no elapsed_ns")?;
    let stalls = field("stalls").unwrap_or(0.0);
    if stalls > 0.0 {
        eprintln!(
            "bench: warning: {stalls} {} operations stalled over 100 ms (kernel retransmits)",
            w.mode
        );
    }
    Ok(Round {
        rate: w.n as f64 / (ns / 1e9),
        p50: field("p50_ns").unwrap_or(0.0),
        p99: field("p99_ns").unwrap_or(0.0),
    })
}

/// Every record of the journal next to `out`, as JSON lines (`journal export`).
fn journal_export(bin: &Path, out: &Path) -> Result<String> {
    let export = Command::new(bin.join("sovereign-agent"))
        .args(["journal", "export"])
        .arg(out.with_extension("journal"))
        .stderr(Stdio::inherit())
        .output()
        .context("sovereign-agent journal export")?;
    if !export.status.success() {
        bail!("journal export failed: {}", export.status);
    }
    Ok(String::from_utf8_lossy(&export.stdout).into_owned())
}

/// The agent on `cgroup`, with a fresh journal (and output file, with
/// `SOVEREIGN_BENCH_OUTPUT=jsonl`) next to the path returned.
fn start_fresh_agent(bin: &Path, cgroup: &Path) -> Result<(Child, PathBuf)> {
    let out = std::env::temp_dir().join("sovereign-bench.jsonl");
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_dir_all(out.with_extension("journal"));
    Ok((start_agent(bin, cgroup, &out)?, out))
}

fn start_agent(bin: &Path, cgroup: &Path, out: &Path) -> Result<Child> {
    // Another build of the agent (e.g. the previous release) can be measured with the same
    // workloads: SOVEREIGN_BENCH_AGENT=/path/to/sovereign-agent.
    let agent = std::env::var_os("SOVEREIGN_BENCH_AGENT")
        .map_or_else(|| bin.join("sovereign-agent"), PathBuf::from);
    let mut command = Command::new(agent);
    let jsonl = std::env::var("SOVEREIGN_BENCH_OUTPUT").is_ok_and(|v| v == "jsonl");
    command
        .args(["run", "--log-format", "json", "--cgroup"])
        .arg(cgroup)
        .arg("--output")
        .arg(if jsonl { out } else { Path::new("none") })
        // Journaling every event (fsync per batch), the API and the metrics endpoint on.
        .arg("--journal")
        .arg(out.with_extension("journal"))
        .arg("--api-socket")
        .arg(out.with_extension("sock"))
        .args(["--metrics-listen", "127.0.0.1:0"]);
    spawn_capturing(&mut command)
}

/// Starts `sovereign-agent run ...` (JSON logs) and returns once it is capturing. The
/// per-workload budgets and the flow ceiling are off: the benchmarks' workloads are floods by
/// design, and what they measure is the capture path itself (docs/performance.md).
/// `SOVEREIGN_BENCH_BUDGETS=default` keeps the defaults, to measure what the budgets cost.
fn spawn_capturing(command: &mut Command) -> Result<Child> {
    if std::env::var("SOVEREIGN_BENCH_BUDGETS").as_deref() != Ok("default") {
        command
            .env("SOVEREIGN_BUDGET_PROCESS_RECORDS_PER_SEC", "0")
            .env("SOVEREIGN_BUDGET_CGROUP_RECORDS_PER_SEC", "0")
            .env("SOVEREIGN_BUDGET_CGROUP_PROCESS_RECORDS_PER_SEC", "0")
            .env("SOVEREIGN_JOURNAL_MAX_FLOWS_PER_SEC", "0");
    }
    let mut child = command.stderr(Stdio::piped()).spawn()?;
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("\"capturing\"") => break,
            Some(Ok(_)) => {}
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the agent exited before capturing");
            }
        }
    }
    // Keep reading its logs so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(child)
}

/// User + system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or("", |(_, r)| r)
        .split(' ')
        .collect();
    // utime and stime, in clock ticks (USER_HZ, 100 on Linux).
    Ok((fields[11].parse::<f64>()? + fields[12].parse::<f64>()?) / 100.0)
}

fn stop_agent(mut child: Child) -> Result<u64> {
    let pid = child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    let status = child.wait()?;
    if !status.success() {
        bail!("agent exited with {status}");
    }
    Ok(rss)
}
