//! The built-in catalogue of external AI API endpoints (data/ai-endpoints.toml, compiled into
//! the binary and versioned).
use serde::Deserialize;

static CATALOGUE_TOML: &str = include_str!("../../data/ai-endpoints.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    pub version: String,
    #[serde(rename = "provider")]
    pub providers: Vec<Provider>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub id: String,
    pub name: String,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub host: String,
    pub region: String,
}

impl Catalogue {
    /// The catalogue shipped with this build. It is checked by a unit test, so a bad edit
    /// fails CI rather than a running agent.
    pub fn builtin() -> &'static Catalogue {
        static CATALOGUE: std::sync::OnceLock<Catalogue> = std::sync::OnceLock::new();
        CATALOGUE.get_or_init(|| {
            toml::from_str(CATALOGUE_TOML).expect("data/ai-endpoints.toml is checked by tests")
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn builtin_catalogue_is_valid_and_broad() {
        let c: Catalogue = toml::from_str(CATALOGUE_TOML).unwrap();
        assert!(c.providers.len() >= 25, "{} providers", c.providers.len());
        let mut ids = HashSet::new();
        let mut hosts = HashSet::new();
        for p in &c.providers {
            assert!(ids.insert(p.id.as_str()), "duplicate provider {}", p.id);
            assert!(!p.endpoints.is_empty(), "{} has no endpoints", p.id);
            for e in &p.endpoints {
                assert!(hosts.insert(e.host.as_str()), "duplicate host {}", e.host);
                assert_eq!(e.host, e.host.to_ascii_lowercase(), "{}", e.host);
                let bare = e.host.strip_prefix("*.").unwrap_or(&e.host);
                assert!(
                    !bare.contains('*') && bare.contains('.'),
                    "bad host pattern {}",
                    e.host
                );
                assert!(!e.region.is_empty(), "{} has no region", e.host);
            }
        }
        for id in [
            "openai",
            "azure-openai",
            "anthropic",
            "google-vertex-ai",
            "aws-bedrock",
            "mistral",
        ] {
            assert!(ids.contains(id), "{id} missing");
        }
    }
}
