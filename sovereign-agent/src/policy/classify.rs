//! Classifying a flow against the compiled tables: which zones its address and names are in,
//! which rule selects its workload, and the decision. Allocation-free: it runs for every flow.
use super::*;

impl Policy {
    /// The zones of a name.
    pub(super) fn name_zones(&self, name: &str) -> u128 {
        let mut zones = 0;
        self.for_each_name_fact(name, |fact| zones |= self.fact_zones[fact as usize]);
        zones
    }

    fn matched(&self, flow: &Flow<'_>, ip_set: u32) -> Matched {
        let mut m = Matched {
            address: self.set_zones[ip_set as usize],
            ..Matched::default()
        };
        for (name, via) in names_of(flow) {
            let zones = self.name_zones(name);
            match via {
                Via::Dns => m.verified |= zones,
                Via::DnsCname => {
                    m.verified |= zones & self.trust_cnames;
                    m.cname |= zones & !self.trust_cnames;
                }
                Via::DnsUntrusted => m.dns_untrusted |= zones,
                Via::Sni => m.sni |= zones,
            }
        }
        m
    }

    /// The verdict for one flow: allocation-free, for the hot path.
    ///
    /// Names are claims (docs/policy.md): any name can put the destination in a `deny` zone,
    /// but an allow rests only on address facts and verified DNS names, a CNAME chain being
    /// judged where it ends; an SNI that DNS did not give is a violation unless the address
    /// itself is allowed.
    pub fn classify(&self, flow: &Flow<'_>) -> Verdict {
        let ip_set = self.ips.set_id(flow.ip);
        let m = self.matched(flow, ip_set);
        let matched = m.all();
        let flags = self.set_flags[ip_set as usize];
        let mut weak = 0;
        if flags & SET_SHARED != 0 {
            weak |= weak::SHARED_RANGE;
        }
        if flags & SET_LOCATED == 0 && !self.datasets.is_empty() && is_public(flow.ip) {
            weak |= weak::UNKNOWN_LOCATION;
        }
        let conflict = flow.name_conflict();
        if conflict {
            weak |= weak::NAME_CONFLICT;
        }
        if flow.sni_unreadable {
            weak |= weak::SNI_UNREADABLE;
        }
        let default = |weak| Verdict {
            decision: self.default,
            severity: (self.default == Decision::Violation).then_some(self.default_severity),
            rule: None,
            decisive_zones: 0,
            matched_zones: matched,
            ip_set,
            weak,
        };
        let chosen = self
            .rules
            .iter()
            .enumerate()
            .find_map(|(i, r)| match r.selects(flow) {
                Selected::Yes => Some((i, r, false)),
                Selected::Unknown if self.unknown_workload != UnknownWorkload::MatchNone => {
                    Some((i, r, true))
                }
                Selected::Unknown | Selected::No => None,
            });
        let Some((index, rule, unknown)) = chosen else {
            return default(weak);
        };
        if unknown {
            // The process behind the flow cannot be told apart from the workload the rule is
            // for: never silently a later, more permissive rule.
            weak |= weak::UNKNOWN_WORKLOAD;
            return match self.unknown_workload {
                UnknownWorkload::Default => default(weak),
                _ => Verdict {
                    decision: Decision::Violation,
                    severity: Some(rule.severity),
                    rule: Some(index as u16),
                    decisive_zones: 0,
                    matched_zones: matched,
                    ip_set,
                    weak,
                },
            };
        }
        if rule.by_name && !flow.has_names() {
            weak |= weak::NO_NAME;
        }
        // Allow zones that only claims put the destination in: said, never decisive.
        let allowable = m.allowable() & rule.allow;
        if m.sni & rule.allow & !allowable != 0 {
            weak |= weak::SNI_UNVERIFIED;
        }
        if m.dns_untrusted & rule.allow & !allowable != 0 {
            weak |= weak::DNS_UNTRUSTED;
        }
        if m.cname & rule.allow & !allowable != 0 {
            weak |= weak::CNAME_LEAVES_ZONE;
        }
        let denied = matched & rule.deny;
        let (decision, decisive) = if denied != 0 {
            if allowable != 0 {
                weak |= weak::CONFLICTING_ZONES;
            }
            (Decision::Violation, denied)
        } else if conflict {
            // The client connects under another name than the one it resolved: only the
            // address itself can allow that.
            match m.address & rule.allow {
                0 => (Decision::Violation, 0),
                by_address => (Decision::Allow, by_address),
            }
        } else if allowable != 0 {
            (Decision::Allow, allowable)
        } else {
            (rule.otherwise, 0)
        };
        Verdict {
            decision,
            severity: (decision == Decision::Violation).then_some(rule.severity),
            rule: Some(index as u16),
            decisive_zones: decisive,
            matched_zones: matched,
            ip_set,
            weak,
        }
    }

    /// Name facts (exact names, then `*.suffix` patterns from the longest suffix) for `name`.
    pub(super) fn for_each_name_fact(&self, name: &str, mut f: impl FnMut(u32)) {
        let name = name.trim_end_matches('.');
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if let Some(facts) = self.names_exact.get(name) {
            facts.iter().for_each(|x| f(*x));
        }
        let mut rest = name;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(facts) = self.names_suffix.get(rest) {
                facts.iter().for_each(|x| f(*x));
            }
        }
    }

    /// The verdict with its reasoning, for people and for the event stream.
    /// The name of the rule that decided, as `explain` reports it.
    pub fn rule_name(&self, verdict: &Verdict) -> &str {
        match verdict.rule {
            Some(r) => &self.rules[r as usize].name,
            None => "(policy default)",
        }
    }
}

/// Loopback, private, link-local, unique-local and unspecified addresses have no location
/// worth flagging as unknown.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified())
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || first & 0xfe00 == 0xfc00
                    || first & 0xffc0 == 0xfe80)
            }
        },
    }
}
