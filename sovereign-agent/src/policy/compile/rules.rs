//! Rules and their workload selectors, compiled in order.
use super::*;
use crate::policy::file::RuleMode;

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
            let mode = r.mode.as_ref().map_or(RuleMode::Monitor, |m| *m.get_ref());
            let rule = Rule {
                name: r.name.get_ref().clone(),
                selectors,
                allow,
                deny,
                otherwise: r.otherwise,
                severity: r.severity.unwrap_or(parsed.policy.default_severity),
                by_name,
                mode,
            };
            if let Some(at) = &r.mode {
                if mode == RuleMode::Audit {
                    self.error_at(
                        at,
                        format!(
                            "rule {:?}: mode = \"audit\" is not built yet: keep the rule in monitor mode, whose violations are what enforce would refuse once the rule decides on cgroups and address facts only (docs/enforce.md)",
                            r.name.get_ref()
                        ),
                    );
                }
                if mode != RuleMode::Monitor {
                    for problem in self.undeliverable(&rule, &rules) {
                        self.error_at(at, problem);
                    }
                }
            }
            rules.push(rule);
        }
        rules
    }

    /// Why the kernel cannot decide `rule` (an `audit` or `enforce` one) exactly as it is
    /// written, `earlier` being the rules before it. The kernel knows the task's cgroup and
    /// the destination address, nothing else, so an enforce rule must be decided by those
    /// alone; a mode that cannot be delivered is an error, never a silent downgrade.
    fn undeliverable(&self, rule: &Rule, earlier: &[Rule]) -> Vec<String> {
        let mode = rule.mode.as_str();
        let mut problems = Vec::new();
        for (z, zone) in self.zones.iter().enumerate() {
            if (rule.allow | rule.deny) & (1u128 << z) != 0 && zone.by_name {
                problems.push(format!(
                    "rule {:?}: mode = \"{mode}\" needs zones of address facts only, and zone {:?} has domains or ai entries (names are not decided in the kernel yet; split the zone, or keep this rule in monitor mode)",
                    rule.name, zone.name
                ));
            }
        }
        if let Some(field) = rule.kernel_unknown_field() {
            problems.push(format!(
                "rule {:?}: mode = \"{mode}\" selects by {field}, which the kernel does not decide on yet: select the workload by cgroup only",
                rule.name
            ));
        }
        if let Some((before, field)) = earlier
            .iter()
            .find_map(|e| e.kernel_unknown_field().map(|f| (e, f)))
        {
            problems.push(format!(
                "rule {:?}: mode = \"{mode}\" comes after rule {:?}, which selects by {field}: the kernel cannot tell which of the two takes a flow (select the earlier rule by cgroup only, or move it after this one)",
                rule.name, before.name
            ));
        }
        problems
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
