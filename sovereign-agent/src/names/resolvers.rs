//! Which DNS servers' answers can verify a name. A workload chooses its resolver: one of its
//! own (in its cgroup, or anywhere it can reach) answers its queries with anything. Only the
//! servers the operator trusts verify; the answers of any other are claims.
use std::{fmt, net::IpAddr, path::Path};

/// A trusted DNS server: an address and a port (53 unless given).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Resolver {
    pub ip: IpAddr,
    pub port: u16,
}

impl fmt::Display for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V6(v6) => write!(f, "[{v6}]:{}", self.port),
            IpAddr::V4(v4) => write!(f, "{v4}:{}", self.port),
        }
    }
}

impl std::str::FromStr for Resolver {
    type Err = String;
    /// `192.0.2.53`, `192.0.2.53:5353`, `2001:db8::53` or `[2001:db8::53]:5353`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Resolver { ip, port: 53 });
        }
        match s.parse::<std::net::SocketAddr>() {
            Ok(sa) => Ok(Resolver {
                ip: sa.ip(),
                port: sa.port(),
            }),
            Err(_) => Err(format!(
                "{s:?} is not an IP address or IP:port (e.g. 10.96.0.10 or [fd00::a]:53)"
            )),
        }
    }
}

/// systemd-resolved's stub listener.
pub const RESOLVED_STUB: &str = "127.0.0.53";

/// The host's own resolvers: the `nameserver` lines of `resolv_conf` and the
/// systemd-resolved stub. A missing or unreadable file gives the stub alone.
pub fn host_defaults(resolv_conf: &Path) -> Vec<Resolver> {
    let mut out = vec![RESOLVED_STUB.parse().expect("a valid address")];
    let text = std::fs::read_to_string(resolv_conf).unwrap_or_default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        // A scoped IPv6 address (fe80::1%eth0) keeps its address without the scope.
        let Some(addr) = words.next().map(|a| a.split('%').next().unwrap_or(a)) else {
            continue;
        };
        if let Ok(r) = addr.parse::<Resolver>() {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    out
}

/// The `names.resolver_cgroups` patterns as one matcher; `what` names the key in errors.
pub fn resolver_cgroups(patterns: &[String], what: &str) -> Result<globset::GlobSet, String> {
    let mut set = globset::GlobSetBuilder::new();
    for p in patterns {
        set.add(
            globset::GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("{what}: {p:?}: {e}"))?,
        );
    }
    set.build().map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolver_cgroup_patterns_match_whole_path_segments() {
        let set = resolver_cgroups(
            &[
                "/system.slice/systemd-resolved.service".into(),
                "/kubepods.slice/*/coredns-*".into(),
            ],
            "names.resolver_cgroups",
        )
        .unwrap();
        assert!(set.is_match("/system.slice/systemd-resolved.service"));
        assert!(set.is_match("/kubepods.slice/pod1/coredns-abc"));
        assert!(!set.is_match("/kubepods.slice/pod1/x/coredns-abc"));
        assert!(!set.is_match("/system.slice/systemd-resolved.service/../evil"));
        let err = resolver_cgroups(&["[".into()], "names.resolver_cgroups").unwrap_err();
        assert!(err.starts_with("names.resolver_cgroups: \"[\""), "{err}");
    }

    #[test]
    fn parses_addresses_with_and_without_ports() {
        let r: Resolver = "10.96.0.10".parse().unwrap();
        assert_eq!((r.ip.to_string(), r.port), ("10.96.0.10".into(), 53));
        let r: Resolver = "[fd00::a]:5353".parse().unwrap();
        assert_eq!((r.to_string(), r.port), ("[fd00::a]:5353".into(), 5353));
        assert!("resolver.example".parse::<Resolver>().is_err());
    }

    #[test]
    fn reads_resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "# comment\nsearch example\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver 127.0.0.53\noptions edns0\n",
        )
        .unwrap();
        let rs: Vec<String> = host_defaults(&path)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(rs, ["127.0.0.53:53", "10.0.0.2:53", "[fe80::1]:53"]);
        assert_eq!(host_defaults(&dir.path().join("missing")).len(), 1);
    }
}
