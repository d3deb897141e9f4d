//! cargo xtask bench: whole-system overhead of the agent, measured the only honest way: the
//! same workload in the same cgroup, alternating rounds without and with the real agent
//! attached, medians compared. Figures go to docs/performance.md by hand, with this command.
//!
//! Workloads (tests/src/bin/sa-traffic.rs, release build):
//! - connect-loop: TCP connect + close to a local listener; every connection makes three
//!   events (connect, established, close), so this is the worst case per connection;
//! - udp-loop: sendto() of one datagram to one destination; after the first, every datagram
//!   only increments a kernel counter;
//! - exec-loop: fork + exec of /bin/true, waited for: four process records each (fork,
//!   arguments, exec, exit), no flow.
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context, Result};

const ROUNDS: usize = 5;

struct Workload {
    mode: &'static str,
    addr: &'static str,
    n: u64,
    unit: &'static str,
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        mode: "connect-loop",
        addr: "127.0.0.1:0",
        n: 10_000,
        unit: "connections/s",
    },
    Workload {
        mode: "udp-loop",
        addr: "127.0.0.1:9",
        n: 500_000,
        unit: "datagrams/s",
    },
    // Each exec makes four process records (fork, arguments, exec, exit) and no flow.
    Workload {
        mode: "exec-loop",
        addr: "127.0.0.1:9",
        n: 2_000,
        unit: "execs/s",
    },
];

pub fn run(root: &Path) -> Result<()> {
    crate::cargo(&["build", "--release", "--bins"])?;
    let bin = root.join("target/release");
    let cgroup = make_cgroup()?;
    let result = bench_all(&bin, &cgroup);
    let _ = std::fs::remove_dir(&cgroup);
    result
}

fn bench_all(bin: &Path, cgroup: &Path) -> Result<()> {
    println!(
        "| workload | without agent | with agent | ratio | agent CPU | events | agent max RSS |"
    );
    println!("|---|---|---|---|---|---|---|");
    for w in &WORKLOADS {
        let (mut base, mut with) = (Vec::new(), Vec::new());
        let (mut cpu_s, mut events, mut rss_kb) = (0.0, 0u64, 0u64);
        rate(bin, cgroup, w)?; // warm-up: page cache, first-use allocations
        for round in 0..ROUNDS {
            // Alternate the order, so neither side always runs right after the other.
            let agent_first = round % 2 == 1;
            if !agent_first {
                base.push(rate(bin, cgroup, w)?);
            }
            let out = std::env::temp_dir().join("sovereign-bench.jsonl");
            let _ = std::fs::remove_file(&out);
            let _ = std::fs::remove_dir_all(out.with_extension("journal"));
            let agent = start_agent(bin, cgroup, &out)?;
            let cpu_before = cpu_seconds(agent.id())?;
            with.push(rate(bin, cgroup, w)?);
            std::thread::sleep(Duration::from_millis(300)); // let it drain
            let cpu = cpu_seconds(agent.id())? - cpu_before;
            let rss = stop_agent(agent)?;
            if agent_first {
                base.push(rate(bin, cgroup, w)?);
            }
            cpu_s += cpu;
            rss_kb = rss_kb.max(rss);
            events += std::fs::read_to_string(&out)
                .map(|s| s.lines().count() as u64)
                .unwrap_or(0);
            eprintln!(
                "bench: {} round {}: without {:.0}, with {:.0} {}",
                w.mode,
                round + 1,
                base[round],
                with[round],
                w.unit
            );
        }
        let (b, a) = (median(&mut base), median(&mut with));
        println!(
            "| {} ×{} | {:.0} {} | {:.0} {} | {:.3} | {:.2} s for {} events ({:.1} µs/event) | {} per round | {} MiB |",
            w.mode,
            w.n,
            b,
            w.unit,
            a,
            w.unit,
            a / b,
            cpu_s,
            events,
            if events > 0 { cpu_s * 1e6 / events as f64 } else { 0.0 },
            events / ROUNDS as u64,
            rss_kb / 1024
        );
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub(crate) fn make_cgroup() -> Result<PathBuf> {
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

/// Runs one workload round inside the cgroup; returns operations per second.
fn rate(bin: &Path, cgroup: &Path, w: &Workload) -> Result<f64> {
    let out = Command::new(bin.join("sa-traffic"))
        .arg(cgroup.join("cgroup.procs"))
        .args([w.mode, w.addr, &w.n.to_string()])
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
    Ok(w.n as f64 / (ns / 1e9))
}

fn start_agent(bin: &Path, cgroup: &Path, out: &Path) -> Result<Child> {
    // Another build of the agent (e.g. the previous release) can be measured with the same
    // workloads: SOVEREIGN_BENCH_AGENT=/path/to/sovereign-agent.
    let agent = std::env::var_os("SOVEREIGN_BENCH_AGENT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| bin.join("sovereign-agent"));
    let mut child = Command::new(agent)
        .args(["run", "--log-format", "json", "--cgroup"])
        .arg(cgroup)
        .arg("--output")
        .arg(out)
        // The agent as deployed: journaling every event (fsync per batch) next to the output.
        .arg("--journal")
        .arg(out.with_extension("journal"))
        .arg("--api-socket")
        .arg(out.with_extension("sock"))
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("\"capturing\"") => break,
            Some(Ok(_)) => {}
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("agent did not start");
            }
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(child)
}

/// User + system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .unwrap_or("")
        .split(' ')
        .collect();
    // utime and stime, in clock ticks (USER_HZ, 100 on Linux).
    Ok((fields[11].parse::<f64>()? + fields[12].parse::<f64>()?) / 100.0)
}

/// SIGTERM; returns the agent's peak RSS in KiB.
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
