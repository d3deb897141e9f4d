//! What each address is called, per cgroup: two containers that resolve the same name
//! differently do not mix. Bounded with `lru`; an eviction only forgets a name, it never
//! returns another address's names.
use std::{
    net::IpAddr,
    num::NonZeroUsize,
    time::{Duration, Instant},
};

use lru::LruCache;

#[derive(Clone, Debug)]
struct Entry {
    names: Vec<String>,
    expires: Instant,
}

pub struct NameMap {
    dns: LruCache<(u64, IpAddr), Entry>,
    sni_by_ip: LruCache<(u64, IpAddr), Entry>,
    sni_by_cookie: LruCache<u64, String>,
    /// DNS TTLs shorter than this are extended: applications cache answers longer than the
    /// TTL says, and a name that expires too early leaves a flow unnamed.
    ttl_floor: Duration,
}

/// The names known for one flow, and how they were learned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Naming {
    pub names: Vec<String>,
    pub source: &'static str,
    /// DNS and SNI disagree: both are in `names` (DNS first).
    pub conflict: bool,
}

impl NameMap {
    pub fn new(entries: NonZeroUsize, ttl_floor: Duration) -> Self {
        Self {
            dns: LruCache::new(entries),
            sni_by_ip: LruCache::new(entries),
            sni_by_cookie: LruCache::new(entries),
            ttl_floor,
        }
    }

    pub fn insert_dns(
        &mut self,
        cgroup: u64,
        ip: IpAddr,
        names: Vec<String>,
        ttl: u32,
        now: Instant,
    ) {
        let ttl = Duration::from_secs(ttl.into()).max(self.ttl_floor);
        self.dns.put(
            (cgroup, ip),
            Entry {
                names,
                expires: now + ttl,
            },
        );
    }

    pub fn insert_sni(&mut self, cgroup: u64, ip: IpAddr, cookie: u64, name: String, now: Instant) {
        self.sni_by_cookie.put(cookie, name.clone());
        self.sni_by_ip.put(
            (cgroup, ip),
            Entry {
                names: vec![name],
                expires: now + self.ttl_floor,
            },
        );
    }

    /// Names for a flow of `cookie` from `cgroup` to `ip`.
    pub fn lookup(&mut self, cgroup: u64, ip: IpAddr, cookie: u64, now: Instant) -> Naming {
        let dns = live(&mut self.dns, (cgroup, ip), now);
        let sni = self
            .sni_by_cookie
            .get(&cookie)
            .cloned()
            .or_else(|| live(&mut self.sni_by_ip, (cgroup, ip), now).and_then(|mut n| n.pop()));
        match (dns, sni) {
            (None, None) => Naming {
                names: Vec::new(),
                source: "none",
                conflict: false,
            },
            (Some(names), None) => Naming {
                names,
                source: "dns",
                conflict: false,
            },
            (None, Some(sni)) => Naming {
                names: vec![sni],
                source: "sni",
                conflict: false,
            },
            (Some(mut names), Some(sni)) => {
                let conflict = !names.contains(&sni);
                if conflict {
                    names.push(sni);
                }
                Naming {
                    names,
                    source: "dns+sni",
                    conflict,
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.dns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dns.is_empty()
    }
}

fn live(
    map: &mut LruCache<(u64, IpAddr), Entry>,
    key: (u64, IpAddr),
    now: Instant,
) -> Option<Vec<String>> {
    match map.get(&key) {
        Some(e) if e.expires > now => Some(e.names.clone()),
        Some(_) => {
            map.pop(&key);
            None
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_cgroup_names_do_not_mix() {
        let mut m = NameMap::new(NonZeroUsize::new(8).unwrap(), Duration::ZERO);
        let now = Instant::now();
        m.insert_dns(1, ip("203.0.113.5"), vec!["a.example".into()], 60, now);
        m.insert_dns(2, ip("203.0.113.5"), vec!["b.example".into()], 60, now);
        assert_eq!(m.lookup(1, ip("203.0.113.5"), 0, now).names, ["a.example"]);
        assert_eq!(m.lookup(2, ip("203.0.113.5"), 0, now).names, ["b.example"]);
        assert_eq!(m.lookup(3, ip("203.0.113.5"), 0, now).source, "none");
    }

    #[test]
    fn ttl_expiry_and_floor() {
        let now = Instant::now();
        let mut m = NameMap::new(NonZeroUsize::new(8).unwrap(), Duration::from_secs(30));
        m.insert_dns(1, ip("192.0.2.1"), vec!["x.example".into()], 5, now);
        assert_eq!(
            m.lookup(1, ip("192.0.2.1"), 0, now + Duration::from_secs(20))
                .source,
            "dns",
            "floor"
        );
        assert_eq!(
            m.lookup(1, ip("192.0.2.1"), 0, now + Duration::from_secs(31))
                .source,
            "none"
        );
        m.insert_dns(1, ip("192.0.2.2"), vec!["y.example".into()], 120, now);
        assert_eq!(
            m.lookup(1, ip("192.0.2.2"), 0, now + Duration::from_secs(100))
                .source,
            "dns"
        );
    }

    #[test]
    fn dns_and_sni_agree_or_conflict() {
        let now = Instant::now();
        let mut m = NameMap::new(NonZeroUsize::new(8).unwrap(), Duration::from_secs(60));
        m.insert_dns(
            1,
            ip("203.0.113.9"),
            vec!["llm.example".into(), "edge.cdn.example".into()],
            60,
            now,
        );
        m.insert_sni(1, ip("203.0.113.9"), 42, "llm.example".into(), now);
        let n = m.lookup(1, ip("203.0.113.9"), 42, now);
        assert_eq!((n.source, n.conflict), ("dns+sni", false));
        assert_eq!(n.names, ["llm.example", "edge.cdn.example"]);
        m.insert_sni(1, ip("203.0.113.9"), 43, "api.openai.com".into(), now);
        let n = m.lookup(1, ip("203.0.113.9"), 43, now);
        assert_eq!((n.source, n.conflict), ("dns+sni", true));
        assert_eq!(
            n.names,
            ["llm.example", "edge.cdn.example", "api.openai.com"]
        );
        // SNI only.
        m.insert_sni(1, ip("198.51.100.4"), 44, "sni-only.example".into(), now);
        let n = m.lookup(1, ip("198.51.100.4"), 99, now);
        assert_eq!(
            (n.source, n.names),
            ("sni", vec!["sni-only.example".to_string()])
        );
    }

    #[test]
    fn eviction_forgets_but_never_mislabels() {
        let now = Instant::now();
        let mut m = NameMap::new(NonZeroUsize::new(4).unwrap(), Duration::from_secs(60));
        for i in 0..1000u32 {
            let addr = IpAddr::from((0xC000_0200u32 + i).to_be_bytes());
            m.insert_dns(1, addr, vec![format!("host{i}.example")], 60, now);
            // Every address that is still known maps to its own name.
            for j in 0..=i {
                let a = IpAddr::from((0xC000_0200u32 + j).to_be_bytes());
                let n = m.lookup(1, a, 0, now);
                assert!(n.names.is_empty() || n.names == [format!("host{j}.example")]);
            }
            assert!(m.len() <= 4);
        }
    }
}
