//! A watched workload floods the agent: it must not blind, stall or kill it.
use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use sovereign_agent_tests::{
    free_port, http_get, start_agent_with, target_bin, Reaped, TestCgroup,
};

/// `GET /healthz` with the deadline the issue sets: an answer within a second, or an error.
fn healthz(addr: &str) -> Result<Duration, String> {
    let start = Instant::now();
    let timeout = Duration::from_secs(1);
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), timeout)
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).unwrap();
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    s.read_to_string(&mut response)
        .map_err(|e| format!("no answer within {timeout:?}: {e}"))?;
    if !response.starts_with("HTTP/1.1 200") {
        return Err(format!("answer: {response:?}"));
    }
    Ok(start.elapsed())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Two processes spray datagrams at 20,000 new destinations each, again and again, for ten
/// seconds. The agent's single event loop used to stay inside the ring-buffer drain for the
/// whole flood (`/healthz` silent for ~25 s, the systemd watchdog close to killing it): now it
/// reads in slices and lets the health endpoint answer between them.
#[test]
fn health_answers_and_memory_stays_bounded_through_a_udp_flood() {
    let cgroup = TestCgroup::new("flood");
    let dir = std::env::temp_dir().join(format!("sa-flood-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("events.jsonl");
    let addr = format!("127.0.0.1:{}", free_port());
    let (agent, _logs) = start_agent_with(&cgroup, &output, &["--metrics-listen", &addr]);
    let agent = Reaped(agent);
    healthz(&addr).expect("healthy before the flood");

    let stop = Arc::new(AtomicBool::new(false));
    let procs = cgroup.path().join("cgroup.procs");
    let sprayers: Vec<_> = (0..2)
        .map(|i| {
            let (stop, procs) = (stop.clone(), procs.clone());
            std::thread::spawn(move || {
                let mut rounds = 0;
                while !stop.load(Ordering::Relaxed) {
                    let status = Command::new(target_bin("sa-traffic"))
                        .arg(&procs)
                        .args(["udp-spray", &format!("127.0.0.{}:40000", i + 1), "20000"])
                        .stdout(std::process::Stdio::null())
                        .status()
                        .unwrap();
                    assert!(status.success());
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    let mut probes = Vec::new();
    let mut rss_samples = Vec::new();
    let flood_start = Instant::now();
    while flood_start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(500));
        probes.push(healthz(&addr));
        rss_samples.push(rss_kib(agent.0.id()));
    }
    stop.store(true, Ordering::Relaxed);
    let rounds: usize = sprayers.into_iter().map(|s| s.join().unwrap()).sum();
    assert!(rounds >= 4, "the flood ran ({rounds} sprays of 20,000)");
    // The agent's resident memory through the flood (sampled with each probe): the
    // per-socket send lists used to keep one event per destination (1.26 GiB after 30 s).
    let peak_kib = rss_samples.iter().copied().max().unwrap();
    eprintln!(
        "agent RSS during the flood at most {} MiB after {rounds} sprays",
        peak_kib / 1024
    );
    assert!(
        peak_kib < 256 * 1024,
        "the agent's memory is bounded by its configuration, not by the flood: {} MiB",
        peak_kib / 1024
    );
    let failed: Vec<_> = probes.iter().filter(|p| p.is_err()).collect();
    assert!(
        failed.is_empty(),
        "/healthz failed {} of {} probes during the flood: {probes:?}",
        failed.len(),
        probes.len()
    );
    // Once the flood is over the agent catches up and says it is ready again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_get(&addr, "/readyz");
        if status == 200 {
            break;
        }
        assert!(
            body.starts_with("overloaded"),
            "only overload keeps it unready: {body}"
        );
        assert!(
            Instant::now() < deadline,
            "still {body} 30 s after the flood"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}
