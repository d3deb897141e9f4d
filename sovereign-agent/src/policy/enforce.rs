//! What the kernel enforces of a policy (docs/enforce.md): for each `audit` or `enforce`
//! rule, its prefixes with allow or refuse and what a destination in none of them gets; and
//! which rule decides for a cgroup. The kernel knows a task's cgroup and a socket call's
//! destination address, so compilation refuses a mode that rests on anything else
//! (`compile/rules.rs`): what the kernel decides here is what the monitor judges.
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::{file::RuleMode, Decision, Policy};

/// One `audit` or `enforce` rule, as the kernel's tables hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnforcedRule {
    /// Its index among the policy's rules (the refused record carries it).
    pub index: u32,
    pub name: String,
    pub mode: RuleMode,
    /// What a destination in none of `v4`/`v6` gets: refused (`otherwise = "violation"`).
    pub refuse_otherwise: bool,
    /// The prefixes whose decision differs from `refuse_otherwise`, with it (true: refuse).
    /// Deny wins over allow, as in the monitor.
    pub v4: Vec<(Ipv4Net, bool)>,
    pub v6: Vec<(Ipv6Net, bool)>,
}

impl Policy {
    /// Every rule whose mode is not `monitor`, in order.
    pub fn enforced_rules(&self) -> Vec<EnforcedRule> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.mode != RuleMode::Monitor)
            .map(|(index, r)| {
                let refuse_otherwise = r.otherwise == Decision::Violation;
                let refuses = |set: u32| {
                    let zones = self.set_zones[set as usize];
                    zones & r.deny != 0 || (zones & r.allow == 0 && refuse_otherwise)
                };
                let v4 = differing(self.ips.v4_ranges(), refuses, refuse_otherwise)
                    .into_iter()
                    .flat_map(|(first, last, refuse)| {
                        cidrs(first, last, 32).map(move |(a, len)| {
                            let net = Ipv4Net::new(Ipv4Addr::from(a as u32), len)
                                .expect("a prefix length of at most 32");
                            (net, refuse)
                        })
                    })
                    .collect();
                let v6 = differing(self.ips.v6_ranges(), refuses, refuse_otherwise)
                    .into_iter()
                    .flat_map(|(first, last, refuse)| {
                        cidrs(first, last, 128).map(move |(a, len)| {
                            let net = Ipv6Net::new(Ipv6Addr::from(a), len)
                                .expect("a prefix length of at most 128");
                            (net, refuse)
                        })
                    })
                    .collect();
                EnforcedRule {
                    index: index as u32,
                    name: r.name.clone(),
                    mode: r.mode,
                    refuse_otherwise,
                    v4,
                    v6,
                }
            })
            .collect()
    }

    /// The index of the rule that decides for the processes of the cgroup at `path` when it
    /// is an `audit` or `enforce` one: the first rule that selects the cgroup, as the monitor
    /// would pick it (compilation made every rule up to the last enforced one cgroup-only).
    pub fn enforcing_rule_of_cgroup(&self, path: &str) -> Option<u32> {
        let last = self
            .rules
            .iter()
            .rposition(|r| r.mode != RuleMode::Monitor)?;
        let (index, rule) = self.rules[..=last]
            .iter()
            .enumerate()
            .find(|(_, r)| r.selectors.iter().any(|s| s.selects_cgroup(path)))?;
        (rule.mode != RuleMode::Monitor).then_some(index as u32)
    }

    /// The mode of rule `index` (monitor for an index the policy does not have).
    pub fn rule_mode(&self, index: u32) -> RuleMode {
        self.rules
            .get(index as usize)
            .map_or(RuleMode::Monitor, |r| r.mode)
    }

    /// The name of rule `index`.
    pub fn rule_name_at(&self, index: u32) -> Option<&str> {
        self.rules.get(index as usize).map(|r| r.name.as_str())
    }
}

/// The ranges whose decision is not `otherwise`, adjacent ones of one decision merged:
/// `(first, last, refuse)`.
fn differing<T: Into<u128>>(
    ranges: impl Iterator<Item = (T, T, u32)>,
    refuses: impl Fn(u32) -> bool,
    otherwise: bool,
) -> Vec<(u128, u128, bool)> {
    let mut out: Vec<(u128, u128, bool)> = Vec::new();
    for (first, last, set) in ranges {
        let (first, last) = (first.into(), last.into());
        let refuse = refuses(set);
        if refuse == otherwise {
            continue;
        }
        match out.last_mut() {
            Some(prev) if prev.2 == refuse && prev.1.checked_add(1) == Some(first) => {
                prev.1 = last;
            }
            _ => out.push((first, last, refuse)),
        }
    }
    out
}

/// The fewest prefixes that cover `first..=last` exactly, in an address space of `bits`:
/// `(address, prefix length)`.
fn cidrs(first: u128, last: u128, bits: u8) -> impl Iterator<Item = (u128, u8)> {
    let bits = u32::from(bits);
    let mut next = Some(first);
    std::iter::from_fn(move || {
        let start = next.filter(|s| *s <= last)?;
        // The largest block that starts at `start` (its alignment) and ends by `last`.
        let align = if start == 0 {
            bits
        } else {
            start.trailing_zeros().min(bits)
        };
        let fit = match (last - start).checked_add(1) {
            Some(count) => 127 - count.leading_zeros(),
            None => 128,
        };
        let k = align.min(fit);
        let block_last = if k == 128 {
            u128::MAX
        } else {
            start + ((1u128 << k) - 1)
        };
        next = block_last.checked_add(1).filter(|_| block_last < last);
        Some((start, (bits - k) as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_becomes_the_fewest_prefixes_that_cover_it_exactly() {
        let v4 = |a: &str| u128::from(u32::from(a.parse::<Ipv4Addr>().unwrap()));
        let got: Vec<_> = cidrs(v4("10.0.0.0"), v4("10.0.1.255"), 32).collect();
        assert_eq!(got, vec![(v4("10.0.0.0"), 23)]);
        let got: Vec<_> = cidrs(v4("10.0.0.1"), v4("10.0.0.6"), 32).collect();
        assert_eq!(
            got,
            vec![
                (v4("10.0.0.1"), 32),
                (v4("10.0.0.2"), 31),
                (v4("10.0.0.4"), 31),
                (v4("10.0.0.6"), 32)
            ]
        );
        // The whole family is one /0, and its top end terminates.
        assert_eq!(
            cidrs(0, u128::from(u32::MAX), 32).collect::<Vec<_>>(),
            vec![(0, 0)]
        );
        assert_eq!(cidrs(0, u128::MAX, 128).collect::<Vec<_>>(), vec![(0, 0)]);
        let top: Vec<_> = cidrs(v4("255.255.255.254"), u128::from(u32::MAX), 32).collect();
        assert_eq!(top, vec![(v4("255.255.255.254"), 31)]);
        let top6: Vec<_> = cidrs(u128::MAX - 1, u128::MAX, 128).collect();
        assert_eq!(top6, vec![(u128::MAX - 1, 127)]);
    }
}
