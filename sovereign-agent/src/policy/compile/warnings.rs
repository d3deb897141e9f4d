//! What a compiled policy says that its author probably did not mean: rules whose selectors
//! let processes fall through to something more permissive.
use crate::policy::*;

/// A rule whose selector constrains several fields selects a process only when all match: a
/// process that matches one of them (the same binary started from a shell, a cron job,
/// another pod) falls through to later rules. Said when where it lands is more permissive.
pub(super) fn fall_through_warnings(rules: &[Rule], default: Decision) -> Vec<String> {
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if rule.otherwise != Decision::Violation {
            continue;
        }
        // Where a process that this rule's fields do not all select lands: the next rule
        // that selects every process, or the policy default.
        let landing = rules[i + 1..]
            .iter()
            .find(|r| r.selectors.iter().any(|s| s.fields() == 0));
        let (permissive, place) = match landing {
            Some(r) => (
                r.otherwise == Decision::Allow,
                format!("rule {:?}, whose otherwise is {}", r.name, r.otherwise),
            ),
            None => (
                default == Decision::Allow,
                format!("the policy default, {default}"),
            ),
        };
        if !permissive {
            continue;
        }
        for s in rule.selectors.iter().filter(|s| s.fields() > 1) {
            let (field, patterns) = &s.written[0];
            let others: Vec<&str> = s.written[1..].iter().map(|(f, _)| *f).collect();
            let alternatives: Vec<String> = s
                .written
                .iter()
                .map(|(f, p)| format!("{{ {f} = {p:?} }}"))
                .collect();
            out.push(format!(
                "rule {:?} selects a process only when {field} and {} all match: e.g. a process                  with {field} {} but another {} falls through to {place}. If one of them is                  enough, list them as alternatives: workload = [{}]",
                rule.name,
                others.join(" and "),
                example_of(&patterns[0]),
                others.join("/"),
                alternatives.join(", "),
            ));
        }
    }
    out
}

/// A value a pattern matches, for a warning: `/opt/llm/**` → `/opt/llm/bin/x`.
fn example_of(pattern: &str) -> String {
    pattern
        .replace("**", "bin/x")
        .replace(['*', '?'], "x")
        .replace(['[', ']', '{', '}'], "")
}
