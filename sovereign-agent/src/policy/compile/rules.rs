//! Rules and their workload selectors, compiled in order.
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
