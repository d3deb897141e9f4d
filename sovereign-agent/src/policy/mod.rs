//! The residency policy engine: zones (CIDRs, domains, countries, ASNs, cloud regions, the AI
//! endpoint catalogue), rules per workload, and a verdict with evidence for every flow.
//!
//! Compilation turns a policy and its datasets into flat tables: every address fact (a
//! dataset entry such as AWS `eu-central-1/EC2`, a country, an ASN, a policy CIDR) sits in one
//! [`prefix::PrefixSets`], every name fact in a domain index, and each fact carries the
//! bitmask of the zones it belongs to. Classifying a flow is then one binary search, a few hash
//! lookups per name, and bit operations, with no allocation.
//!
//! Around the engine: [`watch`] keeps the running agent's policy current.
pub mod catalogue;
pub mod countries;
pub mod datasets;
pub mod file;
pub mod prefix;
pub mod verdict;
pub mod watch;

use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use ipnet::IpNet;
use serde::Serialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

pub use crate::names::DnsChain;

/// Where the pipeline, the API and `/metrics` read the policy in force ([`watch`] publishes
/// each one that compiled).
pub type PolicyReceiver = tokio::sync::watch::Receiver<Option<std::sync::Arc<Policy>>>;

use self::{
    catalogue::Catalogue,
    datasets::{DatasetInfo, DatasetKind, Entry, Loaded},
    file::{PolicyFile, Selector, UnknownWorkload},
    prefix::{PrefixSets, PrefixSetsBuilder},
    verdict::Verdict,
};
pub use verdict::{weak, Decision, Severity};

/// The most zones a policy may define (they are bits of a `u128`).
pub const MAX_ZONES: usize = 128;

/// One problem in a policy, with its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub place: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.place {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found in a policy (compilation does not stop at the first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// What the engine knows about one flow.
#[derive(Clone, Copy, Debug)]
pub struct Flow<'a> {
    pub ip: IpAddr,
    pub port: u16,
    /// DNS answers for the destination: CNAME chains, each verified or a claim.
    pub dns: &'a [DnsChain],
    /// The TLS server name the client sent: a claim.
    pub sni: Option<&'a str>,
    /// The client began a TLS handshake whose server name could not be read.
    pub sni_unreadable: bool,
    pub exe: Option<&'a str>,
    /// The interpreter running `exe` when it is a script: an `exe` selector matches either.
    pub interpreter: Option<&'a str>,
    /// Executables of the process's ancestors, parent first (as far as known).
    pub ancestors: &'a [String],
    pub comm: &'a str,
    pub cgroup: Option<&'a str>,
    pub container_id: Option<&'a str>,
    pub uid: u32,
}

impl Flow<'_> {
    fn has_names(&self) -> bool {
        self.sni.is_some() || self.dns.iter().any(|c| !c.names.is_empty())
    }

    /// The SNI is none of the names DNS gave for the address.
    fn name_conflict(&self) -> bool {
        match self.sni {
            Some(sni) => {
                !self.dns.is_empty()
                    && !self
                        .dns
                        .iter()
                        .flat_map(|c| &c.names)
                        .any(|n| n.trim_end_matches('.').eq_ignore_ascii_case(sni))
            }
            None => false,
        }
    }
}

/// How a name of a flow was learned, as the evidence of a verdict says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// The owner of the address record in a verified DNS answer.
    Dns,
    /// An earlier name of a verified chain (it reaches the address only through CNAMEs).
    DnsCname,
    /// A name from a DNS answer that verifies nothing (another resolver).
    DnsUntrusted,
    Sni,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Dns => "dns",
            Via::DnsCname => "dns_cname",
            Via::DnsUntrusted => "dns_untrusted",
            Via::Sni => "sni",
        }
    }
}

/// Each name of `flow` with how it was learned, DNS chains in order, then the SNI.
fn names_of<'a>(flow: &Flow<'a>) -> impl Iterator<Item = (&'a str, Via)> {
    let dns = flow.dns.iter().flat_map(|chain| {
        let last = chain.names.len().saturating_sub(1);
        chain.names.iter().enumerate().map(move |(i, n)| {
            let via = match (chain.verified, i == last) {
                (false, _) => Via::DnsUntrusted,
                (true, true) => Via::Dns,
                (true, false) => Via::DnsCname,
            };
            (n.as_str(), via)
        })
    });
    dns.chain(flow.sni.map(|s| (s, Via::Sni)))
}

/// A fact about a destination that zones are made of.
#[derive(Clone, Debug)]
enum Fact {
    Dataset {
        dataset: u16,
        entry: Entry,
    },
    Cidr {
        net: IpNet,
    },
    Domain {
        pattern: String,
    },
    Ai {
        provider: String,
        host: String,
        region: String,
    },
}

struct Zone {
    name: String,
    /// Defined (partly) by names: checking it needs the destination's name.
    by_name: bool,
}

/// Zones of a flow's destination, by how the facts that put it there were learned.
#[derive(Clone, Copy, Debug, Default)]
struct Matched {
    /// Address facts (CIDRs, countries, ASNs, cloud regions).
    address: u128,
    /// Names that an allow may rest on: the owner of a verified DNS answer, and the earlier
    /// names of a verified chain in zones that trust CNAMEs.
    verified: u128,
    /// Earlier names of verified chains in zones that do not trust CNAMEs.
    cname: u128,
    dns_untrusted: u128,
    sni: u128,
}

impl Matched {
    fn all(&self) -> u128 {
        self.address | self.verified | self.cname | self.dns_untrusted | self.sni
    }

    /// What an allow may rest on.
    fn allowable(&self) -> u128 {
        self.address | self.verified
    }
}

struct Rule {
    name: String,
    /// Alternatives: the rule selects a flow when any of them does.
    selectors: Vec<CompiledSelector>,
    allow: u128,
    deny: u128,
    otherwise: Decision,
    severity: Severity,
    by_name: bool,
}

impl Rule {
    fn selects(&self, flow: &Flow<'_>) -> Selected {
        let mut unknown = false;
        for s in &self.selectors {
            match s.selects(flow) {
                Selected::Yes => return Selected::Yes,
                Selected::Unknown => unknown = true,
                Selected::No => {}
            }
        }
        if unknown {
            Selected::Unknown
        } else {
            Selected::No
        }
    }
}

/// Whether a selector selects a flow's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Selected {
    Yes,
    No,
    /// Every known fact matches, but a fact the selector needs is not known (the process
    /// exited before it was read): `[policy] unknown_workload` decides.
    Unknown,
}

/// One selector pattern. The common shapes are plain string tests; the rest goes to globset.
enum Matcher {
    Exact(String),
    /// `prefix*`: the rest may not contain `sep` (for paths, `*` stays in one component).
    Prefix {
        prefix: String,
        sep: Option<char>,
    },
    /// `dir/**`: anything below `dir/`.
    Below(String),
    Glob(globset::GlobMatcher),
}

impl Matcher {
    fn new(pattern: &str, paths: bool) -> Result<Matcher, globset::Error> {
        const META: &[char] = &['*', '?', '[', ']', '{', '}', '\\', '!'];
        if !pattern.contains(META) {
            return Ok(Matcher::Exact(pattern.to_string()));
        }
        if let Some(dir) = pattern.strip_suffix("/**") {
            if !dir.contains(META) {
                return Ok(Matcher::Below(format!("{dir}/")));
            }
        }
        if let Some(prefix) = pattern.strip_suffix('*') {
            if !prefix.contains(META) {
                return Ok(Matcher::Prefix {
                    prefix: prefix.to_string(),
                    sep: paths.then_some('/'),
                });
            }
        }
        Ok(Matcher::Glob(
            GlobBuilder::new(pattern)
                .literal_separator(paths)
                .build()?
                .compile_matcher(),
        ))
    }

    #[inline]
    fn is_match(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(s) => value == s,
            Matcher::Prefix { prefix, sep } => value
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| sep.is_none_or(|c| !rest.contains(c))),
            Matcher::Below(dir) => value.starts_with(dir.as_str()),
            Matcher::Glob(g) => g.is_match(value),
        }
    }
}

#[derive(Default)]
struct CompiledSelector {
    /// The patterns as written, per field (for warnings).
    written: Vec<(&'static str, Vec<String>)>,
    exe: Option<Vec<Matcher>>,
    ancestor_exe: Option<Vec<Matcher>>,
    comm: Option<Vec<Matcher>>,
    cgroup: Option<Vec<Matcher>>,
    container_id: Option<Vec<Matcher>>,
    uid: Vec<u32>,
}

impl CompiledSelector {
    #[inline]
    fn selects(&self, flow: &Flow<'_>) -> Selected {
        /// `None`: the fact is not known.
        fn one(set: &Option<Vec<Matcher>>, value: Option<&str>) -> Option<bool> {
            match (set, value) {
                (None, _) => Some(true),
                (Some(set), Some(v)) => Some(set.iter().any(|m| m.is_match(v))),
                (Some(_), None) => None,
            }
        }
        // A process's container id is known (possibly none) whenever its cgroup is.
        let container = match (&self.container_id, flow.cgroup) {
            (None, _) => Some(true),
            (Some(set), Some(_)) => Some(
                flow.container_id
                    .is_some_and(|v| set.iter().any(|m| m.is_match(v))),
            ),
            (Some(_), None) => None,
        };
        // The process itself or any known ancestor; unknown when nothing of the lineage is.
        let lineage = match &self.ancestor_exe {
            None => Some(true),
            Some(set) => {
                let hit = flow
                    .exe
                    .into_iter()
                    .chain(flow.ancestors.iter().map(String::as_str))
                    .any(|e| set.iter().any(|m| m.is_match(e)));
                if hit {
                    Some(true)
                } else if flow.exe.is_none() && flow.ancestors.is_empty() {
                    None
                } else {
                    Some(false)
                }
            }
        };
        // A script is selected by its path or by its interpreter's: a rule on python3 is not
        // walked around by a file that starts with `#!/usr/bin/python3`.
        let exe = match (one(&self.exe, flow.exe), flow.interpreter) {
            (Some(false), Some(interpreter)) => one(&self.exe, Some(interpreter)),
            (fact, _) => fact,
        };
        let facts = [
            exe,
            lineage,
            one(&self.comm, Some(flow.comm)),
            one(&self.cgroup, flow.cgroup),
            container,
            Some(self.uid.is_empty() || self.uid.contains(&flow.uid)),
        ];
        if facts.contains(&Some(false)) {
            Selected::No
        } else if facts.contains(&None) {
            Selected::Unknown
        } else {
            Selected::Yes
        }
    }

    /// How many fields the selector constrains.
    fn fields(&self) -> usize {
        [
            self.exe.is_some(),
            self.ancestor_exe.is_some(),
            self.comm.is_some(),
            self.cgroup.is_some(),
            self.container_id.is_some(),
            !self.uid.is_empty(),
        ]
        .iter()
        .filter(|f| **f)
        .count()
    }
}

const SET_SHARED: u8 = 1;
const SET_LOCATED: u8 = 2;

/// A compiled policy.
pub struct Policy {
    pub name: String,
    pub version: String,
    pub description: String,
    /// `sha256:` and the hex digest of the policy file's bytes.
    pub hash: String,
    pub path: PathBuf,
    pub datasets: Vec<DatasetInfo>,
    pub catalogue_version: String,
    default: Decision,
    default_severity: Severity,
    unknown_workload: file::UnknownWorkload,
    /// Things the author probably did not mean (`policy check` prints them).
    pub warnings: Vec<String>,
    zones: Vec<Zone>,
    rules: Vec<Rule>,
    facts: Vec<Fact>,
    fact_zones: Vec<u128>,
    ips: PrefixSets,
    set_zones: Vec<u128>,
    set_flags: Vec<u8>,
    names_exact: HashMap<String, Vec<u32>>,
    names_suffix: HashMap<String, Vec<u32>>,
    /// Zones with `trust_cnames = true`.
    trust_cnames: u128,
}

impl Policy {
    /// Reads and compiles the policy at `path`, with the datasets it names and those in
    /// `datasets_dir`.
    pub fn load(path: &Path, datasets_dir: Option<&Path>) -> Result<Policy, PolicyErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            PolicyErrors(vec![PolicyError {
                file: path.to_path_buf(),
                place: None,
                message: format!("cannot read the policy: {e}"),
            }])
        })?;
        Self::compile(&text, path, datasets_dir)
    }

    /// Compiles policy `text` (read from `path`, which places errors and anchors relative
    /// dataset paths).
    pub fn compile(
        text: &str,
        path: &Path,
        datasets_dir: Option<&Path>,
    ) -> Result<Policy, PolicyErrors> {
        let mut c = Compiler::new(text, path);
        let parsed: PolicyFile = match toml::from_str(text) {
            Ok(p) => p,
            Err(e) => {
                let place = e.span().map(|s| c.place(s.start));
                return Err(PolicyErrors(vec![PolicyError {
                    file: path.to_path_buf(),
                    place,
                    message: e.message().trim().to_string(),
                }]));
            }
        };
        c.datasets(&parsed, datasets_dir);
        c.zones(&parsed);
        let rules = c.rules(&parsed);
        if !c.errors.is_empty() {
            return Err(PolicyErrors(c.errors));
        }
        Ok(c.finish(parsed, rules, text))
    }

    /// The zones of a name.
    fn name_zones(&self, name: &str) -> u128 {
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
    fn for_each_name_fact(&self, name: &str, mut f: impl FnMut(u32)) {
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
            rule: verdict
                .rule
                .map(|r| self.rules[r as usize].name.clone())
                .unwrap_or_else(|| "(policy default)".into()),
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

    pub fn zone_count(&self) -> usize {
        self.zones.len()
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Approximate heap bytes of the compiled tables (the datasets' share of memory).
    pub fn heap_bytes(&self) -> usize {
        self.ips.heap_bytes()
            + self.set_zones.len() * 17
            + self.facts.len() * 96
            + self.fact_zones.len() * 16
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

/// A verdict with its reasoning (JSON in events and `policy explain --json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    pub decision: Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    pub rule: String,
    /// The zones the decision rests on.
    pub zones: Vec<String>,
    /// Every zone the destination is in.
    pub matched_zones: Vec<String>,
    pub evidence: Vec<Evidence>,
    /// What the datasets say about the address, whether or not a zone uses it.
    pub destination: Vec<String>,
    pub weak: Vec<&'static str>,
    pub policy: PolicyRef,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evidence {
    pub zone: String,
    pub decisive: bool,
    pub source: &'static str,
    /// How the fact applies to the flow: `address`, or how the name was learned (`dns`,
    /// `dns_cname`, `dns_untrusted`, `sni`).
    pub via: &'static str,
    /// The flow's name the fact matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyRef {
    pub name: String,
    pub version: String,
    pub hash: String,
}

struct Compiler<'a> {
    text: &'a str,
    path: &'a Path,
    errors: Vec<PolicyError>,
    loaded: Vec<Loaded>,
    /// Facts, their zones, and the address prefixes of facts.
    facts: Vec<Fact>,
    fact_zones: Vec<u128>,
    prefixes: PrefixSetsBuilder,
    /// First fact id of each loaded dataset's entries.
    dataset_base: Vec<u32>,
    zones: Vec<Zone>,
    zone_index: HashMap<String, usize>,
    names_exact: HashMap<String, Vec<u32>>,
    names_suffix: HashMap<String, Vec<u32>>,
    catalogue_used: bool,
    trust_cnames: u128,
}

impl<'a> Compiler<'a> {
    fn new(text: &'a str, path: &'a Path) -> Self {
        Self {
            text,
            path,
            errors: Vec::new(),
            loaded: Vec::new(),
            facts: Vec::new(),
            fact_zones: Vec::new(),
            prefixes: PrefixSetsBuilder::new(),
            dataset_base: Vec::new(),
            zones: Vec::new(),
            zone_index: HashMap::new(),
            names_exact: HashMap::new(),
            names_suffix: HashMap::new(),
            catalogue_used: false,
            trust_cnames: 0,
        }
    }

    /// 1-based (line, column) of a byte offset.
    fn place(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    fn error_at<T>(&mut self, at: &Spanned<T>, message: String) {
        let place = Some(self.place(at.span().start));
        self.errors.push(PolicyError {
            file: self.path.to_path_buf(),
            place,
            message,
        });
    }

    fn error(&mut self, message: String) {
        self.errors.push(PolicyError {
            file: self.path.to_path_buf(),
            place: None,
            message,
        });
    }

    fn datasets(&mut self, parsed: &PolicyFile, dir: Option<&Path>) {
        let mut by_kind: HashMap<DatasetKind, Loaded> = HashMap::new();
        if let Some(dir) = dir {
            match datasets::load_dir(dir) {
                Ok(all) => {
                    for l in all {
                        if let Some(other) = by_kind.get(&l.info.kind) {
                            self.error(format!(
                                "--datasets {}: two {} datasets: {} and {}",
                                dir.display(),
                                l.info.kind.label(),
                                other.info.path.display(),
                                l.info.path.display()
                            ));
                            continue;
                        }
                        by_kind.insert(l.info.kind, l);
                    }
                }
                Err(e) => self.error(e.to_string()),
            }
        }
        let base = self.path.parent().unwrap_or(Path::new("."));
        let d = &parsed.datasets;
        for (kind, given) in [
            (DatasetKind::Aws, &d.aws),
            (DatasetKind::Azure, &d.azure),
            (DatasetKind::Gcp, &d.gcp),
            (DatasetKind::Oracle, &d.oracle),
            (DatasetKind::Country, &d.country),
            (DatasetKind::Asn, &d.asn),
        ] {
            let Some(given) = given else { continue };
            // A dataset named in the policy replaces one of the same kind from --datasets.
            let path = base.join(given.get_ref());
            match datasets::load(&path) {
                Ok(l) if l.info.kind != kind => self.error_at(
                    given,
                    format!(
                        "datasets.{kind}: {} is a {}, not a {}",
                        path.display(),
                        l.info.kind.label(),
                        kind.label()
                    ),
                ),
                Ok(l) => {
                    by_kind.insert(kind, l);
                }
                Err(e) => self.error_at(given, format!("datasets.{kind}: {e}")),
            }
        }
        let mut loaded: Vec<Loaded> = by_kind.into_values().collect();
        loaded.sort_by_key(|l| l.info.kind.key());
        for (i, l) in loaded.iter().enumerate() {
            let base = self.facts.len() as u32;
            self.dataset_base.push(base);
            for entry in &l.entries {
                self.facts.push(Fact::Dataset {
                    dataset: i as u16,
                    entry: entry.clone(),
                });
                self.fact_zones.push(0);
            }
            for (net, local) in &l.prefixes {
                self.prefixes.insert(*net, base + local);
            }
        }
        self.loaded = loaded;
    }

    fn dataset(&self, kind: DatasetKind) -> Option<usize> {
        self.loaded.iter().position(|l| l.info.kind == kind)
    }

    fn new_fact(&mut self, fact: Fact, zone: usize) -> u32 {
        self.facts.push(fact);
        self.fact_zones.push(1u128 << zone);
        (self.facts.len() - 1) as u32
    }

    fn zones(&mut self, parsed: &PolicyFile) {
        if parsed.zones.len() > MAX_ZONES {
            self.error(format!(
                "{} zones: at most {MAX_ZONES} are supported",
                parsed.zones.len()
            ));
            return;
        }
        for (z, (name, spanned)) in parsed.zones.iter().enumerate() {
            self.zone_index.insert(name.clone(), z);
            let def = spanned.get_ref();
            let by_name = !def.domains.is_empty() || !def.ai.is_empty();
            if def.trust_cnames {
                self.trust_cnames |= 1u128 << z;
            }
            self.zones.push(Zone {
                name: name.clone(),
                by_name,
            });
            let mut empty = true;
            for cidr in &def.cidrs {
                empty = false;
                match cidr.get_ref().parse::<IpNet>() {
                    Ok(net) => {
                        let fact = self.new_fact(Fact::Cidr { net: net.trunc() }, z);
                        self.prefixes.insert(net, fact);
                    }
                    Err(_) => self.error_at(
                        cidr,
                        format!("zone {name}: invalid CIDR {:?}", cidr.get_ref()),
                    ),
                }
            }
            for pattern in &def.domains {
                empty = false;
                match normalise_domain_pattern(pattern.get_ref()) {
                    Ok((exact, key)) => {
                        let fact = self.new_fact(
                            Fact::Domain {
                                pattern: pattern.get_ref().to_ascii_lowercase(),
                            },
                            z,
                        );
                        let index = if exact {
                            &mut self.names_exact
                        } else {
                            &mut self.names_suffix
                        };
                        index.entry(key).or_default().push(fact);
                    }
                    Err(why) => self.error_at(
                        pattern,
                        format!("zone {name}: domain {:?}: {why}", pattern.get_ref()),
                    ),
                }
            }
            for code in &def.countries {
                empty = false;
                let codes: Vec<&str> = if code.get_ref() == "EU" {
                    countries::EU.to_vec()
                } else if countries::is_code(code.get_ref()) {
                    vec![code.get_ref().as_str()]
                } else {
                    self.error_at(
                        code,
                        format!(
                            "zone {name}: {:?} is not an ISO 3166-1 alpha-2 country code (or EU)",
                            code.get_ref()
                        ),
                    );
                    continue;
                };
                let Some(ds) = self.dataset(DatasetKind::Country) else {
                    self.error_at(code, format!("zone {name}: countries need a GeoIP country database (datasets.country or --datasets)"));
                    break;
                };
                self.mark_entries(ds, z, |e| codes.contains(&e.region.as_str()));
            }
            for asn in &def.asns {
                empty = false;
                let Some(ds) = self.dataset(DatasetKind::Asn) else {
                    self.error_at(asn, format!("zone {name}: asns need a GeoIP ASN database (datasets.asn or --datasets)"));
                    break;
                };
                let number = asn.get_ref().to_string();
                self.mark_entries(ds, z, |e| e.region == number);
            }
            for (kind, regions, services) in [
                (DatasetKind::Aws, &def.aws, &def.aws_services),
                (DatasetKind::Azure, &def.azure, &def.azure_services),
                (DatasetKind::Gcp, &def.gcp, &def.gcp_services),
                (DatasetKind::Oracle, &def.oracle, &Vec::new()),
            ] {
                if regions.is_empty() {
                    if let Some(s) = services.first() {
                        self.error_at(
                            s,
                            format!("zone {name}: {kind}_services without {kind} regions"),
                        );
                    }
                    continue;
                }
                empty = false;
                let Some(ds) = self.dataset(kind) else {
                    self.error_at(&regions[0], format!("zone {name}: {kind} regions need a {} dataset (datasets.{kind} or --datasets)", kind.label()));
                    continue;
                };
                let services = match self.globs(services, name) {
                    Some(s) => s,
                    None => continue,
                };
                for region in regions {
                    let Some(glob) = self.glob(region, name) else {
                        continue;
                    };
                    let marked = self.mark_entries(ds, z, |e| {
                        e.region_names().iter().flatten().any(|r| glob.is_match(r))
                            && (services.is_empty()
                                || services.is_match(e.service.to_ascii_lowercase())
                                || services.is_match(e.name.to_ascii_lowercase()))
                    });
                    if marked == 0 {
                        let version = self.loaded[ds].info.version.clone();
                        self.error_at(
                            region,
                            format!(
                                "zone {name}: no {} region matches {:?}{} (dataset {version})",
                                kind.label(),
                                region.get_ref(),
                                if services.is_empty() {
                                    ""
                                } else {
                                    " with those services"
                                },
                            ),
                        );
                    }
                }
            }
            for reference in &def.ai {
                empty = false;
                self.catalogue_used = true;
                let (provider, region) = reference
                    .get_ref()
                    .split_once(':')
                    .unwrap_or((reference.get_ref(), "*"));
                let (Some(pg), Some(rg)) = (glob_of(provider), glob_of(region)) else {
                    self.error_at(
                        reference,
                        format!(
                            "zone {name}: invalid catalogue reference {:?}",
                            reference.get_ref()
                        ),
                    );
                    continue;
                };
                let mut found = 0;
                for p in &Catalogue::builtin().providers {
                    if !pg.is_match(&p.id) {
                        continue;
                    }
                    for e in p.endpoints.iter().filter(|e| rg.is_match(&e.region)) {
                        found += 1;
                        let fact = self.new_fact(
                            Fact::Ai {
                                provider: p.name.clone(),
                                host: e.host.clone(),
                                region: e.region.clone(),
                            },
                            z,
                        );
                        let (exact, key) = normalise_domain_pattern(&e.host)
                            .expect("catalogue hosts are checked by tests");
                        let index = if exact {
                            &mut self.names_exact
                        } else {
                            &mut self.names_suffix
                        };
                        index.entry(key).or_default().push(fact);
                    }
                }
                if found == 0 {
                    self.error_at(reference, format!(
                        "zone {name}: no AI catalogue endpoint matches {:?} (catalogue {}; providers: {})",
                        reference.get_ref(),
                        Catalogue::builtin().version,
                        Catalogue::builtin().providers.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            if empty {
                let at = spanned.span().start;
                let place = Some(self.place(at));
                self.errors.push(PolicyError {
                    file: self.path.to_path_buf(),
                    place,
                    message: format!("zone {name} is empty: give cidrs, domains, countries, asns, cloud regions or ai"),
                });
            }
        }
    }

    /// Marks the entries of dataset `ds` that `pred` selects as members of zone `z`.
    fn mark_entries(&mut self, ds: usize, z: usize, pred: impl Fn(&Entry) -> bool) -> usize {
        let base = self.dataset_base[ds] as usize;
        let mut n = 0;
        for (i, entry) in self.loaded[ds].entries.iter().enumerate() {
            if pred(entry) {
                self.fact_zones[base + i] |= 1u128 << z;
                n += 1;
            }
        }
        n
    }

    fn glob(&mut self, pattern: &Spanned<String>, zone: &str) -> Option<globset::GlobMatcher> {
        match glob_of(&pattern.get_ref().to_ascii_lowercase()) {
            Some(g) => Some(g),
            None => {
                self.error_at(
                    pattern,
                    format!("zone {zone}: invalid pattern {:?}", pattern.get_ref()),
                );
                None
            }
        }
    }

    fn globs(&mut self, patterns: &[Spanned<String>], zone: &str) -> Option<GlobSet> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            match Glob::new(&p.get_ref().to_ascii_lowercase()) {
                Ok(g) => {
                    b.add(g);
                }
                Err(e) => {
                    self.error_at(
                        p,
                        format!("zone {zone}: invalid pattern {:?}: {e}", p.get_ref()),
                    );
                    return None;
                }
            }
        }
        b.build().ok()
    }

    fn rules(&mut self, parsed: &PolicyFile) -> Vec<Rule> {
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

    fn finish(self, parsed: PolicyFile, rules: Vec<Rule>, text: &str) -> Policy {
        let ips = self.prefixes.build();
        let mut set_zones = Vec::with_capacity(ips.set_count());
        let mut set_flags = Vec::with_capacity(ips.set_count());
        for id in 0..ips.set_count() as u32 {
            let (mut zones, mut flags) = (0u128, 0u8);
            for &fact in ips.set(id) {
                zones |= self.fact_zones[fact as usize];
                if let Fact::Dataset { entry, .. } = &self.facts[fact as usize] {
                    flags |= SET_LOCATED;
                    if entry.is_shared() {
                        flags |= SET_SHARED;
                    }
                }
            }
            set_zones.push(zones);
            set_flags.push(flags);
        }
        let hash = format!("sha256:{:x}", Sha256::digest(text.as_bytes()));
        Policy {
            name: parsed.policy.name,
            version: parsed.policy.version,
            description: parsed.policy.description,
            hash,
            path: self.path.to_path_buf(),
            datasets: self.loaded.iter().map(|l| l.info.clone()).collect(),
            catalogue_version: if self.catalogue_used {
                Catalogue::builtin().version.clone()
            } else {
                String::new()
            },
            default: parsed.policy.default,
            default_severity: parsed.policy.default_severity,
            unknown_workload: parsed.policy.unknown_workload,
            warnings: fall_through_warnings(&rules, parsed.policy.default),
            zones: self.zones,
            rules,
            facts: self.facts,
            fact_zones: self.fact_zones,
            ips,
            set_zones,
            set_flags,
            names_exact: self.names_exact,
            names_suffix: self.names_suffix,
            trust_cnames: self.trust_cnames,
        }
    }
}

/// A rule whose selector constrains several fields selects a process only when all match: a
/// process that matches one of them (the same binary started from a shell, a cron job,
/// another pod) falls through to later rules. Said when where it lands is more permissive.
fn fall_through_warnings(rules: &[Rule], default: Decision) -> Vec<String> {
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

fn glob_of(pattern: &str) -> Option<globset::GlobMatcher> {
    Glob::new(pattern).ok().map(|g| g.compile_matcher())
}

/// `api.example.com` → (exact, "api.example.com"); `*.example.com` → (suffix, "example.com").
fn normalise_domain_pattern(pattern: &str) -> Result<(bool, String), &'static str> {
    let p = pattern.trim_end_matches('.').to_ascii_lowercase();
    let (exact, rest) = match p.strip_prefix("*.") {
        Some(rest) => (false, rest.to_string()),
        None => (true, p.clone()),
    };
    if rest.is_empty() || rest.contains('*') {
        return Err("use an exact name or *.suffix");
    }
    if rest
        .split('.')
        .any(|label| label.is_empty() || label.len() > 63)
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err("not a valid domain name");
    }
    Ok((exact, rest))
}

#[cfg(test)]
mod tests;
