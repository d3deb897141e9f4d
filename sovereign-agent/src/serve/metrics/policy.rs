//! The policy in force: its name, version and hash, how long it took to load, reloads.
use std::sync::atomic::Ordering::Relaxed;

use super::exposition::Exposition;
use super::exposition::NS;
use crate::{policy::Policy, telemetry::counters::Counters};

pub(super) fn render(out: &mut Exposition, c: &Counters, policy: &Policy) {
    out.gauge(
        "sovereign_agent_policy_info",
        "The policy in force (always 1).",
        &[(
            vec![
                ("name", policy.name.as_str()),
                ("version", policy.version.as_str()),
                ("hash", policy.hash.as_str()),
            ],
            1.0,
        )],
    );
    out.gauge(
        "sovereign_agent_policy_load_duration_seconds",
        "How long loading and compiling the policy in force took.",
        &[(vec![], c.policy_loads.load_ns.load(Relaxed) as f64 * NS)],
    );
    out.gauge(
        "sovereign_agent_policy_loaded_timestamp_seconds",
        "When the policy in force was loaded, Unix time.",
        &[(
            vec![],
            c.policy_loads.loaded_unix_ns.load(Relaxed) as f64 * NS,
        )],
    );
    out.counter(
        "sovereign_agent_policy_reloads_total",
        "Policy reloads (SIGHUP or file change), by result; a failed reload keeps the \
         previous policy in force.",
        &[
            (
                vec![("result", "ok")],
                c.policy_loads.reloads_ok.load(Relaxed) as f64,
            ),
            (
                vec![("result", "error")],
                c.policy_loads.reloads_failed.load(Relaxed) as f64,
            ),
        ],
    );
}
