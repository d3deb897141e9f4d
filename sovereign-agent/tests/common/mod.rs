//! What the agent crate's own integration tests share: running the built binary. These tests
//! need no root and no kernel programs (those live in the `tests` crate, run by
//! `cargo xtask test`).
use std::process::Command;

/// Runs `sovereign-agent` with `args`: (exit code, stdout, stderr).
pub fn run_agent<I, S>(args: I) -> (i32, String, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_sovereign-agent"))
        .args(args)
        .output()
        .expect("run sovereign-agent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
