//! Policy engine tests against the real provider files and MaxMind test databases in
//! testdata/ (the repository root), read in place. Addresses are picked from the files themselves.
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use super::{
    verdict::{weak, Verdict},
    *,
};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// Writes `text` as a policy file next to nothing (datasets come from --datasets dirs).
fn policy(text: &str) -> Result<Policy, PolicyErrors> {
    let path = std::env::temp_dir().join(format!(
        "sa-policy-{}-{:x}.toml",
        std::process::id(),
        text.len()
    ));
    Policy::compile(text, &path, Some(&testdata().join("cloud-ranges"))).map(|mut p| {
        p.path = path;
        p
    })
}

/// The same with the GeoIP databases named in [datasets] (the geoip folder also holds the
/// deliberately corrupt ones, so it cannot be a --datasets directory).
const GEO: &str = r#"
[datasets]
country = "GEO/GeoLite2-Country-Test.mmdb"
asn = "GEO/GeoLite2-ASN-Test.mmdb"
"#;

fn with_geo(text: &str) -> String {
    format!(
        "{text}\n{}",
        GEO.replace("GEO", testdata().join("geoip").to_str().unwrap())
    )
}

const EU_LLM: &str = r#"
[policy]
name = "eu-llm"
version = "7"
default = "allow"

[zones.eu-cloud]
aws = ["eu-*"]
azure = ["germanywestcentral", "westeurope"]
gcp = ["europe-west3"]
oracle = ["eu-frankfurt-1"]

[zones.eu-countries]
countries = ["EU", "GB"]

[zones.internal]
cidrs = ["10.0.0.0/8", "fd00::/8"]
domains = ["*.corp.example", "crm.example.eu"]

[zones.external-ai]
ai = ["*"]

[zones.us-cloud]
aws = ["us-*"]
aws_services = ["EC2", "S3"]

[[rule]]
name = "llm"
workload = { exe = ["/opt/llm/**"], cgroup = ["/system.slice/llm.service"] }
allow = ["eu-cloud", "internal", "eu-countries"]
deny = ["external-ai"]
severity = "critical"

[[rule]]
name = "crm-sync"
workload = { comm = ["crm-sync*"] }
allow = ["internal"]
otherwise = "violation"
severity = "high"

[[rule]]
name = "inventory"
deny = ["external-ai"]
otherwise = "allow"
severity = "info"
"#;

/// One verified DNS chain (an answer to the workload's own query from a trusted resolver).
fn verified(names: &[&str]) -> Vec<DnsChain> {
    vec![DnsChain {
        names: names.iter().map(ToString::to_string).collect(),
        resolver: "127.0.0.53:53".into(),
        verified: true,
    }]
}

fn flow<'a>(ip: &str, dns: &'a [DnsChain], exe: &'a str, comm: &'a str) -> Flow<'a> {
    Flow {
        ip: ip.parse().unwrap(),
        port: 443,
        dns,
        sni: None,
        sni_unreadable: false,
        exe: Some(exe),
        interpreter: None,
        ancestors: &[],
        comm,
        cgroup: Some("/system.slice/llm.service"),
        container_id: None,
        uid: 1000,
    }
}

/// An address inside the first prefix of `file` that `pick` selects.
fn address_from(file: &str, pick: impl Fn(&serde_json::Value) -> Option<String>) -> IpAddr {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(testdata().join(file)).unwrap()).unwrap();
    let prefix = walk(&v, &pick).expect("a matching prefix");
    let net: IpNet = prefix.parse().unwrap();
    // One past the network address (still inside unless it is a /32).
    match net.hosts().next() {
        Some(ip) => ip,
        None => net.network(),
    }
}

fn walk(
    v: &serde_json::Value,
    pick: &impl Fn(&serde_json::Value) -> Option<String>,
) -> Option<String> {
    if let Some(p) = pick(v) {
        return Some(p);
    }
    match v {
        serde_json::Value::Array(a) => a.iter().find_map(|x| walk(x, pick)),
        serde_json::Value::Object(o) => o.values().find_map(|x| walk(x, pick)),
        _ => None,
    }
}

const LLM: &str = "/opt/llm/bin/server";

#[test]
fn aws_eu_address_is_allowed_with_region_service_and_sync_token() {
    let p = policy(&with_geo(EU_LLM)).unwrap();
    let ip = address_from("cloud-ranges/aws-ip-ranges.json", |v| {
        (v["region"] == "eu-central-1" && v["service"] == "EC2")
            .then(|| v["ip_prefix"].as_str().map(String::from))?
    });
    let v = p.classify(&flow(&ip.to_string(), &[], LLM, "server"));
    assert_eq!(v.decision, Decision::Allow);
    let e = p.explain(&flow(&ip.to_string(), &[], LLM, "server"), &v);
    assert_eq!(e.rule, "llm");
    assert!(e.zones.contains(&"eu-cloud".to_string()), "{e:#?}");
    assert!(
        e.evidence.iter().any(|x| x.zone == "eu-cloud"
            && x.detail.contains("AWS eu-central-1/EC2")
            && x.detail.contains("syncToken 1753388594")),
        "{e:#?}"
    );
    assert_eq!(e.policy.name, "eu-llm");
    assert!(e.policy.hash.starts_with("sha256:") && e.policy.hash.len() == 71);
}

#[test]
fn aws_us_address_is_a_violation_and_says_where_it_is() {
    let p = policy(&with_geo(EU_LLM)).unwrap();
    let ip = address_from("cloud-ranges/aws-ip-ranges.json", |v| {
        (v["region"] == "us-east-1" && v["service"] == "EC2")
            .then(|| v["ip_prefix"].as_str().map(String::from))?
    });
    let f = flow(&ip.to_string(), &[], LLM, "server");
    let v = p.classify(&f);
    assert_eq!(v.decision, Decision::Violation);
    assert_eq!(v.severity, Some(Severity::Critical));
    let e = p.explain(&f, &v);
    assert!(e.zones.is_empty(), "no zone of the rule matched: {e:#?}");
    assert!(e.matched_zones.contains(&"us-cloud".to_string()));
    assert!(
        e.destination
            .iter()
            .any(|d| d.contains("AWS us-east-1/EC2")),
        "{e:#?}"
    );
    // The rule has name-based zones and the flow has no name: stated, not guessed.
    assert!(e.weak.contains(&"no_name"), "{e:#?}");
}

#[test]
fn azure_gcp_and_oracle_regions_match() {
    let p = policy(&with_geo(EU_LLM)).unwrap();
    let azure = address_from("cloud-ranges/microsoft-azure-ip-ranges.json", |v| {
        (v["name"] == "Storage.GermanyWestCentral").then(|| {
            v["properties"]["addressPrefixes"][0]
                .as_str()
                .map(String::from)
        })?
    });
    let gcp = address_from("cloud-ranges/google-cloud-ip-ranges.json", |v| {
        (v["scope"] == "europe-west3").then(|| v["ipv4Prefix"].as_str().map(String::from))?
    });
    let oracle = address_from("cloud-ranges/oracle-cloud-ip-ranges.json", |v| {
        (v["region"] == "eu-frankfurt-1")
            .then(|| v["cidrs"][0]["cidr"].as_str().map(String::from))?
    });
    for (ip, expect) in [
        (azure, "Azure Storage.GermanyWestCentral"),
        (gcp, "Google Cloud europe-west3"),
        (oracle, "Oracle Cloud eu-frankfurt-1"),
    ] {
        let f = flow(&ip.to_string(), &[], LLM, "server");
        let v = p.classify(&f);
        let e = p.explain(&f, &v);
        assert_eq!(v.decision, Decision::Allow, "{ip}: {e:#?}");
        assert!(
            e.evidence
                .iter()
                .any(|x| x.zone == "eu-cloud" && x.detail.contains(expect)),
            "{ip}: {e:#?}"
        );
    }
}

#[test]
fn countries_from_the_geoip_database() {
    let p = policy(&with_geo(EU_LLM)).unwrap();
    // From GeoLite2-Country-Test.json: 2.125.160.216/29 is GB, 50.114.0.0/22 is US.
    let gb = flow("2.125.160.218", &[], LLM, "server");
    let v = p.classify(&gb);
    let e = p.explain(&gb, &v);
    assert_eq!(v.decision, Decision::Allow, "{e:#?}");
    assert!(
        e.evidence
            .iter()
            .any(|x| x.zone == "eu-countries" && x.detail.contains("country GB")),
        "{e:#?}"
    );
    assert_eq!(
        datasets::mmdb_country(&testdata().join("geoip/GeoLite2-Country-Test.mmdb"), gb.ip)
            .as_deref(),
        Some("GB")
    );
    let us = flow("50.114.0.1", &[], LLM, "server");
    let v = p.classify(&us);
    assert_eq!(v.decision, Decision::Violation);
    assert!(p
        .explain(&us, &v)
        .destination
        .iter()
        .any(|d| d.contains("country US")));
}

#[test]
fn asn_zones_use_the_asn_database() {
    let text = with_geo(
        "[policy]\nname = \"asn\"\nversion = \"1\"\ndefault = \"allow\"\n[zones.google]\nasns = [15169]\n[[rule]]\nname = \"no-google\"\ndeny = [\"google\"]\notherwise = \"allow\"\n",
    );
    let p = policy(&text).unwrap();
    // GeoLite2-ASN-Test.json: 1.0.0.0/24 is AS15169 Google Inc.; 1.128.0.0/11 is AS1221.
    let f = flow("1.0.0.1", &[], LLM, "x");
    let v = p.classify(&f);
    assert_eq!(v.decision, Decision::Violation);
    assert!(p
        .explain(&f, &v)
        .evidence
        .iter()
        .any(|x| x.detail.contains("AS15169 Google Inc.")));
    assert_eq!(
        p.classify(&flow("1.128.0.1", &[], LLM, "x")).decision,
        Decision::Allow
    );
}

#[test]
fn domain_zones_and_the_ai_catalogue_match_names() {
    let p = policy(&with_geo(EU_LLM)).unwrap();
    let names = verified(&["API.OpenAI.com."]);
    let f = flow("203.0.113.10", &names, LLM, "server");
    let v = p.classify(&f);
    let e = p.explain(&f, &v);
    assert_eq!(v.decision, Decision::Violation, "{e:#?}");
    assert_eq!(e.zones, ["external-ai"]);
    assert!(
        e.evidence.iter().any(|x| x.source == "ai"
            && x.detail.contains("api.openai.com")
            && x.detail.contains("catalogue 2026.11.28")),
        "{e:#?}"
    );
    let azure = verified(&["mycompany.openai.azure.com"]);
    assert_eq!(
        p.classify(&flow("203.0.113.10", &azure, LLM, "server"))
            .decision,
        Decision::Violation
    );
    // *.suffix matches subdomains, not the bare suffix.
    let internal = verified(&["db.corp.example"]);
    assert_eq!(
        p.classify(&flow("203.0.113.10", &internal, LLM, "server"))
            .decision,
        Decision::Allow
    );
    let bare = verified(&["corp.example"]);
    assert_eq!(
        p.classify(&flow("203.0.113.10", &bare, LLM, "server"))
            .decision,
        Decision::Violation
    );
}

#[test]
fn first_matching_rule_wins_and_the_default_applies_to_the_rest() {
    let p = policy(&with_geo(EU_LLM)).unwrap();
    let us = address_from("cloud-ranges/aws-ip-ranges.json", |v| {
        (v["region"] == "us-east-1" && v["service"] == "S3")
            .then(|| v["ip_prefix"].as_str().map(String::from))?
    })
    .to_string();
    // The LLM server's selector needs both the exe glob and the cgroup.
    assert_eq!(p.classify(&flow(&us, &[], LLM, "server")).rule, Some(0));
    let mut other_cgroup = flow(&us, &[], LLM, "server");
    other_cgroup.cgroup = Some("/system.slice/other.service");
    // Not the LLM rule; comm is not crm-sync: the inventory rule (every workload) decides.
    let v = p.classify(&other_cgroup);
    assert_eq!((v.rule, v.decision), (Some(2), Decision::Allow));
    let crm = flow(&us, &[], "/usr/bin/crm-sync", "crm-sync-job");
    let v = p.classify(&crm);
    assert_eq!(
        (v.rule, v.decision, v.severity),
        (Some(1), Decision::Violation, Some(Severity::High))
    );
    // The inventory rule records external AI use at severity info.
    let names = verified(&["api.anthropic.com"]);
    let v = p.classify(&flow("203.0.113.7", &names, "/usr/bin/python3", "python3"));
    assert_eq!(
        (v.rule, v.decision, v.severity),
        (Some(2), Decision::Violation, Some(Severity::Info))
    );
}

#[test]
fn weak_ground_is_stated() {
    let p = policy(&with_geo(EU_LLM)).unwrap();
    let cdn = address_from("cloud-ranges/aws-ip-ranges.json", |v| {
        (v["service"] == "CLOUDFRONT").then(|| v["ip_prefix"].as_str().map(String::from))?
    });
    let v = p.classify(&flow(&cdn.to_string(), &[], LLM, "server"));
    assert!(v.weak & weak::SHARED_RANGE != 0, "{v:?}");
    // Allowed by address (internal CIDR) and denied by name (AI catalogue): both said.
    let names = verified(&["api.mistral.ai"]);
    let v = p.classify(&flow("10.1.2.3", &names, LLM, "server"));
    assert_eq!(v.decision, Decision::Violation);
    assert!(v.weak & weak::CONFLICTING_ZONES != 0);
    // A public address that no dataset knows.
    let v = p.classify(&flow("203.0.113.9", &[], LLM, "server"));
    assert!(v.weak & weak::UNKNOWN_LOCATION != 0);
    // Private addresses are not "unknown locations".
    let v = p.classify(&flow("10.9.9.9", &[], LLM, "server"));
    assert_eq!(v.weak & weak::UNKNOWN_LOCATION, 0);
}

fn errors(text: &str) -> Vec<String> {
    match policy(text) {
        Ok(_) => panic!("policy compiled"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn every_error_has_its_line_and_column() {
    let text = r#"[policy]
name = "bad"
version = "1"
default = "allow"
[zones.a]
cidrs = ["10.0.0.0/33"]
countries = ["XX"]
aws = ["eu-centrl-1"]
[zones.b]
domains = ["api.*.example"]
ai = ["no-such-provider"]
[[rule]]
name = "r"
allow = ["a", "nope"]
[[rule]]
name = "r"
"#;
    let errs = errors(text);
    let has = |place: &str, what: &str| errs.iter().any(|e| e.contains(place) && e.contains(what));
    assert!(has(":6:10:", "invalid CIDR \"10.0.0.0/33\""), "{errs:#?}");
    assert!(has(":7:14:", "\"XX\" is not an ISO 3166-1"), "{errs:#?}");
    assert!(
        has(
            ":8:8:",
            "no AWS ip-ranges.json region matches \"eu-centrl-1\""
        ),
        "{errs:#?}"
    );
    assert!(has(":10:12:", "domain \"api.*.example\""), "{errs:#?}");
    assert!(
        has(
            ":11:7:",
            "no AI catalogue endpoint matches \"no-such-provider\""
        ),
        "{errs:#?}"
    );
    assert!(has(":14:15:", "unknown zone \"nope\""), "{errs:#?}");
    assert!(has(":16:8:", "duplicate rule name \"r\""), "{errs:#?}");
    assert_eq!(errs.len(), 7, "{errs:#?}");
}

#[test]
fn syntax_errors_and_unknown_keys_are_placed() {
    let errs = errors("[policy]\nname = \"x\"\nversion = 1.2.3\n");
    assert!(errs[0].contains(":3:"), "{errs:#?}");
    let errs = errors("[policy]\nname = \"x\"\nversion = \"1\"\ndefault = \"allow\"\n[zones.a]\ncidr = [\"10.0.0.0/8\"]\n");
    assert!(
        errs[0].contains(":6:1:") && errs[0].contains("cidr"),
        "{errs:#?}"
    );
}

#[test]
fn missing_datasets_are_named() {
    let text = "[policy]\nname = \"x\"\nversion = \"1\"\ndefault = \"allow\"\n[zones.de]\ncountries = [\"DE\"]\n";
    let errs = errors(text);
    assert!(
        errs[0].contains(":6:14:") && errs[0].contains("GeoIP country database"),
        "{errs:#?}"
    );
    let text = "[policy]\nname = \"x\"\nversion = \"1\"\ndefault = \"allow\"\n[datasets]\nasn = \"/nonexistent/asn.mmdb\"\n";
    let errs = errors(text);
    assert!(
        errs[0].contains(":6:7:") && errs[0].contains("/nonexistent/asn.mmdb"),
        "{errs:#?}"
    );
    let corrupt = format!(
        "[policy]\nname = \"x\"\nversion = \"1\"\ndefault = \"allow\"\n[datasets]\ncountry = \"{}\"\n",
        testdata().join("geoip/MaxMind-DB-test-broken-search-tree-24.mmdb").display()
    );
    let errs = errors(&corrupt);
    assert!(errs[0].contains("corrupt MaxMind database"), "{errs:#?}");
}

#[test]
fn examples_compile() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            n += 1;
            if let Err(e) = Policy::load(&path, Some(&testdata().join("cloud-ranges"))) {
                panic!("{e}");
            }
        }
    }
    assert!(n >= 3, "{n} examples");
}

#[test]
fn all_four_provider_files_load_fast_enough_to_matter_and_fit_in_memory() {
    // Functional check only (timings are benchmarks, see benches/classify.rs): every prefix
    // of every provider is in the table.
    let p = policy(&with_geo(EU_LLM)).unwrap();
    let total: usize = p.datasets.iter().map(|d| d.prefixes).sum();
    assert!(total > 104_000, "{total}");
    assert!(p.heap_bytes() < 64 << 20, "{}", p.heap_bytes());
}

#[test]
fn selector_patterns_follow_glob_semantics() {
    for (pattern, paths, value, expect) in [
        ("/opt/llm/**", true, "/opt/llm/bin/server", true),
        ("/opt/llm/**", true, "/opt/llmx/server", false),
        ("/usr/bin/python3*", true, "/usr/bin/python3.11", true),
        ("/usr/bin/python3*", true, "/usr/bin/python3/x", false),
        ("crm-sync*", false, "crm-sync-job", true),
        ("crm-sync*", false, "crm", false),
        (
            "/system.slice/llm-*.service",
            true,
            "/system.slice/llm-gpu.service",
            true,
        ),
        (
            "/system.slice/llm-*.service",
            true,
            "/system.slice/llm-a/b.service",
            false,
        ),
        ("python3", false, "python3", true),
        ("python3", false, "python", false),
        ("/kubepods.slice/**", true, "/kubepods.slice/a/b/c", true),
    ] {
        let m = Matcher::new(pattern, paths).unwrap();
        assert_eq!(m.is_match(value), expect, "{pattern} vs {value}");
        // The fast paths agree with globset itself.
        let g = GlobBuilder::new(pattern)
            .literal_separator(paths)
            .build()
            .unwrap()
            .compile_matcher();
        assert_eq!(g.is_match(value), expect, "globset: {pattern} vs {value}");
    }
}

#[test]
fn dataset_paths_are_relative_to_the_policy_file() {
    let dir = std::env::temp_dir().join(format!("sa-policy-rel-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::copy(
        testdata().join("geoip/GeoLite2-Country-Test.mmdb"),
        dir.join("data/countries.mmdb"),
    )
    .unwrap();
    let path = dir.join("policy.toml");
    std::fs::write(
        &path,
        "[policy]\nname = \"rel\"\nversion = \"1\"\ndefault = \"allow\"\n[datasets]\ncountry = \"data/countries.mmdb\"\n[zones.gb]\ncountries = [\"GB\"]\n[[rule]]\nname = \"gb-only\"\nallow = [\"gb\"]\n",
    )
    .unwrap();
    let p = Policy::load(&path, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.datasets[0].path, dir.join("data/countries.mmdb"));
    assert_eq!(
        p.classify(&flow("2.125.160.217", &[], LLM, "x")).decision,
        Decision::Allow
    );
    assert_eq!(
        p.classify(&flow("50.114.0.1", &[], LLM, "x")).decision,
        Decision::Violation
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A pure allow-list: the sovereign zone by address and by name, everything else a
/// violation; external AI denied by name.
const ALLOW_LIST: &str = r#"
[policy]
name = "allow-list"
version = "1"
default = "violation"

[zones.sovereign]
cidrs = ["198.51.100.0/24"]
domains = ["*.sovereign.example"]

[zones.saas]
domains = ["*.saas.example"]
trust_cnames = true

[zones.external-ai]
ai = ["openai"]

[[rule]]
name = "llm"
allow = ["sovereign", "saas"]
deny = ["external-ai"]
otherwise = "violation"
"#;

fn chain(names: &[&str], verified: bool) -> Vec<DnsChain> {
    vec![DnsChain {
        names: names.iter().map(ToString::to_string).collect(),
        resolver: "192.0.2.53:53".into(),
        verified,
    }]
}

fn judge(p: &Policy, ip: &str, dns: &[DnsChain], sni: Option<&str>) -> (Verdict, Explanation) {
    let mut f = flow(ip, dns, LLM, "server");
    f.sni = sni;
    let v = p.classify(&f);
    let e = p.explain(&f, &v);
    (v, e)
}

#[test]
fn a_cname_chain_is_judged_where_it_ends() {
    let p = policy(ALLOW_LIST).unwrap();
    // alias.sovereign.example CNAME api.openai.com: the chain ends at an AI endpoint.
    let dns = chain(&["alias.sovereign.example", "api.openai.com"], true);
    let (v, e) = judge(&p, "203.0.113.10", &dns, None);
    assert_eq!(v.decision, Decision::Violation, "{e:#?}");
    assert_eq!(e.zones, ["external-ai"]);
    assert!(e.weak.contains(&"cname_leaves_zone"), "{e:#?}");
    let hop = e
        .evidence
        .iter()
        .find(|x| x.source == "cname")
        .expect("the hop");
    assert_eq!(hop.zone, "sovereign");
    assert!(
        hop.detail
            .contains("alias.sovereign.example -> api.openai.com"),
        "{hop:#?}"
    );
    // Leaving the zone for a name in no zone: still not allowed (otherwise decides).
    let dns = chain(&["alias.sovereign.example", "edge.cdn.example"], true);
    let (v, e) = judge(&p, "203.0.113.20", &dns, None);
    assert_eq!(v.decision, Decision::Violation, "{e:#?}");
    assert!(e.zones.is_empty() && e.weak.contains(&"cname_leaves_zone"));
    // A chain that stays inside the zone is allowed.
    let dns = chain(&["llm.sovereign.example", "edge.sovereign.example"], true);
    let (v, e) = judge(&p, "203.0.113.20", &dns, None);
    assert_eq!(
        (v.decision, e.zones.clone()),
        (Decision::Allow, vec!["sovereign".to_string()])
    );
    assert!(!e.weak.contains(&"cname_leaves_zone"), "{e:#?}");
    // A zone that trusts CNAMEs allows through any chain, and says so.
    let dns = chain(&["app.saas.example", "d111.cloudfront.example"], true);
    let (v, e) = judge(&p, "203.0.113.30", &dns, None);
    assert_eq!(v.decision, Decision::Allow, "{e:#?}");
    assert!(e
        .evidence
        .iter()
        .any(|x| x.decisive && x.via == "dns_cname" && x.detail.contains("trusts CNAMEs")));
    // Any name of a chain in a deny zone is a violation, even through a trusting zone.
    let dns = chain(&["api.openai.com", "app.saas.example"], true);
    assert_eq!(
        judge(&p, "203.0.113.30", &dns, None).0.decision,
        Decision::Violation
    );
}

#[test]
fn claims_never_allow_but_can_deny() {
    let p = policy(ALLOW_LIST).unwrap();
    // SNI alone, to an address nobody resolved.
    let (v, e) = judge(&p, "203.0.113.99", &[], Some("llm.sovereign.example"));
    assert_eq!(v.decision, Decision::Violation, "{e:#?}");
    assert!(e.weak.contains(&"sni_unverified"), "{e:#?}");
    assert!(e.evidence.iter().all(|x| !x.decisive));
    // An answer from a resolver that is not trusted.
    let dns = chain(&["llm.sovereign.example"], false);
    let (v, e) = judge(&p, "203.0.113.99", &dns, None);
    assert_eq!(v.decision, Decision::Violation, "{e:#?}");
    assert!(e.weak.contains(&"dns_untrusted"));
    // But a claim of an AI endpoint is enough for a violation, with its evidence.
    let (v, e) = judge(&p, "198.51.100.7", &[], Some("api.openai.com"));
    assert_eq!(
        (v.decision, e.zones.clone()),
        (Decision::Violation, vec!["external-ai".to_string()])
    );
    assert!(e.evidence.iter().any(|x| x.decisive && x.via == "sni"));
    let dns = chain(&["api.openai.com"], false);
    assert_eq!(
        judge(&p, "198.51.100.7", &dns, None).0.decision,
        Decision::Violation
    );
    // Verified DNS allows; the address alone allows.
    let dns = chain(&["llm.sovereign.example"], true);
    assert_eq!(
        judge(&p, "203.0.113.99", &dns, None).0.decision,
        Decision::Allow
    );
    assert_eq!(
        judge(&p, "198.51.100.7", &[], None).0.decision,
        Decision::Allow
    );
}

#[test]
fn dns_and_sni_disagreeing_is_a_violation_unless_the_address_is_allowed() {
    let p = policy(ALLOW_LIST).unwrap();
    let dns = chain(&["llm.sovereign.example"], true);
    // Resolved an allowed name, connected claiming another: a violation.
    let (v, e) = judge(&p, "203.0.113.5", &dns, Some("files.sovereign.example"));
    assert_eq!(v.decision, Decision::Violation, "{e:#?}");
    assert!(e.weak.contains(&"name_conflict"));
    // On an address of an allowed zone: allowed by the address, the conflict said.
    let (v, e) = judge(&p, "198.51.100.5", &dns, Some("other.example"));
    assert_eq!(v.decision, Decision::Allow, "{e:#?}");
    assert!(e.weak.contains(&"name_conflict"));
    assert!(e.evidence.iter().any(|x| x.decisive && x.via == "address"));
    // SNI that DNS gave: no conflict.
    let (v, e) = judge(&p, "203.0.113.5", &dns, Some("llm.sovereign.example"));
    assert_eq!(v.decision, Decision::Allow, "{e:#?}");
    assert!(!e.weak.contains(&"name_conflict"));
}

const WORKLOADS: &str = r#"
[policy]
name = "workloads"
version = "1"
default = "allow"
unknown_workload = "UNKNOWN"

[zones.eu]
cidrs = ["10.0.0.0/8"]

[[rule]]
name = "llm"
workload = [{ exe = ["/opt/llm/**"] }, { cgroup = ["/system.slice/llm-*.service"] }]
allow = ["eu"]
otherwise = "violation"
severity = "critical"

[[rule]]
name = "rest"
otherwise = "allow"
"#;

fn workload_flow<'a>(exe: Option<&'a str>, cgroup: Option<&'a str>) -> Flow<'a> {
    Flow {
        ip: "203.0.113.5".parse().unwrap(),
        port: 443,
        dns: &[],
        sni: None,
        sni_unreadable: false,
        exe,
        interpreter: None,
        ancestors: &[],
        comm: "server",
        cgroup,
        container_id: None,
        uid: 0,
    }
}

#[test]
fn any_of_the_workload_selectors_selects() {
    let p = policy(&WORKLOADS.replace("UNKNOWN", "violation")).unwrap();
    let rule = |exe, cgroup| {
        let v = p.classify(&workload_flow(exe, cgroup));
        (p.rule_name(&v).to_string(), v.decision)
    };
    let llm = ("llm".to_string(), Decision::Violation);
    // The binary from a shell, the unit running another binary, both.
    assert_eq!(
        rule(
            Some("/opt/llm/bin/server"),
            Some("/user.slice/session-1.scope")
        ),
        llm
    );
    assert_eq!(
        rule(
            Some("/usr/bin/python3"),
            Some("/system.slice/llm-gpu.service")
        ),
        llm
    );
    assert_eq!(
        rule(
            Some("/opt/llm/bin/server"),
            Some("/system.slice/llm-gpu.service")
        ),
        llm
    );
    assert_eq!(
        rule(Some("/usr/bin/curl"), Some("/user.slice/session-1.scope")),
        ("rest".to_string(), Decision::Allow)
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn an_unknown_identity_is_never_silently_a_later_rule() {
    // The process exited before it was read: exe and cgroup unknown.
    let gone = workload_flow(None, None);
    let p = policy(&WORKLOADS.replace("UNKNOWN", "violation")).unwrap();
    let v = p.classify(&gone);
    assert_eq!((p.rule_name(&v), v.decision), ("llm", Decision::Violation));
    assert_eq!(v.severity, Some(Severity::Critical));
    assert!(v.weak & weak::UNKNOWN_WORKLOAD != 0);
    let e = p.explain(&gone, &v);
    assert!(e.weak.contains(&"unknown_workload"), "{e:#?}");
    // The default is "violation".
    let p = policy(&WORKLOADS.replace("unknown_workload = \"UNKNOWN\"\n", "")).unwrap();
    assert_eq!(p.classify(&gone).decision, Decision::Violation);
    // "default": the policy's default decides.
    let p = policy(&WORKLOADS.replace("UNKNOWN", "default")).unwrap();
    let v = p.classify(&gone);
    assert_eq!((v.rule, v.decision), (None, Decision::Allow));
    assert!(v.weak & weak::UNKNOWN_WORKLOAD != 0);
    // "match_none": the rule does not select it (the old behaviour).
    let p = policy(&WORKLOADS.replace("UNKNOWN", "match_none")).unwrap();
    let v = p.classify(&gone);
    assert_eq!((p.rule_name(&v), v.decision), ("rest", Decision::Allow));
    // A known fact that does not match decides, whatever is unknown.
    let p = policy(&WORKLOADS.replace("UNKNOWN", "violation")).unwrap();
    let v = p.classify(&workload_flow(None, Some("/user.slice/session-1.scope")));
    assert_eq!(
        p.rule_name(&v),
        "llm",
        "exe unknown, the other alternative does not match"
    );
    let v = p.classify(&workload_flow(Some("/usr/bin/curl"), None));
    assert_eq!(p.rule_name(&v), "llm", "cgroup unknown");
    assert!(v.weak & weak::UNKNOWN_WORKLOAD != 0);
}

#[test]
fn a_selector_of_two_fields_before_a_permissive_rule_is_warned_about() {
    let text = WORKLOADS.replace("UNKNOWN", "violation").replace(
        r#"workload = [{ exe = ["/opt/llm/**"] }, { cgroup = ["/system.slice/llm-*.service"] }]"#,
        r#"workload = { exe = ["/opt/llm/**"], cgroup = ["/system.slice/llm-*.service"] }"#,
    );
    let p = policy(&text).unwrap();
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    let w = &p.warnings[0];
    assert!(
        w.contains("rule \"llm\"") && w.contains("exe and cgroup"),
        "{w}"
    );
    assert!(w.contains("exe /opt/llm/bin/x but another cgroup"), "{w}");
    assert!(w.contains("rule \"rest\", whose otherwise is allow"), "{w}");
    // Bad forms are errors with their place.
    let err = policy(&WORKLOADS.replace("UNKNOWN", "violation").replace(
        r#"workload = [{ exe = ["/opt/llm/**"] }, { cgroup = ["/system.slice/llm-*.service"] }]"#,
        "workload = []",
    ))
    .err()
    .expect("an error")
    .to_string();
    assert!(err.contains("workload = [] selects nothing"), "{err}");
    let err = policy(&WORKLOADS.replace("UNKNOWN", "violation").replace(
        r#"{ exe = ["/opt/llm/**"] }"#,
        r#"{ exe = ["/opt/llm/**"], exec = ["x"] }"#,
    ))
    .err()
    .expect("an error")
    .to_string();
    assert!(err.contains("exec"), "an unknown field is named: {err}");
}

#[test]
fn ancestor_exe_selects_a_program_and_everything_it_starts() {
    let p = policy(
        r#"
[policy]
name = "lineage"
version = "1"
default = "allow"

[zones.eu]
cidrs = ["10.0.0.0/8"]

[[rule]]
name = "llm-and-children"
workload = { ancestor_exe = ["/opt/llm/**"] }
allow = ["eu"]
"#,
    )
    .unwrap();
    let lineage = |exe: Option<&str>, ancestors: &[Arc<str>]| {
        let f = Flow {
            ancestors,
            ..workload_flow(exe, Some("/system.slice/x.service"))
        };
        let v = p.classify(&f);
        (p.rule_name(&v).to_string(), v.decision)
    };
    let rule = ("llm-and-children".to_string(), Decision::Violation);
    // The server itself, and a curl two generations below it.
    assert_eq!(lineage(Some("/opt/llm/bin/server"), &[]), rule);
    let below: [Arc<str>; 2] = ["/usr/bin/dash".into(), "/opt/llm/bin/server".into()];
    assert_eq!(lineage(Some("/usr/bin/curl"), &below), rule);
    // Anything else falls to the default.
    let other: [Arc<str>; 2] = ["/usr/bin/bash".into(), "/usr/lib/systemd/systemd".into()];
    assert_eq!(
        lineage(Some("/usr/bin/curl"), &other),
        ("(policy default)".to_string(), Decision::Allow)
    );
    // Nothing of the lineage known: unknown_workload (violation by default).
    let v = p.classify(&workload_flow(None, Some("/system.slice/x.service")));
    assert!(v.weak & weak::UNKNOWN_WORKLOAD != 0);
    assert_eq!(v.decision, Decision::Violation);
}

#[test]
fn an_exe_selector_matches_a_script_or_its_interpreter() {
    let p = policy(
        r#"
[policy]
name = "interpreters"
version = "1"
default = "allow"

[zones.eu]
cidrs = ["10.0.0.0/8"]

[[rule]]
name = "no-python-abroad"
workload = { exe = ["/usr/bin/python3*"] }
allow = ["eu"]

[[rule]]
name = "crm-sync-script"
workload = { exe = ["/opt/crm/**"] }
allow = ["eu"]
"#,
    )
    .unwrap();
    let judge = |exe: &str, interpreter: Option<&str>| {
        let f = Flow {
            interpreter,
            ..workload_flow(Some(exe), Some("/system.slice/x.service"))
        };
        let v = p.classify(&f);
        (p.rule_name(&v).to_string(), v.decision)
    };
    // A script that starts with #!/usr/bin/python3 is still judged as python...
    assert_eq!(
        judge("/tmp/x/tool.py", Some("/usr/bin/python3.11")),
        ("no-python-abroad".to_string(), Decision::Violation)
    );
    // ...and a rule on the script's own path selects it too.
    assert_eq!(
        judge("/opt/crm/sync.sh", Some("/usr/bin/dash")),
        ("crm-sync-script".to_string(), Decision::Violation)
    );
    assert_eq!(
        judge("/usr/bin/curl", None),
        ("(policy default)".to_string(), Decision::Allow)
    );
}

/// An enforce rule as the kernel holds it decides every address exactly as the monitor
/// judges it: longest prefix of the compiled list, else the rule's `otherwise`. Checked at
/// both ends of every compiled prefix and just outside them, over countries (the MaxMind
/// test database), AWS regions, CIDRs and a denied prefix inside an allowed one.
#[test]
fn an_enforce_rule_in_the_kernels_form_decides_as_the_monitor_judges() {
    let text = with_geo(
        r#"
[policy]
name = "enforce"
version = "1"
default = "allow"

[zones.resident]
countries = ["GB", "SE"]
aws = ["eu-central-1"]
cidrs = ["10.0.0.0/8", "fd00::/8"]

[zones.carve-out]
cidrs = ["10.9.0.0/16", "fd00:9::/32"]

[[rule]]
name = "resident"
mode = "enforce"
workload = { cgroup = ["/system.slice/llm.service"] }
allow = ["resident"]
deny = ["carve-out"]
otherwise = "violation"
"#,
    );
    let p = policy(&text).unwrap();
    let rules = p.enforced_rules();
    assert_eq!(rules.len(), 1);
    let rule = &rules[0];
    assert_eq!((rule.index, rule.refuse_otherwise), (0, true));
    assert!(
        rule.v4.len() > 100 && !rule.v6.is_empty(),
        "{} {}",
        rule.v4.len(),
        rule.v6.len()
    );
    let kernel = |ip: IpAddr| -> bool {
        let hit = match ip {
            IpAddr::V4(a) => rule
                .v4
                .iter()
                .filter(|(n, _)| n.contains(&a))
                .max_by_key(|(n, _)| n.prefix_len())
                .map(|(_, r)| *r),
            IpAddr::V6(a) => rule
                .v6
                .iter()
                .filter(|(n, _)| n.contains(&a))
                .max_by_key(|(n, _)| n.prefix_len())
                .map(|(_, r)| *r),
        };
        hit.unwrap_or(rule.refuse_otherwise)
    };
    let mut probes: Vec<IpAddr> = Vec::new();
    for (n, _) in &rule.v4 {
        let (first, last) = (u32::from(n.network()), u32::from(n.broadcast()));
        probes.extend(
            [first.wrapping_sub(1), first, last, last.wrapping_add(1)]
                .map(|a| IpAddr::V4(a.into())),
        );
    }
    for (n, _) in &rule.v6 {
        let (first, last) = (u128::from(n.network()), u128::from(n.broadcast()));
        probes.extend(
            [first.wrapping_sub(1), first, last, last.wrapping_add(1)]
                .map(|a| IpAddr::V6(a.into())),
        );
    }
    probes.extend(
        [
            "10.9.1.1",
            "10.1.1.1",
            "192.0.2.1",
            "fd00:9::1",
            "fd00:1::1",
        ]
        .map(|a| a.parse::<IpAddr>().unwrap()),
    );
    let mut refused = 0;
    for ip in &probes {
        let ip_text = ip.to_string();
        let mut f = flow(&ip_text, &[], "/opt/llm/bin/server", "server");
        f.cgroup = Some("/system.slice/llm.service");
        let v = p.classify(&f);
        let monitor_refuses = v.decision == Decision::Violation;
        assert_eq!(
            kernel(*ip),
            monitor_refuses,
            "{ip}: {:#?}",
            p.explain(&f, &v)
        );
        refused += usize::from(monitor_refuses);
    }
    assert!(
        refused > 0 && refused < probes.len(),
        "{refused} of {}",
        probes.len()
    );
    // The carve-out is refused inside the allowed 10/8, the rest of it allowed.
    assert!(kernel("10.9.1.1".parse().unwrap()) && !kernel("10.1.1.1".parse().unwrap()));
    // Which rule decides for a cgroup: the first that selects it, when it enforces.
    assert_eq!(
        p.enforcing_rule_of_cgroup("/system.slice/llm.service"),
        Some(0)
    );
    assert_eq!(
        p.enforcing_rule_of_cgroup("/system.slice/other.service"),
        None
    );
}

#[test]
fn a_monitor_rule_that_selects_a_cgroup_first_keeps_it_out_of_enforcement() {
    let p = policy(
        r#"
[policy]
name = "p"
version = "1"
default = "allow"

[zones.z]
cidrs = ["10.0.0.0/8"]

[[rule]]
name = "watch-only"
workload = { cgroup = ["/system.slice/a.service"] }
allow = ["z"]

[[rule]]
name = "enforced"
mode = "enforce"
allow = ["z"]
"#,
    )
    .unwrap();
    assert_eq!(p.enforcing_rule_of_cgroup("/system.slice/a.service"), None);
    assert_eq!(
        p.enforcing_rule_of_cgroup("/system.slice/b.service"),
        Some(1)
    );
    assert_eq!(p.enforced_rules().len(), 1);
}
