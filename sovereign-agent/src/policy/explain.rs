//! A verdict's reasoning, for events and `policy explain`: the zones it rests on, the facts
//! that put the destination in them (address, DNS, CNAME hops, SNI), what the datasets say
//! about the address, and the weak ground the verdict stands on. Only built for violations
//! and on request, so it may allocate.
use super::*;

impl Policy {
    pub fn explain(&self, flow: &Flow<'_>, verdict: &Verdict) -> Explanation {
        let zone_names = |mask: u128| -> Vec<String> {
            (0..self.zones.len())
                .filter(|z| mask & (1u128 << z) != 0)
                .map(|z| self.zones[z].name.clone())
                .collect()
        };
        // Every fact, with the name it came from and how that name was learned.
        let mut facts: Vec<(u32, Option<(&str, Via)>)> = self
            .ips
            .set(verdict.ip_set)
            .iter()
            .map(|f| (*f, None))
            .collect();
        for (name, via) in names_of(flow) {
            self.for_each_name_fact(name, |x| {
                if !facts.contains(&(x, Some((name, via)))) {
                    facts.push((x, Some((name, via))));
                }
            });
        }
        let decisive_bit = |z: usize, via: Option<Via>| {
            verdict.decisive_zones & (1u128 << z) != 0
                && match via {
                    None => true,
                    // A claim never decides an allow.
                    Some(Via::Sni | Via::DnsUntrusted) => verdict.decision == Decision::Violation,
                    Some(Via::DnsCname) => {
                        verdict.decision == Decision::Violation || self.trust_cnames & (1 << z) != 0
                    }
                    Some(Via::Dns) => true,
                }
        };
        let mut evidence = Vec::new();
        for z in 0..self.zones.len() {
            if verdict.matched_zones & (1u128 << z) == 0 {
                continue;
            }
            for &(fact, name) in &facts {
                if self.fact_zones[fact as usize] & (1u128 << z) != 0 {
                    let mut detail = self.fact_detail(fact);
                    if let Some((_, Via::DnsCname)) = name {
                        if self.trust_cnames & (1 << z) != 0 {
                            detail.push_str(" (zone trusts CNAMEs)");
                        }
                    }
                    evidence.push(Evidence {
                        zone: self.zones[z].name.clone(),
                        decisive: decisive_bit(z, name.map(|n| n.1)),
                        source: self.fact_source(fact),
                        via: name.map_or("address", |(_, via)| via.as_str()),
                        name: name.map(|(n, _)| n.to_string()),
                        detail,
                    });
                }
            }
        }
        evidence.extend(self.cname_hops(flow, verdict));
        let destination = self
            .ips
            .set(verdict.ip_set)
            .iter()
            .filter(|f| matches!(self.facts[**f as usize], Fact::Dataset { .. }))
            .map(|f| self.fact_detail(*f))
            .collect();
        Explanation {
            decision: verdict.decision,
            severity: verdict.severity,
            rule: verdict.rule.map_or_else(
                || "(policy default)".into(),
                |r| self.rules[r as usize].name.clone(),
            ),
            zones: zone_names(verdict.decisive_zones),
            matched_zones: zone_names(verdict.matched_zones),
            evidence,
            destination,
            weak: weak::ALL
                .iter()
                .filter(|(bit, _)| verdict.weak & bit != 0)
                .map(|(_, name)| *name)
                .collect(),
            policy: PolicyRef {
                name: self.name.clone(),
                version: self.version.clone(),
                hash: self.hash.clone(),
            },
        }
    }

    /// For each verified chain that leaves an allowed zone of the deciding rule: the hop where
    /// it leaves, as evidence.
    fn cname_hops(&self, flow: &Flow<'_>, verdict: &Verdict) -> Vec<Evidence> {
        let Some(rule) = verdict.rule.map(|r| &self.rules[r as usize]) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for chain in flow.dns.iter().filter(|c| c.verified && c.names.len() > 1) {
            let zones: Vec<u128> = chain.names.iter().map(|n| self.name_zones(n)).collect();
            let owner = *zones.last().expect("more than one name");
            let leaving = zones[..zones.len() - 1].iter().fold(0, |a, z| a | z)
                & rule.allow
                & !self.trust_cnames
                & !owner;
            for z in (0..self.zones.len()).filter(|z| leaving & (1u128 << z) != 0) {
                // The last name of the chain still in the zone, and the next one.
                let at = zones
                    .iter()
                    .rposition(|m| m & (1u128 << z) != 0)
                    .expect("a name in the zone");
                out.push(Evidence {
                    zone: self.zones[z].name.clone(),
                    decisive: false,
                    source: "cname",
                    via: "dns_cname",
                    name: Some(chain.names[at].clone()),
                    detail: format!(
                        "CNAME chain {} leaves zone {} at {} -> {}: judged on {}",
                        chain.names.join(" -> "),
                        self.zones[z].name,
                        chain.names[at],
                        chain.names[at + 1],
                        chain.names.last().expect("non-empty"),
                    ),
                });
            }
        }
        out
    }

    fn fact_source(&self, fact: u32) -> &'static str {
        match &self.facts[fact as usize] {
            Fact::Dataset { entry, .. } => entry.kind.key(),
            Fact::Cidr { .. } => "cidr",
            Fact::Domain { .. } => "domain",
            Fact::Ai { .. } => "ai",
        }
    }

    fn fact_detail(&self, fact: u32) -> String {
        match &self.facts[fact as usize] {
            Fact::Dataset { dataset, entry } => {
                let d = &self.datasets[*dataset as usize];
                format!("{entry} [{} {}]", d.kind.label(), d.version)
            }
            Fact::Cidr { net } => format!("CIDR {net}"),
            Fact::Domain { pattern } => format!("domain {pattern}"),
            Fact::Ai {
                provider,
                host,
                region,
            } => format!(
                "AI endpoint {host} of {provider} (region {region}) [catalogue {}]",
                self.catalogue_version
            ),
        }
    }
}
