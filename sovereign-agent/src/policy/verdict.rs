//! What the engine decides for a flow, and the evidence behind it.
use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Violation,
}

impl Decision {
    pub fn violation() -> Self {
        Decision::Violation
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decision::Allow => "allow",
            Decision::Violation => "violation",
        })
    }
}

/// How urgent a violation is. `info` is for inventory: recorded, never paged on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn default_for_violations() -> Self {
        Severity::High
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

/// Reasons a decision rests on weak ground, stated instead of guessed.
pub mod weak {
    /// No DNS or TLS name is known for the destination, and the deciding rule has zones
    /// defined by domain names: those could not be checked.
    pub const NO_NAME: u16 = 1;
    /// The address is in a shared or CDN range (e.g. AWS CLOUDFRONT, Azure Front Door): its
    /// region says little about where the data goes.
    pub const SHARED_RANGE: u16 = 2;
    /// The destination matched both an allowed and a denied zone of the deciding rule.
    pub const CONFLICTING_ZONES: u16 = 4;
    /// The address is in no dataset at all: its region and country are unknown.
    pub const UNKNOWN_LOCATION: u16 = 8;
    /// The TLS server name (the client's claim) is in an allowed zone: it cannot allow.
    pub const SNI_UNVERIFIED: u16 = 16;
    /// A name from a resolver that is not trusted is in an allowed zone: it cannot allow.
    pub const DNS_UNTRUSTED: u16 = 32;
    /// A verified CNAME chain starts in an allowed zone and ends outside it: judged on its
    /// end (the evidence names the hop).
    pub const CNAME_LEAVES_ZONE: u16 = 64;
    /// The connection's TLS server name is none of the names DNS gave for the address.
    pub const NAME_CONFLICT: u16 = 128;
    /// The connection began a TLS handshake whose server name could not be read.
    pub const SNI_UNREADABLE: u16 = 256;
    /// A rule's selector needs a fact about the process that is not known (it exited
    /// before it was read): `[policy] unknown_workload` decided.
    pub const UNKNOWN_WORKLOAD: u16 = 512;

    pub const ALL: [(u16, &str); 10] = [
        (NO_NAME, "no_name"),
        (SHARED_RANGE, "shared_range"),
        (CONFLICTING_ZONES, "conflicting_zones"),
        (UNKNOWN_LOCATION, "unknown_location"),
        (SNI_UNVERIFIED, "sni_unverified"),
        (DNS_UNTRUSTED, "dns_untrusted"),
        (CNAME_LEAVES_ZONE, "cname_leaves_zone"),
        (NAME_CONFLICT, "name_conflict"),
        (SNI_UNREADABLE, "sni_unreadable"),
        (UNKNOWN_WORKLOAD, "unknown_workload"),
    ];
}

/// The engine's answer, compact and allocation-free; [`super::Policy::explain`] turns it
/// into readable evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    pub severity: Option<Severity>,
    /// Index of the deciding rule; `None`: the policy default (no rule selected the workload).
    pub rule: Option<u16>,
    /// The zones the decision rests on (denied zones for a violation, allowed for an allow).
    pub decisive_zones: u128,
    /// Every zone the destination is in.
    pub matched_zones: u128,
    /// The destination's set of address facts (see `Policy::explain`).
    pub ip_set: u32,
    /// Bits of [`weak`].
    pub weak: u16,
}
