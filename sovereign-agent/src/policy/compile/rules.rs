//! Rules and their workload selectors, compiled in order, and the warnings for rules that can
//! never be reached or that let traffic fall through to the default.
use super::*;

impl Compiler<'_> {
    pub(super) fn rules(&mut self, parsed: &PolicyFile) -> Vec<Rule> {
        let mut rules = Vec::new();
        let mut names = HashSet::new();
        for rule in &parsed.rules {
            let r = rule.get_ref();
            if !names.insert(r.name.get_ref().clone()) {
                self.error_at(
                    &r.name,
                    format!("duplicate rule name {:?}", r.name.get_ref()),
                );
            }
            let mut by_name = false;
            let mut mask = |refs: &[Spanned<String>], c: &mut Self| -> u128 {
                let mut m = 0;
                for zone in refs {
                    match c.zone_index.get(zone.get_ref()) {
                        Some(&z) => {
                            m |= 1u128 << z;
                            by_name |= c.zones[z].by_name;
                        }
                        None => c.error_at(
                            zone,
                            format!(
                                "rule {:?}: unknown zone {:?} (zones: {})",
                                r.name.get_ref(),
                                zone.get_ref(),
                                c.zones
                                    .iter()
                                    .map(|z| z.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ),
                    }
                }
                m
            };
            let allow = mask(&r.allow, self);
            let deny = mask(&r.deny, self);
            if r.workload.0.is_empty() {
                self.error_at(
                    &r.name,
                    format!(
                        "rule {:?}: workload = [] selects nothing; leave workload out to select every process",
                        r.name.get_ref()
                    ),
                );
            }
            let selectors = r
                .workload
                .0
                .iter()
                .map(|s| self.selector(s, r.name.get_ref()))
                .collect();
            rules.push(Rule {
                name: r.name.get_ref().clone(),
                selectors,
                allow,
                deny,
                otherwise: r.otherwise,
                severity: r.severity.unwrap_or(parsed.policy.default_severity),
                by_name,
            });
        }
        rules
    }

    fn selector(&mut self, s: &Selector, rule: &str) -> CompiledSelector {
        let set =
            |patterns: &[Spanned<String>], paths: bool, c: &mut Self| -> Option<Vec<Matcher>> {
                if patterns.is_empty() {
                    return None;
                }
                let mut matchers = Vec::new();
                for p in patterns {
                    // For paths, `*` stays within one component and `**` crosses them.
                    match Matcher::new(p.get_ref(), paths) {
                        Ok(m) => matchers.push(m),
                        Err(e) => c.error_at(
                            p,
                            format!("rule {rule:?}: invalid pattern {:?}: {e}", p.get_ref()),
                        ),
                    }
                }
                Some(matchers)
            };
        let written = [
            ("exe", &s.exe),
            ("ancestor_exe", &s.ancestor_exe),
            ("comm", &s.comm),
            ("cgroup", &s.cgroup),
            ("container_id", &s.container_id),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(f, v)| (f, v.iter().map(|p| p.get_ref().clone()).collect()))
        .chain((!s.uid.is_empty()).then(|| ("uid", s.uid.iter().map(u32::to_string).collect())))
        .collect();
        CompiledSelector {
            written,
            exe: set(&s.exe, true, self),
            ancestor_exe: set(&s.ancestor_exe, true, self),
            comm: set(&s.comm, false, self),
            cgroup: set(&s.cgroup, true, self),
            container_id: set(&s.container_id, false, self),
            uid: s.uid.clone(),
        }
    }
}

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
