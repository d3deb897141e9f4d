//! What a reader of events asks for, in the one syntax the API's `StreamEvents` filter,
//! `tail --dst`, `journal export --dst` and `replay --dst` share: a destination is a CIDR, an
//! address, or a name glob (`*.openai.com`); workloads and executables are globs where `*`
//! also crosses `/`.
use std::net::IpAddr;

use ipnet::IpNet;

/// A glob where `*` also crosses `/` (paths, names); the error names `what` (the flag or key).
pub fn glob(pattern: &str, what: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("{what} {pattern:?}: {e}"))
}

/// Where a flow went, as a filter: a network (an address is a network of one), or a name
/// glob matched against every name the flow was recorded with.
#[derive(Clone, Debug)]
pub enum Destination {
    Net(IpNet),
    Name(globset::GlobMatcher),
}

impl Destination {
    /// Parses `text` (CIDR, IP, or name glob, case-insensitive); the error names `what`.
    pub fn parse(text: &str, what: &str) -> Result<Self, String> {
        if let Ok(net) = text.parse::<IpNet>() {
            Ok(Destination::Net(net))
        } else if let Ok(ip) = text.parse::<IpAddr>() {
            Ok(Destination::Net(IpNet::from(ip)))
        } else {
            glob(&text.to_ascii_lowercase(), what).map(Destination::Name)
        }
    }

    /// Whether a flow to `ip` (none when unknown) with these names matches. A network never
    /// matches a flow whose address is unknown.
    pub fn matches<S: AsRef<str>>(
        &self,
        ip: Option<IpAddr>,
        names: impl IntoIterator<Item = S>,
    ) -> bool {
        match self {
            Destination::Net(net) => ip.is_some_and(|ip| net.contains(&ip)),
            Destination::Name(g) => names.into_iter().any(|n| g.is_match(n.as_ref())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_is_a_network_an_address_or_a_name_glob() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let none = || std::iter::empty::<&str>();
        let net = Destination::parse("10.0.0.0/8", "--dst").unwrap();
        assert!(net.matches(ip("10.1.2.3"), none()));
        assert!(!net.matches(ip("11.0.0.1"), none()));
        assert!(!net.matches(None, ["10.0.0.1"].into_iter()));
        let one = Destination::parse("2001:db8::1", "--dst").unwrap();
        assert!(one.matches(ip("2001:db8::1"), none()));
        assert!(!one.matches(ip("2001:db8::2"), none()));
        let name = Destination::parse("*.OpenAI.com", "--dst").unwrap();
        assert!(name.matches(None, ["x", "api.openai.com"].into_iter()));
        assert!(!name.matches(ip("10.0.0.1"), ["openai.com.evil.example"].into_iter()));
        let err = Destination::parse("a[", "filter.destination").unwrap_err();
        assert!(err.starts_with("filter.destination \"a[\""), "{err}");
    }

    #[test]
    fn a_glob_star_crosses_slashes() {
        let g = glob("/usr/bin/python*", "--exe").unwrap();
        assert!(g.is_match("/usr/bin/python3.11"));
        assert!(glob("*python*", "--exe")
            .unwrap()
            .is_match("/opt/venv/bin/python"));
        assert!(!g.is_match("/usr/local/bin/python3"));
    }
}
