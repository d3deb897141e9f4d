//! cargo xtask bench-alerts: the alert path end to end, with the real agent and the real
//! collector over mutual TLS (release builds, certificates made with openssl).
//!
//! 1. Push throughput: an agent without push records N alerts in its journal; a second agent
//!    on the same journal pushes the backlog over one push stream; alerts per second are
//!    measured at the collector (its journal's next sequence number, polled).
//! 2. Latency: 1,000 violating connections per second for 10 s; a subscriber on the collector
//!    (`sovereign-agent tail`) receives each alert; latency = receive time − the kernel's time
//!    of the connect() in the alert's flow. p50, p99, max.
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

const BACKLOG: u64 = 50_000;
const RATE: u64 = 1_000;
const LATENCY_SECONDS: u64 = 10;

const POLICY: &str = r#"
[policy]
name = "bench-alerts"
version = "1"
default = "allow"

[zones.loopback]
cidrs = ["127.0.0.0/8"]

[[rule]]
name = "generator"
workload = { comm = ["sa-traffic"] }
deny = ["loopback"]
severity = "high"
"#;

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn cert(dir: &Path, name: &str, ext: Option<&str>) -> Result<()> {
    let (key, pem, csr, subj) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("{name}.csr"),
        format!("/CN={name}"),
    );
    let curve = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    match ext {
        None => openssl(
            dir,
            &[
                &["req", "-x509"][..],
                &curve,
                &["-keyout", &key, "-out", &pem, "-subj", &subj, "-days", "2"],
            ]
            .concat(),
        ),
        Some(ext) => {
            std::fs::write(dir.join(format!("{name}.ext")), ext)?;
            openssl(
                dir,
                &[
                    &["req"][..],
                    &curve,
                    &["-keyout", &key, "-out", &csr, "-subj", &subj],
                ]
                .concat(),
            )?;
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    &format!("{name}.ext"),
                ],
            )
        }
    }
}

fn collector_next_seq(bin: &Path, socket: &Path) -> Result<u64> {
    let out = Command::new(bin.join("sovereign-agent"))
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .split("\"journal_next_seq\":")
        .nth(1)
        .and_then(|r| r.trim_start().split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("collector status: {text}"))?;
    Ok(v)
}

fn start_agent(bin: &Path, cgroup: &Path, dir: &Path, config: &str, name: &str) -> Result<Child> {
    crate::bench::spawn_capturing(
        Command::new(bin.join("sovereign-agent"))
            .args(["run", "--log-format", "json", "--cgroup"])
            .arg(cgroup)
            .args(["--output", "/dev/null", "--policy"])
            .arg(dir.join("policy.toml"))
            .arg("--config")
            .arg(dir.join(config))
            .arg("--journal")
            .arg(dir.join("agent-journal"))
            .arg("--api-socket")
            .arg(dir.join(format!("{name}.sock"))),
    )
}

fn stop(mut child: Child) -> Result<()> {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    child.wait()?;
    Ok(())
}

fn traffic(bin: &Path, cgroup: &Path, n: u64, rate: Option<u64>) -> Result<()> {
    let mut cmd = Command::new(bin.join("sa-traffic"));
    cmd.arg(cgroup.join("cgroup.procs"))
        .args(["connect-loop", "127.0.0.1:0", &n.to_string()]);
    if let Some(r) = rate {
        cmd.env("SA_TRAFFIC_RATE", r.to_string());
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("sa-traffic: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

pub fn run(root: &Path) -> Result<()> {
    crate::cargo(&["build", "--release", "--bins"])?;
    let bin = root.join("target/release");
    let dir = PathBuf::from("/tmp/sovereign-bench-alerts");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    cert(&dir, "ca", None)?;
    cert(
        &dir,
        "collector",
        Some("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
    )?;
    cert(&dir, "bench-agent", Some("extendedKeyUsage=clientAuth\n"))?;
    std::fs::write(dir.join("policy.toml"), POLICY)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    std::fs::write(dir.join("record.toml"), "[alerts]\nwindow_secs = 0\n")?;
    std::fs::write(
        dir.join("push.toml"),
        format!(
            "[alerts]\nwindow_secs = 0\n[push]\ncollector = \"https://127.0.0.1:{port}\"\nca = \"{d}/ca.pem\"\ncert = \"{d}/bench-agent.pem\"\nkey = \"{d}/bench-agent.key\"\n",
            d = dir.display()
        ),
    )?;
    let cgroup = crate::bench::make_cgroup()?;
    let result = measure(&bin, &cgroup, &dir, port);
    let _ = std::fs::remove_dir(&cgroup);
    result
}

fn measure(bin: &Path, cgroup: &Path, dir: &Path, port: u16) -> Result<()> {
    let socket = dir.join("collector.sock");
    let collector = Command::new(bin.join("sovereign-collector"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--journal")
        .arg(dir.join("collector-journal"))
        .arg("--tls-cert")
        .arg(dir.join("collector.pem"))
        .arg("--tls-key")
        .arg(dir.join("collector.key"))
        .arg("--client-ca")
        .arg(dir.join("ca.pem"))
        .arg("--api-socket")
        .arg(&socket)
        .stderr(Stdio::null())
        .spawn()?;
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // 1. Backlog: record, then push.
    let recorder = start_agent(bin, cgroup, dir, "record.toml", "recorder")?;
    traffic(bin, cgroup, BACKLOG, None)?;
    std::thread::sleep(Duration::from_secs(1));
    stop(recorder)?;
    let pusher = start_agent(bin, cgroup, dir, "push.toml", "pusher")?;
    let started = Instant::now();
    let mut first: Option<(Instant, u64)> = None;
    let last;
    loop {
        let n = collector_next_seq(bin, &socket)?;
        if n > 0 && first.is_none() {
            first = Some((Instant::now(), n));
        }
        if n >= BACKLOG {
            last = Instant::now();
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the collector got {n} of {BACKLOG} alerts in 120 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (t0, n0) = first.unwrap();
    let rate = (BACKLOG - n0) as f64 / (last - t0).as_secs_f64();
    println!(
        "| push backlog over one stream | {BACKLOG} alerts | {:.0} alerts/s ({:.2} s from the first ack to the last; {:.2} s from agent start) |",
        rate,
        (last - t0).as_secs_f64(),
        (last - started).as_secs_f64()
    );

    // 2. Latency at RATE flows/s (the pusher keeps running, caught up).
    let mut tail = Command::new(bin.join("sovereign-agent"))
        .args(["tail", "--json", "--kind", "alert", "--socket"])
        .arg(&socket)
        .stdout(Stdio::piped())
        .spawn()?;
    let out = tail.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut latencies = Vec::new();
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let received = OffsetDateTime::now_utc();
            let ts = line
                .split("\"flow\":{\"ts\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
            if let Some(ts) = ts {
                latencies.push((received - ts).as_seconds_f64() * 1000.0);
            }
        }
        latencies
    });
    std::thread::sleep(Duration::from_millis(500));
    traffic(bin, cgroup, RATE * LATENCY_SECONDS, Some(RATE))?;
    std::thread::sleep(Duration::from_secs(2));
    let _ = tail.kill();
    let _ = tail.wait();
    let mut lat = reader.join().unwrap();
    stop(pusher)?;
    Command::new("kill")
        .args(["-TERM", &collector.id().to_string()])
        .status()?;
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if lat.is_empty() {
        bail!("the subscriber received no alerts");
    }
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "| connect() → collector subscriber at {RATE} flows/s for {LATENCY_SECONDS} s | {} of {} alerts | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
        lat.len(),
        RATE * LATENCY_SECONDS,
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1]
    );
    Ok(())
}
