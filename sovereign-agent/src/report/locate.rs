//! Where a destination is, as far as the datasets tell: the address's scope (public or not),
//! country, autonomous system and cloud provider/region; and which external AI API a name
//! belongs to (the catalogue built into this binary). Looked up once per address.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    rc::Rc,
};

use serde::Serialize;

use crate::policy::{
    catalogue::Catalogue,
    datasets::{DatasetInfo, DatasetKind, Entry, Loaded},
    prefix::{PrefixSets, PrefixSetsBuilder},
};

/// The member states of the European Economic Area (EU 27, Iceland, Liechtenstein, Norway).
pub const EEA: [&str; 30] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
];

pub fn is_eea(country: &str) -> bool {
    EEA.contains(&country)
}

/// What the datasets say about one address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Location {
    /// `public`, or why the address is not located: `loopback`, `private` (RFC 1918, ULA,
    /// CGNAT), `link_local`, `documentation`, `multicast`, `unspecified`.
    pub scope: &'static str,
    /// ISO 3166 code from the country database; `None`: not in it (or no database).
    pub country: Option<String>,
    pub asn: Option<u32>,
    pub organisation: Option<String>,
    pub cloud: Option<Cloud>,
}

/// The cloud provider range an address is in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Cloud {
    /// `aws`, `azure`, `gcp`, `oracle`.
    pub provider: &'static str,
    pub region: String,
    pub service: String,
    /// A range shared by unrelated customers or fronting anything (CDN, anycast): its region
    /// says little about where the data goes.
    pub shared: bool,
}

/// An external AI API endpoint of the catalogue that a name matched.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct AiEndpoint {
    pub provider: &'static str,
    pub provider_name: &'static str,
    pub host: &'static str,
    pub region: &'static str,
}

/// Addresses and names to facts, with a cache per address (a journal has few destinations
/// and many flows).
pub struct Locator {
    sets: PrefixSets,
    entries: Vec<Entry>,
    /// The datasets loaded, for the report's provenance.
    pub datasets: Vec<DatasetInfo>,
    cache: HashMap<IpAddr, Rc<Location>>,
    ai_exact: HashMap<&'static str, AiEndpoint>,
    ai_suffix: Vec<(&'static str, AiEndpoint)>,
    pub catalogue_version: &'static str,
}

impl Locator {
    pub fn new(loaded: Vec<Loaded>) -> Self {
        let mut builder = PrefixSetsBuilder::new();
        let mut entries = Vec::new();
        let mut datasets = Vec::new();
        for l in loaded {
            let base = entries.len() as u32;
            for (net, entry) in &l.prefixes {
                builder.insert(*net, base + entry);
            }
            entries.extend(l.entries);
            datasets.push(l.info);
        }
        let catalogue = Catalogue::builtin();
        let mut ai_exact = HashMap::new();
        let mut ai_suffix = Vec::new();
        for p in &catalogue.providers {
            for e in &p.endpoints {
                let endpoint = AiEndpoint {
                    provider: &p.id,
                    provider_name: &p.name,
                    host: &e.host,
                    region: &e.region,
                };
                match e.host.strip_prefix('*') {
                    Some(suffix) => ai_suffix.push((suffix, endpoint)),
                    None => {
                        ai_exact.insert(e.host.as_str(), endpoint);
                    }
                }
            }
        }
        Locator {
            sets: builder.build(),
            entries,
            datasets,
            cache: HashMap::new(),
            ai_exact,
            ai_suffix,
            catalogue_version: &catalogue.version,
        }
    }

    pub fn has(&self, kind: DatasetKind) -> bool {
        self.datasets.iter().any(|d| d.kind == kind)
    }

    pub fn has_cloud(&self) -> bool {
        self.datasets.iter().any(|d| {
            matches!(
                d.kind,
                DatasetKind::Aws | DatasetKind::Azure | DatasetKind::Gcp | DatasetKind::Oracle
            )
        })
    }

    pub fn locate(&mut self, ip: IpAddr) -> Rc<Location> {
        if let Some(l) = self.cache.get(&ip) {
            return l.clone();
        }
        let l = Rc::new(self.lookup(ip));
        self.cache.insert(ip, l.clone());
        l
    }

    fn lookup(&self, ip: IpAddr) -> Location {
        let scope = scope(ip);
        if scope != "public" {
            return Location {
                scope,
                ..Default::default()
            };
        }
        let mut location = Location {
            scope,
            ..Default::default()
        };
        // Nested ranges all match (an AWS `AMAZON` /16 and its `EC2` /20): the cloud entry
        // kept is the most telling one, a regional service over a generic or global one.
        let mut best: Option<(u8, &Entry)> = None;
        let mut shared = false;
        for &e in self.sets.lookup(ip) {
            let entry = &self.entries[e as usize];
            match entry.kind {
                DatasetKind::Country => location.country = Some(entry.region.clone()),
                DatasetKind::Asn => {
                    location.asn = entry.region.parse().ok();
                    location.organisation =
                        (!entry.service.is_empty()).then(|| entry.service.clone());
                }
                _ => {
                    shared |= entry.is_shared();
                    let generic = matches!(entry.service.as_str(), "AMAZON" | "")
                        || entry.name.starts_with("AzureCloud");
                    let rank = u8::from(!entry.region.is_empty() && entry.region != "GLOBAL") * 2
                        + u8::from(!generic);
                    if best.is_none_or(|(r, _)| rank > r) {
                        best = Some((rank, entry));
                    }
                }
            }
        }
        location.cloud = best.map(|(_, e)| Cloud {
            provider: e.kind.key(),
            region: if e.region.is_empty() {
                "global".to_string()
            } else {
                e.region.clone()
            },
            service: if e.kind == DatasetKind::Azure {
                e.name.clone()
            } else {
                e.service.clone()
            },
            shared,
        });
        location
    }

    /// The catalogue endpoint a name is, if any (`*.suffix` patterns match subdomains only).
    pub fn ai_endpoint(&self, name: &str) -> Option<&AiEndpoint> {
        let name = name.trim_end_matches('.');
        if let Some(e) = self.ai_exact.get(name) {
            return Some(e);
        }
        self.ai_suffix
            .iter()
            .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix))
            .map(|(_, e)| e)
    }
}

/// Whether an address is on the public Internet, or why not.
pub fn scope(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(a) => scope_v4(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => scope_v4(v4),
            None => scope_v6(a),
        },
    }
}

fn scope_v4(a: Ipv4Addr) -> &'static str {
    let o = a.octets();
    if a.is_unspecified() {
        "unspecified"
    } else if a.is_loopback() {
        "loopback"
    } else if a.is_private() || (o[0] == 100 && (64..128).contains(&o[1])) {
        "private"
    } else if a.is_link_local() {
        "link_local"
    } else if a.is_documentation() {
        "documentation"
    } else if a.is_multicast() || a.is_broadcast() {
        "multicast"
    } else {
        "public"
    }
}

fn scope_v6(a: Ipv6Addr) -> &'static str {
    let s = a.segments();
    if a.is_unspecified() {
        "unspecified"
    } else if a.is_loopback() {
        "loopback"
    } else if s[0] & 0xfe00 == 0xfc00 {
        "private"
    } else if s[0] & 0xffc0 == 0xfe80 {
        "link_local"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        "documentation"
    } else if a.is_multicast() {
        "multicast"
    } else {
        "public"
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::datasets;

    fn testdata(name: &str) -> Loaded {
        datasets::load(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../testdata")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn addresses_are_located_by_country_asn_and_cloud_region() {
        let mut l = Locator::new(vec![
            testdata("geoip/GeoLite2-Country-Test.mmdb"),
            testdata("geoip/GeoLite2-ASN-Test.mmdb"),
            testdata("cloud-ranges/aws-ip-ranges.json"),
        ]);
        let se = l.locate("89.160.20.112".parse().unwrap());
        assert_eq!(se.scope, "public");
        assert_eq!(se.country.as_deref(), Some("SE"));
        assert_eq!(se.asn, Some(29518));
        assert_eq!(se.organisation.as_deref(), Some("Bredband2 AB"));
        assert_eq!(se.cloud, None);
        // An EC2 range in Frankfurt, inside the generic AMAZON range.
        let aws = l.locate("3.120.0.1".parse().unwrap());
        let cloud = aws.cloud.as_ref().expect("an AWS range");
        assert_eq!(
            (cloud.provider, cloud.region.as_str(), cloud.shared),
            ("aws", "eu-central-1", false)
        );
        assert_eq!(
            l.locate("10.1.2.3".parse().unwrap()).scope,
            "private",
            "private addresses are not looked up"
        );
        assert_eq!(l.locate("::1".parse().unwrap()).scope, "loopback");
        assert_eq!(
            l.locate("2001:db8::1".parse().unwrap()).scope,
            "documentation"
        );
        assert!(is_eea("SE") && is_eea("NO") && !is_eea("CH") && !is_eea("GB"));
    }

    #[test]
    fn names_match_the_ai_catalogue() {
        let l = Locator::new(Vec::new());
        assert_eq!(l.ai_endpoint("api.openai.com").unwrap().provider, "openai");
        assert_eq!(
            l.ai_endpoint("myres.openai.azure.com.").unwrap().provider,
            "azure-openai"
        );
        assert!(l.ai_endpoint("openai.azure.com").is_none());
        assert!(l.ai_endpoint("crm.example.com").is_none());
    }
}
