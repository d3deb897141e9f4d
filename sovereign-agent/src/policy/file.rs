//! The policy file as written (TOML). `Spanned` values keep their byte position, so every
//! semantic error (an unknown zone, an invalid CIDR, a region no dataset has) can name its
//! line and column.
use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::verdict::{Decision, Severity};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub policy: Header,
    #[serde(default)]
    pub datasets: DatasetPaths,
    #[serde(default)]
    pub zones: BTreeMap<String, Spanned<ZoneDef>>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Spanned<RuleDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// What happens to a flow whose workload no rule selects.
    pub default: Decision,
    #[serde(default = "Severity::default_for_violations")]
    pub default_severity: Severity,
    /// What a flow gets when a rule's selector needs a fact about its process that is not
    /// known (its executable, its cgroup) and every known fact matches.
    #[serde(default)]
    pub unknown_workload: UnknownWorkload,
}

/// See [`Header::unknown_workload`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownWorkload {
    /// A violation under that rule: an identity that cannot be checked is not trusted.
    #[default]
    Violation,
    /// The policy's `default` decides.
    Default,
    /// The rule does not select the flow; later rules may.
    MatchNone,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetPaths {
    pub aws: Option<Spanned<String>>,
    pub azure: Option<Spanned<String>>,
    pub gcp: Option<Spanned<String>>,
    pub oracle: Option<Spanned<String>>,
    pub country: Option<Spanned<String>>,
    pub asn: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneDef {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub cidrs: Vec<Spanned<String>>,
    #[serde(default)]
    pub domains: Vec<Spanned<String>>,
    #[serde(default)]
    pub countries: Vec<Spanned<String>>,
    #[serde(default)]
    pub asns: Vec<Spanned<u32>>,
    #[serde(default)]
    pub aws: Vec<Spanned<String>>,
    #[serde(default)]
    pub aws_services: Vec<Spanned<String>>,
    #[serde(default)]
    pub azure: Vec<Spanned<String>>,
    #[serde(default)]
    pub azure_services: Vec<Spanned<String>>,
    #[serde(default)]
    pub gcp: Vec<Spanned<String>>,
    #[serde(default)]
    pub gcp_services: Vec<Spanned<String>>,
    #[serde(default)]
    pub oracle: Vec<Spanned<String>>,
    /// Entries of the built-in AI endpoint catalogue: `provider` or `provider:region`, globs.
    #[serde(default)]
    pub ai: Vec<Spanned<String>>,
    /// A name of this zone allows through any CNAME chain, wherever the chain ends (a SaaS
    /// whose CDN names change). The weaker choice: shown in the verdict's evidence.
    #[serde(default)]
    pub trust_cnames: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    /// Which workloads the rule is for: one selector, or a list of alternatives (any may
    /// match); absent selects every workload.
    #[serde(default)]
    pub workload: Workloads,
    /// Zones the workload may reach.
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    /// Zones that are violations even when an allowed zone also matches.
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    /// What happens to a destination in none of the rule's zones.
    #[serde(default = "Decision::violation")]
    pub otherwise: Decision,
    pub severity: Option<Severity>,
    /// What the agent does with the rule's violations: `monitor` records them, `audit`
    /// records what enforcement would refuse, `enforce` has the kernel refuse them.
    #[serde(default)]
    pub mode: Option<Spanned<RuleMode>>,
}

/// See [`RuleDef::mode`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleMode {
    /// Judge and record (the agent's behaviour without the key).
    #[default]
    Monitor,
    /// Judge exactly as enforcement would, and record `would_refuse`.
    Audit,
    /// The kernel refuses the connection; the flow is recorded as `refused`.
    Enforce,
}

impl RuleMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleMode::Monitor => "monitor",
            RuleMode::Audit => "audit",
            RuleMode::Enforce => "enforce",
        }
    }
}

/// `workload = { ... }` or `workload = [{ ... }, { ... }]`: any of the selectors may match.
#[derive(Debug)]
pub struct Workloads(pub Vec<Selector>);

impl Default for Workloads {
    fn default() -> Self {
        Workloads(vec![Selector::default()])
    }
}

impl<'de> Deserialize<'de> for Workloads {
    /// A table or an array of tables, each read as a [`Selector`] (so an unknown field is
    /// named, which an untagged enum would not do).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Workloads;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a workload selector table, or an array of them")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Workloads, A::Error> {
                Selector::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|s| Workloads(vec![s]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Workloads, A::Error> {
                Vec::<Selector>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(Workloads)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// All given fields must match; within a field, any listed value may match.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Executable path globs (`/opt/llm/**`, `/usr/bin/python3*`).
    #[serde(default)]
    pub exe: Vec<Spanned<String>>,
    /// Executable path globs of the process or any of its ancestors: the rule applies to a
    /// program and everything it starts.
    #[serde(default)]
    pub ancestor_exe: Vec<Spanned<String>>,
    /// Task name globs (the kernel's 15-byte comm).
    #[serde(default)]
    pub comm: Vec<Spanned<String>>,
    /// cgroup v2 path globs (`/system.slice/crm-sync.service`, `/kubepods.slice/**`).
    #[serde(default)]
    pub cgroup: Vec<Spanned<String>>,
    /// Container ids (full 64-hex ids, or globs such as `3f4e*`).
    #[serde(default)]
    pub container_id: Vec<Spanned<String>>,
    #[serde(default)]
    pub uid: Vec<u32>,
}
