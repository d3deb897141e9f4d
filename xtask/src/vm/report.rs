//! The console read back into a report: per suite, each test's result, the suite's exit code
//! and time, the hooks the agent attached and refused, and what went wrong.
use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{bail, Result};

use super::MARK;

/// One suite's outcome: each test's result, and the suite's exit code and time.
#[derive(Default)]
struct Suite {
    tests: Vec<(String, String)>,
    rc: Option<i32>,
    seconds: u64,
}

/// Prints what passed and failed, per suite, and fails if anything did.
pub fn print(label: &str, console: &str, chosen: &[(String, PathBuf)]) -> Result<()> {
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
