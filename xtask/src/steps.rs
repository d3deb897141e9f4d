//! The wall time of each step of `cargo xtask test`, printed as each ends and as one table at
//! the end (also when a step fails): where CI's minutes go (docs/development.md).
use std::time::Instant;

use anyhow::Result;

#[derive(Default)]
pub struct Steps {
    done: Vec<(&'static str, f64)>,
    started: Option<Instant>,
}

impl Steps {
    pub fn new() -> Self {
        Self {
            done: Vec::new(),
            started: Some(Instant::now()),
        }
    }

    /// Runs `step`, recording how long it took whatever its outcome.
    pub fn run<T>(&mut self, name: &'static str, step: impl FnOnce() -> Result<T>) -> Result<T> {
        let start = Instant::now();
        let result = step();
        let secs = start.elapsed().as_secs_f64();
        eprintln!("xtask: step {name}: {secs:.0} s");
        self.done.push((name, secs));
        if result.is_err() {
            self.print();
        }
        result
    }

    /// One line per step and the total, e.g. `xtask: time: setup 118 s, clippy 240 s, ...`.
    pub fn print(&self) {
        let total = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let parts: Vec<String> = self
            .done
            .iter()
            .map(|(name, secs)| format!("{name} {secs:.0} s"))
            .collect();
        println!("xtask: time: {}; total {total:.0} s", parts.join(", "));
    }
}
