//! What the kernel enforces: the enforce rules, their prefixes and the cgroups they decide for
//! (refusals themselves are `sovereign_agent_events_total{kind="refused"}` and the verdicts'
//! counts by rule).
use super::exposition::Exposition;
use crate::enforce::Enforced;

pub(super) fn render(out: &mut Exposition, e: &Enforced) {
    out.gauge(
        "sovereign_agent_enforce_rules",
        "Rules of the policy the kernel enforces (mode = \"enforce\").",
        &[(vec![], e.rules.len() as f64)],
    );
    out.gauge(
        "sovereign_agent_enforce_prefixes",
        "Prefixes in the kernel's enforce tries (both families), of at most 1048576 each.",
        &[(vec![], e.prefixes as f64)],
    );
    out.gauge(
        "sovereign_agent_enforce_cgroups",
        "Cgroups an enforce rule decides for, of the 65536 the kernel's map holds.",
        &[(vec![], e.cgroups as f64)],
    );
    out.gauge(
        "sovereign_agent_enforce_failsafe_destinations",
        "Destinations never refused (trusted resolvers and the failsafe list), beside loopback.",
        &[(vec![], e.failsafe as f64)],
    );
}
