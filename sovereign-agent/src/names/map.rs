//! What each address is called, per cgroup (two containers that resolve the same name
//! differently do not mix), and what each connection's ClientHello claimed.
//!
//! Bounded twice: `per_share` addresses per workload (its pod, unit or container: the share
//! key the caller gives, so four containers of one pod hold one share, not four) and
//! `capacity` in all. Names stay per cgroup all the same: a share only counts. A workload at
//! its share evicts its own least recently used address (of its cgroup holding the most, so
//! its containers end with equal parts); when the whole map is full, the workload holding the most addresses gives
//! one up. So a workload that floods answers, from however many cgroups, evicts its own names,
//! not another workload's. Evictions are counted per cgroup. An eviction only forgets a name;
//! it never returns another address's names.
use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroUsize,
    time::{Duration, Instant},
};

use lru::LruCache;
use serde::Serialize;

use super::hello::Hello;

/// One DNS answer's CNAME chain for an address, and how far it can be trusted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsChain {
    /// The name asked first, the owner of the address record last.
    pub names: Vec<String>,
    /// The server that answered (`ip:port`).
    pub resolver: String,
    /// An answer to this workload's own query, from a trusted resolver: the names are bound to
    /// the address. Otherwise they are claims (`dns_untrusted`).
    pub verified: bool,
}

/// The names known for one flow, and how they were learned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Naming {
    /// Every name, for people: the DNS chains in order, then the SNI if it is not among them.
    pub names: Vec<String>,
    /// `dns`, `dns_untrusted`, `sni`, `dns+sni`, `dns_untrusted+sni` or `none`.
    pub source: &'static str,
    /// The connection's SNI is none of the names DNS gave for the address.
    pub conflict: bool,
    pub dns: Vec<DnsChain>,
    /// The server name of the connection's ClientHello: the client's own claim.
    pub sni: Option<String>,
    /// The connection began a TLS handshake whose ClientHello could not be read.
    pub sni_unreadable: Option<&'static str>,
}

/// Chains kept per (cgroup, address): several names may share an address (a CDN).
const MAX_CHAINS: usize = 8;

#[derive(Clone, Debug)]
struct Entry {
    chains: Vec<(DnsChain, Instant)>,
}

struct Connection {
    ip: IpAddr,
    port: u16,
    hello: Hello,
}

pub struct NameMap {
    cgroups: HashMap<u64, LruCache<IpAddr, Entry>>,
    /// The share each cgroup holding names counts against (the first it was given).
    share_of: HashMap<u64, u64>,
    /// Addresses held per share.
    held: HashMap<u64, usize>,
    total: usize,
    capacity: usize,
    per_share: usize,
    /// DNS TTLs shorter than this are extended: applications cache answers longer than the
    /// TTL says, and a name that expires too early leaves a flow unnamed.
    ttl_floor: Duration,
    /// ... and longer ones are cut: a forged answer must not bind a name for years.
    ttl_cap: Duration,
    /// Addresses evicted, per cgroup that lost them.
    pub evictions: HashMap<u64, u64>,
    connections: LruCache<u64, Connection>,
}

impl NameMap {
    pub fn new(
        capacity: NonZeroUsize,
        per_share: NonZeroUsize,
        ttl_floor: Duration,
        ttl_cap: Duration,
    ) -> Self {
        Self {
            cgroups: HashMap::new(),
            share_of: HashMap::new(),
            held: HashMap::new(),
            total: 0,
            capacity: capacity.get(),
            per_share: per_share.get().min(capacity.get()),
            ttl_floor,
            ttl_cap: ttl_cap.max(ttl_floor),
            evictions: HashMap::new(),
            connections: LruCache::new(capacity),
        }
    }

    /// Names `ip` for `cgroup` (a cgroup of its own share; see [`NameMap::insert_shared`]).
    pub fn insert_dns(&mut self, cgroup: u64, ip: IpAddr, chain: DnsChain, ttl: u32, now: Instant) {
        self.insert_shared(cgroup, cgroup, ip, chain, ttl, now);
    }

    /// Names `ip` for `cgroup`, whose workload's share key is `share`.
    pub fn insert_shared(
        &mut self,
        cgroup: u64,
        share: u64,
        ip: IpAddr,
        chain: DnsChain,
        ttl: u32,
        now: Instant,
    ) {
        let expires = now
            + Duration::from_secs(ttl.into())
                .max(self.ttl_floor)
                .min(self.ttl_cap);
        if let Some(entry) = self.cgroups.get_mut(&cgroup).and_then(|m| m.get_mut(&ip)) {
            entry.chains.retain(|(c, at)| *at > now && c != &chain);
            if entry.chains.len() >= MAX_CHAINS {
                entry.chains.remove(0);
            }
            entry.chains.push((chain, expires));
            return;
        }
        let share = *self.share_of.entry(cgroup).or_insert(share);
        if self.held.get(&share).copied().unwrap_or(0) >= self.per_share {
            if let Some(c) = self.largest_cgroup_of(share) {
                self.evict_from(c);
            }
        } else if self.total >= self.capacity {
            let largest = self.held.iter().max_by_key(|(_, n)| **n).map(|(s, _)| *s);
            if let Some(c) = largest.and_then(|s| self.largest_cgroup_of(s)) {
                self.evict_from(c);
            }
        }
        // The eviction may have emptied this cgroup and dropped its share: count it again.
        self.share_of.entry(cgroup).or_insert(share);
        self.cgroups
            .entry(cgroup)
            .or_insert_with(LruCache::unbounded)
            .put(
                ip,
                Entry {
                    chains: vec![(chain, expires)],
                },
            );
        *self.held.entry(share).or_default() += 1;
        self.total += 1;
    }

    /// The cgroup of `share` holding the most addresses.
    fn largest_cgroup_of(&self, share: u64) -> Option<u64> {
        self.share_of
            .iter()
            .filter(|(_, s)| **s == share)
            .map(|(c, _)| (*c, self.len_of(*c)))
            .max_by_key(|(_, n)| *n)
            .map(|(c, _)| c)
    }

    fn evict_from(&mut self, cgroup: u64) {
        let popped = self
            .cgroups
            .get_mut(&cgroup)
            .and_then(LruCache::pop_lru)
            .is_some();
        if popped {
            *self.evictions.entry(cgroup).or_default() += 1;
            self.forgot_one(cgroup);
        }
    }

    /// One address of `cgroup` was removed: count it out of its share and the total.
    fn forgot_one(&mut self, cgroup: u64) {
        self.total -= 1;
        if let Some(share) = self.share_of.get(&cgroup).copied() {
            if let Some(n) = self.held.get_mut(&share) {
                *n -= 1;
                if *n == 0 {
                    self.held.remove(&share);
                }
            }
        }
        if self.cgroups.get(&cgroup).is_some_and(LruCache::is_empty) {
            self.cgroups.remove(&cgroup);
            self.share_of.remove(&cgroup);
        }
    }

    /// What the ClientHello of connection `cookie` (to `ip`, `port`) said.
    pub fn set_hello(&mut self, cookie: u64, ip: IpAddr, port: u16, hello: Hello) {
        self.connections.put(cookie, Connection { ip, port, hello });
    }

    /// Whether the ClientHello of connection `cookie` has been read (or found unreadable).
    pub fn hello_settled(&mut self, cookie: u64) -> bool {
        self.connections.contains(&cookie)
    }

    /// The connection `cookie` ended or is connecting anew: forget what its hello said.
    pub fn forget_connection(&mut self, cookie: u64) {
        self.connections.pop(&cookie);
    }

    /// Names for a flow of connection `cookie` from `cgroup` to `ip`:`port`.
    pub fn lookup(
        &mut self,
        cgroup: u64,
        ip: IpAddr,
        port: u16,
        cookie: u64,
        now: Instant,
    ) -> Naming {
        let mut dns = Vec::new();
        let mut expired = false;
        if let Some(map) = self.cgroups.get_mut(&cgroup) {
            if let Some(entry) = map.get_mut(&ip) {
                entry.chains.retain(|(_, at)| *at > now);
                dns.extend(entry.chains.iter().map(|(c, _)| c.clone()));
                if entry.chains.is_empty() {
                    map.pop(&ip);
                    expired = true;
                }
            }
        }
        if expired {
            self.forgot_one(cgroup);
        }
        let (mut sni, mut sni_unreadable) = (None, None);
        if let Some(c) = self.connections.get(&cookie) {
            if c.ip == ip && c.port == port {
                match &c.hello {
                    Hello::Name(n) => sni = Some(n.clone()),
                    Hello::Unreadable(why) => sni_unreadable = Some(*why),
                    Hello::NoName | Hello::Pending => {}
                }
            }
        }
        naming(dns, sni, sni_unreadable)
    }

    /// Addresses with names, in all cgroups.
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Addresses with names held for `cgroup`.
    pub fn len_of(&self, cgroup: u64) -> usize {
        self.cgroups.get(&cgroup).map_or(0, LruCache::len)
    }
}

/// The naming of a flow from its DNS chains and its connection's SNI.
pub fn naming(
    dns: Vec<DnsChain>,
    sni: Option<String>,
    sni_unreadable: Option<&'static str>,
) -> Naming {
    let mut names: Vec<String> = Vec::new();
    for chain in &dns {
        for n in &chain.names {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    let conflict = match &sni {
        Some(s) => !dns.is_empty() && !names.contains(s),
        None => false,
    };
    if let Some(s) = &sni {
        if !names.contains(s) {
            names.push(s.clone());
        }
    }
    let verified = dns.iter().any(|c| c.verified);
    let source = match (dns.is_empty(), verified, sni.is_some()) {
        (true, _, false) => "none",
        (true, _, true) => "sni",
        (false, true, false) => "dns",
        (false, false, false) => "dns_untrusted",
        (false, true, true) => "dns+sni",
        (false, false, true) => "dns_untrusted+sni",
    };
    Naming {
        names,
        source,
        conflict,
        dns,
        sni,
        sni_unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn chain(names: &[&str], verified: bool) -> DnsChain {
        DnsChain {
            names: names.iter().map(ToString::to_string).collect(),
            resolver: "192.0.2.53:53".into(),
            verified,
        }
    }

    fn map(capacity: usize, per_cgroup: usize) -> NameMap {
        NameMap::new(
            NonZeroUsize::new(capacity).unwrap(),
            NonZeroUsize::new(per_cgroup).unwrap(),
            Duration::from_secs(60),
            Duration::from_secs(86_400),
        )
    }

    #[test]
    fn per_cgroup_names_do_not_mix() {
        let mut m = map(8, 8);
        let now = Instant::now();
        m.insert_dns(1, ip("203.0.113.5"), chain(&["a.example"], true), 60, now);
        m.insert_dns(2, ip("203.0.113.5"), chain(&["b.example"], true), 60, now);
        assert_eq!(
            m.lookup(1, ip("203.0.113.5"), 443, 0, now).names,
            ["a.example"]
        );
        assert_eq!(
            m.lookup(2, ip("203.0.113.5"), 443, 0, now).names,
            ["b.example"]
        );
        assert_eq!(m.lookup(3, ip("203.0.113.5"), 443, 0, now).source, "none");
    }

    #[test]
    fn ttl_floor_and_cap() {
        let now = Instant::now();
        let mut m = NameMap::new(
            NonZeroUsize::new(8).unwrap(),
            NonZeroUsize::new(8).unwrap(),
            Duration::from_secs(30),
            Duration::from_secs(3600),
        );
        let at = |s| now + Duration::from_secs(s);
        m.insert_dns(1, ip("192.0.2.1"), chain(&["x.example"], true), 5, now);
        assert_eq!(
            m.lookup(1, ip("192.0.2.1"), 1, 0, at(20)).source,
            "dns",
            "floor"
        );
        assert_eq!(m.lookup(1, ip("192.0.2.1"), 1, 0, at(31)).source, "none");
        m.insert_dns(
            1,
            ip("192.0.2.2"),
            chain(&["y.example"], true),
            u32::MAX,
            now,
        );
        assert_eq!(m.lookup(1, ip("192.0.2.2"), 1, 0, at(3599)).source, "dns");
        assert_eq!(
            m.lookup(1, ip("192.0.2.2"), 1, 0, at(3601)).source,
            "none",
            "cap"
        );
    }

    #[test]
    fn several_names_per_address_and_sni_per_connection() {
        let now = Instant::now();
        let mut m = map(8, 8);
        let cdn = ip("203.0.113.9");
        m.insert_dns(
            1,
            cdn,
            chain(&["llm.example", "edge.cdn.example"], true),
            60,
            now,
        );
        m.insert_dns(
            1,
            cdn,
            chain(&["other.example", "edge.cdn.example"], true),
            60,
            now,
        );
        m.set_hello(42, cdn, 443, Hello::Name("other.example".into()));
        let n = m.lookup(1, cdn, 443, 42, now);
        assert_eq!((n.source, n.conflict), ("dns+sni", false));
        assert_eq!(n.dns.len(), 2);
        assert_eq!(
            n.names,
            ["llm.example", "edge.cdn.example", "other.example"]
        );
        // Another connection's SNI, or this cookie to another destination, is not used.
        assert_eq!(m.lookup(1, cdn, 443, 43, now).sni, None);
        assert_eq!(m.lookup(1, ip("203.0.113.10"), 443, 42, now).sni, None);
        assert_eq!(m.lookup(1, cdn, 8443, 42, now).sni, None);
        // SNI that DNS did not give: a conflict.
        m.set_hello(44, cdn, 443, Hello::Name("api.openai.com".into()));
        let n = m.lookup(1, cdn, 443, 44, now);
        assert!(n.conflict);
        assert_eq!(n.names.last().unwrap(), "api.openai.com");
        m.forget_connection(44);
        assert_eq!(m.lookup(1, cdn, 443, 44, now).sni, None);
        // SNI only, and untrusted DNS.
        m.set_hello(
            45,
            ip("198.51.100.4"),
            443,
            Hello::Name("sni-only.example".into()),
        );
        let n = m.lookup(1, ip("198.51.100.4"), 443, 45, now);
        assert_eq!((n.source, n.conflict), ("sni", false));
        m.insert_dns(
            1,
            ip("198.51.100.5"),
            chain(&["claim.example"], false),
            60,
            now,
        );
        assert_eq!(
            m.lookup(1, ip("198.51.100.5"), 443, 0, now).source,
            "dns_untrusted"
        );
        m.set_hello(46, ip("198.51.100.6"), 443, Hello::Unreadable("cut"));
        assert_eq!(
            m.lookup(1, ip("198.51.100.6"), 443, 46, now).sni_unreadable,
            Some("cut")
        );
    }

    #[test]
    fn a_flooding_cgroup_evicts_its_own_names_only() {
        let now = Instant::now();
        let mut m = map(1000, 600);
        for i in 0..100u32 {
            let a = IpAddr::from((0xC633_6400u32 + i).to_be_bytes());
            m.insert_dns(1, a, chain(&[&format!("keep{i}.example")], true), 60, now);
        }
        for i in 0..100_000u32 {
            let a = IpAddr::from((0x0A00_0000u32 + i).to_be_bytes());
            m.insert_dns(2, a, chain(&["flood.example"], true), 60, now);
        }
        assert!(m.len() <= 1000);
        assert_eq!(m.len_of(1), 100, "the quiet cgroup kept every name");
        for i in 0..100u32 {
            let a = IpAddr::from((0xC633_6400u32 + i).to_be_bytes());
            assert_eq!(
                m.lookup(1, a, 443, 0, now).names,
                [format!("keep{i}.example")]
            );
        }
        assert_eq!(m.evictions.get(&1), None);
        assert_eq!(m.evictions[&2], 100_000 - 600);
        // With many cgroups the map stays within its bound, the largest giving way.
        for c in 10..2000u64 {
            m.insert_dns(c, ip("192.0.2.1"), chain(&["x.example"], true), 60, now);
        }
        assert!(m.len() <= 1000);
    }

    #[test]
    fn the_cgroups_of_one_workload_hold_one_share() {
        let now = Instant::now();
        let mut m = map(1000, 300);
        let addr = |i: u32| IpAddr::from((0x0A00_0000u32 + i).to_be_bytes());
        // A neighbour (its own share) keeps 200 names.
        for i in 0..200 {
            m.insert_dns(9, addr(50_000 + i), chain(&["keep.example"], true), 60, now);
        }
        // Three cgroups of one workload (share 77) learn 400 names each.
        for c in 1..=3u64 {
            for i in 0..400 {
                m.insert_shared(c, 77, addr(i), chain(&["flood.example"], true), 60, now);
            }
        }
        assert_eq!(m.len(), 500);
        assert_eq!(m.len_of(9), 200, "the neighbour kept every name");
        assert_eq!(m.len_of(1) + m.len_of(2) + m.len_of(3), 300);
        for c in 1..=3 {
            assert!(
                (99..=101).contains(&m.len_of(c)),
                "equal parts: {}",
                m.len_of(c)
            );
        }
        assert_eq!(m.evictions.values().sum::<u64>(), 900);
        // Names expire out of the share: the workload may learn others again.
        let later = now + Duration::from_secs(61);
        for c in 1..=3 {
            for i in 0..400 {
                m.lookup(c, addr(i), 443, 0, later);
            }
        }
        assert_eq!(m.len(), 200);
        m.insert_shared(1, 77, addr(7), chain(&["again.example"], true), 60, later);
        assert_eq!(m.len_of(1), 1);
    }

    #[test]
    fn eviction_forgets_but_never_mislabels() {
        let now = Instant::now();
        let mut m = map(4, 4);
        for i in 0..1000u32 {
            let addr = IpAddr::from((0xC000_0200u32 + i).to_be_bytes());
            m.insert_dns(
                1,
                addr,
                chain(&[&format!("host{i}.example")], true),
                60,
                now,
            );
            for j in 0..=i {
                let a = IpAddr::from((0xC000_0200u32 + j).to_be_bytes());
                let n = m.lookup(1, a, 1, 0, now);
                assert!(n.names.is_empty() || n.names == [format!("host{j}.example")]);
            }
            assert!(m.len() <= 4);
        }
    }
}
