//! What the benchmarks share: the real data sets and one residency policy's zones, so that
//! classification and replay are measured on the same tables.
use std::path::{Path, PathBuf};

/// The repository's real third-party data (testdata/README.md).
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// A policy named `name` with the zones an EU-resident LLM and CRM host uses (all four
/// clouds' EU regions, EU countries, the company's networks and domains, every external AI
/// API), followed by `rules` (TOML `[[rule]]` tables).
pub fn policy_text(name: &str, rules: &str) -> String {
    let geo = testdata().join("geoip");
    format!(
        r#"
[policy]
name = "{name}"
version = "1"
default = "allow"

[datasets]
country = "{geo}/GeoLite2-Country-Test.mmdb"
asn = "{geo}/GeoLite2-ASN-Test.mmdb"

[zones.eu-cloud]
aws = ["eu-*"]
azure = ["germanywestcentral", "westeurope", "northeurope"]
gcp = ["europe-*"]
oracle = ["eu-*"]

[zones.eu-countries]
countries = ["EU"]

[zones.company]
cidrs = ["10.0.0.0/8", "fd00::/8"]
domains = ["*.corp.example"]

[zones.external-ai]
ai = ["*"]
{rules}"#,
        geo = geo.display()
    )
}
