//! Enforcement: the maps the agent compiles from the policy's `mode = "enforce"` rules and
//! the connect and sendmsg programs decide from (docs/enforce.md). A connect or datagram is
//! refused (`EPERM`) when the deepest classified cgroup of the calling task has an enforce
//! class and the destination is denied for that class, or in none of its allowed prefixes
//! while the class's `otherwise` refuses. Loopback is never refused, and neither is an
//! address of the failsafe tries.

/// Name of the hash map of cgroup id → [`EnforceClass`]: which enforce rule decides for the
/// tasks of a cgroup and its descendants (the deepest classified ancestor wins; class 0 in
/// an entry: no enforce rule selects it). Written by the agent from a scan of the cgroup
/// tree.
pub const ENFORCE_CGROUPS_MAP: &str = "ENFORCE_CGROUPS";
/// Entries of [`ENFORCE_CGROUPS_MAP`].
pub const ENFORCE_CGROUP_ENTRIES: u32 = 65_536;
/// Name of the LPM trie of IPv4 destinations by class: key data `[class (4 bytes, big
/// endian), address (4)]`, prefix length `32 + prefix`; value an [`EnforceAction`].
pub const ENFORCE_V4_MAP: &str = "ENFORCE_V4";
/// Name of the LPM trie of IPv6 destinations by class: key data `[class (4, big endian),
/// address (16)]`; value an [`EnforceAction`].
pub const ENFORCE_V6_MAP: &str = "ENFORCE_V6";
/// Entries of each of [`ENFORCE_V4_MAP`] and [`ENFORCE_V6_MAP`]: every enforce rule's
/// prefixes, twice during a reload (the new generation is written before the old one goes).
pub const ENFORCE_PREFIX_ENTRIES: u32 = 1_048_576;
/// Names of the LPM tries of failsafe destinations (never refused): key data the address,
/// value 1. The trusted resolvers and the configured host and cluster essentials.
pub const ENFORCE_FAILSAFE_V4_MAP: &str = "ENFORCE_FAILSAFE_V4";
pub const ENFORCE_FAILSAFE_V6_MAP: &str = "ENFORCE_FAILSAFE_V6";
/// Entries of each failsafe trie.
pub const ENFORCE_FAILSAFE_ENTRIES: u32 = 4_096;
/// Name of the one-slot `u32` array that turns the decision on (1) or off (0): off, the
/// programs never look at the other maps (monitor mode costs nothing).
pub const ENFORCE_ON_MAP: &str = "ENFORCE_ON";
/// Deepest cgroup level the programs look at for a classified ancestor (a task deeper down
/// takes its level-8 ancestor's class; Kubernetes pods sit at level 4 or 5).
pub const ENFORCE_MAX_DEPTH: u32 = 8;

/// Value of [`ENFORCE_CGROUPS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnforceClass {
    /// The class (0: not enforced): the key prefix of its entries in the tries.
    pub class: u32,
    /// What a destination in none of the class's prefixes gets.
    pub otherwise: EnforceAction,
}

/// Value of the prefix tries, and a class's `otherwise`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnforceAction {
    /// [`ENFORCE_ALLOW`] or [`ENFORCE_REFUSE`].
    pub action: u32,
    /// The policy's rule index (for the refused record).
    pub rule: u32,
}

pub const ENFORCE_ALLOW: u32 = 1;
pub const ENFORCE_REFUSE: u32 = 2;

/// Key data of [`ENFORCE_V4_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnforceKeyV4 {
    pub class: [u8; 4],
    pub addr: [u8; 4],
}

/// Key data of [`ENFORCE_V6_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnforceKeyV6 {
    pub class: [u8; 4],
    pub addr: [u8; 16],
}
