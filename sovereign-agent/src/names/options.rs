//! What naming is told: its bounds and trusted resolvers ([`NamesOptions`]), and what the
//! kernel says of each packet's socket ([`Provenance`]).
use std::{num::NonZeroUsize, time::Duration};

use super::resolvers::{self, Resolver};

/// systemd-resolved's cgroup: the host's stub resolver, a resolver every host names.
pub const SYSTEMD_RESOLVED_CGROUP: &str = "/system.slice/systemd-resolved.service";

/// What the kernel says about a packet's socket beyond the packet itself (the pipeline finds
/// it; the packet cannot forge it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// A query: its socket is in the network namespace where loopback resolvers are the
    /// host's (false when that is not known).
    pub trusted_netns: bool,
    /// A served answer: its socket belongs to a resolver the operator named
    /// (`names.resolver_cgroups`).
    pub named_resolver: bool,
    /// A query or an answer: the key of its workload's share of the query table and the name
    /// map (the pod, unit or container, not the leaf cgroup: four containers of one pod get
    /// one share); 0: the socket's cgroup.
    pub share: u64,
}

impl Provenance {
    /// A packet of the host's own network namespace, of no named resolver.
    pub const HOST: Provenance = Provenance {
        trusted_netns: true,
        named_resolver: false,
        share: 0,
    };
}

/// Tunables of naming (the `[names]` configuration section, and two older top-level keys).
#[derive(Clone, Debug)]
pub struct NamesOptions {
    /// Servers whose answers verify names.
    pub trusted_resolvers: Vec<Resolver>,
    /// (cgroup, address) entries with names, in all.
    pub map_entries: NonZeroUsize,
    /// ... and per cgroup.
    pub map_per_cgroup: NonZeroUsize,
    pub ttl_floor: Duration,
    pub ttl_cap: Duration,
    /// Outstanding DNS queries remembered, in all and per cgroup.
    pub query_table_entries: usize,
    pub query_table_per_cgroup: usize,
    /// An answer later than this after its query is refused (`expired`).
    pub query_timeout: Duration,
    /// cgroup paths (globs) of the resolvers whose answers count as theirs although a watched
    /// socket sent them (`names.resolver_cgroups`).
    pub resolver_cgroups: Vec<String>,
}

impl Default for NamesOptions {
    fn default() -> Self {
        Self {
            trusted_resolvers: resolvers::host_defaults(std::path::Path::new("/etc/resolv.conf")),
            map_entries: NonZeroUsize::new(65_536).unwrap(),
            map_per_cgroup: NonZeroUsize::new(16_384).unwrap(),
            ttl_floor: Duration::from_secs(60),
            ttl_cap: Duration::from_secs(86_400),
            query_table_entries: 10_000,
            query_table_per_cgroup: 2_500,
            query_timeout: Duration::from_secs(10),
            resolver_cgroups: vec![SYSTEMD_RESOLVED_CGROUP.into()],
        }
    }
}
