//! A real HTTPS webhook receiver (tests/python/webhook_receiver.py: Python's http.server and
//! ssl, not our code) for the webhook sink's test and benchmark.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::Reaped;

/// Starts the receiver on 127.0.0.1:`port` with `dir`'s `hook.pem`/`hook.key`, logging each
/// POST to `dir/received.jsonl`; the first `failures` POSTs are answered 500. Returns once it
/// listens.
pub fn start_receiver(dir: &Path, port: u16, failures: usize) -> Reaped {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/webhook_receiver.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(dir.join("hook.pem"))
        .arg(dir.join("hook.key"))
        .arg(port.to_string())
        .arg(dir.join("received.jsonl"))
        .arg(failures.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 webhook_receiver.py");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the receiver's first line");
    assert_eq!(line.trim(), "ready", "the receiver did not start");
    Reaped(child)
}

/// How many POSTs the receiver logged so far (without parsing them).
pub fn received_count(dir: &Path) -> usize {
    std::fs::read(dir.join("received.jsonl"))
        .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// Every POST the receiver logged so far: path, status answered, `key` (Idempotency-Key),
/// `received_ns` (its clock), the body.
pub fn received(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("received.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
