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
mod classify;
mod compile;
pub mod countries;
pub mod datasets;
pub mod enforce;
mod explain;
pub mod file;
pub mod prefix;
pub mod verdict;
pub mod watch;

use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use ipnet::IpNet;
use serde::Serialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

pub use crate::names::DnsChain;

/// Where the pipeline, the API and `/metrics` read the policy in force ([`watch`] publishes
/// each one that compiled).
pub type PolicyReceiver = tokio::sync::watch::Receiver<Option<Arc<Policy>>>;

use self::{
    catalogue::Catalogue,
    datasets::{DatasetInfo, DatasetKind, Entry, Loaded},
    file::{PolicyFile, RuleMode, Selector, UnknownWorkload},
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
    pub ancestors: &'a [Arc<str>],
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
    /// `monitor`, `audit` or `enforce` (see [`enforce`]).
    mode: RuleMode,
}

impl Rule {
    fn kernel_unknown_field(&self) -> Option<&'static str> {
        self.selectors
            .iter()
            .find_map(CompiledSelector::kernel_unknown_field)
    }

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
    /// The first field this selector uses that the kernel does not know at connect time
    /// (everything but the cgroup).
    fn kernel_unknown_field(&self) -> Option<&'static str> {
        [
            ("exe", self.exe.is_some()),
            ("ancestor_exe", self.ancestor_exe.is_some()),
            ("comm", self.comm.is_some()),
            ("container_id", self.container_id.is_some()),
            ("uid", !self.uid.is_empty()),
        ]
        .into_iter()
        .find_map(|(field, used)| used.then_some(field))
    }

    /// Whether it selects every process of the cgroup at `path` (a cgroup-only selector).
    fn selects_cgroup(&self, path: &str) -> bool {
        self.cgroup
            .as_ref()
            .is_none_or(|set| set.iter().any(|m| m.is_match(path)))
    }

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
                    .chain(flow.ancestors.iter().map(|a| &**a))
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
    unknown_workload: UnknownWorkload,
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

#[cfg(test)]
mod tests;
