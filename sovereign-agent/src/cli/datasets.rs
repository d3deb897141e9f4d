//! `sovereign-agent datasets update DIR`: refresh the cloud providers' IP-range files.
//!
//! Each provider file is downloaded (from the publisher, or a URL given per provider, such as
//! an internal mirror), written to a temporary file in DIR, loaded and validated exactly as a
//! policy would load it, and only then renamed over the old file: a failed or malformed
//! download never replaces a good file. What changed is printed per provider and region.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Subcommand;
use ipnet::IpNet;

use super::complain;
use crate::{
    exit,
    policy::datasets::{self, DatasetKind, Loaded},
};

#[derive(Subcommand)]
pub enum DatasetsCommand {
    /// Download each provider file, validate it, replace the old one atomically, print what
    /// changed per region. Exit 1 if any provider failed (its old file is kept).
    Update {
        dir: PathBuf,
        /// Providers to update (aws, azure, gcp, oracle); default: those already in DIR, or all.
        #[arg(long = "provider", value_parser = ["aws", "azure", "gcp", "oracle"])]
        providers: Vec<String>,
        /// Where to download a provider's file from instead of its publisher: PROVIDER=URL
        /// (e.g. an internal mirror); repeatable.
        #[arg(long = "url")]
        urls: Vec<String>,
        /// Give up on a download after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
}

impl DatasetsCommand {
    pub fn execute(self) -> u8 {
        let DatasetsCommand::Update {
            dir,
            providers,
            urls,
            timeout_secs,
        } = self;
        let mut overrides = HashMap::new();
        for u in &urls {
            let parsed = u
                .split_once('=')
                .and_then(|(p, url)| Some((parse_provider(p)?, url)));
            match parsed {
                Some((kind, url)) => {
                    overrides.insert(kind, url.to_string());
                }
                None => {
                    complain(format_args!(
                        "--url {u:?}: expected PROVIDER=URL with PROVIDER one of aws, azure, gcp, oracle"
                    ));
                    return exit::USAGE;
                }
            }
        }
        update(&UpdateArgs {
            dir: &dir,
            providers: providers.iter().filter_map(|p| parse_provider(p)).collect(),
            urls: overrides,
            timeout: Duration::from_secs(timeout_secs),
        })
    }
}

/// The publishers' own addresses. Azure's file moves every week; its download page is read
/// for the current link.
pub fn default_url(kind: DatasetKind) -> &'static str {
    match kind {
        DatasetKind::Aws => "https://ip-ranges.amazonaws.com/ip-ranges.json",
        DatasetKind::Azure => "https://www.microsoft.com/en-us/download/details.aspx?id=56519",
        DatasetKind::Gcp => "https://www.gstatic.com/ipranges/cloud.json",
        DatasetKind::Oracle => "https://docs.oracle.com/en-us/iaas/tools/public_ip_ranges.json",
        DatasetKind::Country | DatasetKind::Asn => "",
    }
}

/// File name for a provider not yet in DIR.
fn default_file(kind: DatasetKind) -> &'static str {
    match kind {
        DatasetKind::Aws => "aws-ip-ranges.json",
        DatasetKind::Azure => "microsoft-azure-ip-ranges.json",
        DatasetKind::Gcp => "google-cloud-ip-ranges.json",
        DatasetKind::Oracle => "oracle-cloud-ip-ranges.json",
        DatasetKind::Country | DatasetKind::Asn => "",
    }
}

pub const PROVIDERS: [DatasetKind; 4] = [
    DatasetKind::Aws,
    DatasetKind::Azure,
    DatasetKind::Gcp,
    DatasetKind::Oracle,
];

pub fn parse_provider(s: &str) -> Option<DatasetKind> {
    PROVIDERS.into_iter().find(|k| k.key() == s)
}

pub struct UpdateArgs<'a> {
    pub dir: &'a Path,
    /// Providers to update; empty: those whose file is in DIR, or all four when DIR has none.
    pub providers: Vec<DatasetKind>,
    /// URL overrides per provider.
    pub urls: HashMap<DatasetKind, String>,
    pub timeout: Duration,
}

/// Exit 0 when every provider was updated (or unchanged), 1 when any failed (the others are
/// still updated; a failed one keeps its old file).
pub fn update(a: &UpdateArgs<'_>) -> u8 {
    if let Err(e) = std::fs::create_dir_all(a.dir) {
        eprintln!(
            "sovereign-agent: datasets directory {}: {e}",
            a.dir.display()
        );
        return exit::FAILURE;
    }
    let existing = existing_files(a.dir);
    let mut providers = a.providers.clone();
    if providers.is_empty() {
        providers = PROVIDERS
            .into_iter()
            .filter(|k| existing.contains_key(k))
            .collect();
        if providers.is_empty() {
            providers = PROVIDERS.to_vec();
        }
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(a.timeout))
        .build()
        .into();
    let mut failed = 0;
    for kind in providers {
        let (target, old) = match existing.get(&kind) {
            Some((path, loaded)) => (path.clone(), Some(loaded)),
            None => (a.dir.join(default_file(kind)), None),
        };
        let url = a
            .urls
            .get(&kind)
            .cloned()
            .unwrap_or_else(|| default_url(kind).to_string());
        match update_one(&agent, kind, &url, &target, old) {
            Ok(report) => print!("{report}"),
            Err(e) => {
                failed += 1;
                eprintln!("{kind}: not updated, {} kept: {e}", target.display());
            }
        }
    }
    if failed > 0 {
        exit::FAILURE
    } else {
        exit::OK
    }
}

/// Provider files already in DIR, by kind (recognised by content), kept loaded: they are
/// what each download is compared with.
fn existing_files(dir: &Path) -> HashMap<DatasetKind, (PathBuf, Loaded)> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.extension().is_some_and(|e| e == "tmp") {
            continue;
        }
        if let Ok(l) = datasets::load(&path) {
            if PROVIDERS.contains(&l.info.kind) {
                out.insert(l.info.kind, (path, l));
            }
        }
    }
    out
}

fn fetch(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>, String> {
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    response
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()
        .map_err(|e| format!("GET {url}: {e}"))
}

/// Azure publishes the current file's address only on its download page.
fn azure_file_url(page: &[u8]) -> Option<String> {
    let page = String::from_utf8_lossy(page);
    page.split('"').find_map(|s| {
        (s.starts_with("https://download.microsoft.com/")
            && s.contains("ServiceTags_Public")
            && s.ends_with(".json"))
        .then(|| s.to_string())
    })
}

fn update_one(
    agent: &ureq::Agent,
    kind: DatasetKind,
    url: &str,
    target: &Path,
    old: Option<&Loaded>,
) -> Result<String, String> {
    let mut body = fetch(agent, url)?;
    if kind == DatasetKind::Azure && !body.trim_ascii_start().starts_with(b"{") {
        let file_url = azure_file_url(&body)
            .ok_or_else(|| format!("{url}: no ServiceTags_Public link on the download page"))?;
        body = fetch(agent, &file_url)?;
    }
    let tmp = target.with_extension("json.tmp");
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.write_all(&body)
            .and_then(|_| f.sync_all())
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        // Validated exactly as a policy would load it, before it replaces anything.
        let new =
            datasets::load(&tmp).map_err(|e| format!("download from {url} is invalid: {e}"))?;
        if new.info.kind != kind {
            return Err(format!(
                "download from {url} is a {}, not a {}",
                new.info.kind.label(),
                kind.label()
            ));
        }
        std::fs::rename(&tmp, target)
            .map_err(|e| format!("replacing {}: {e}", target.display()))?;
        if let Some(dir) = target.parent().and_then(|d| std::fs::File::open(d).ok()) {
            let _ = dir.sync_all(); // make the rename durable
        }
        Ok(report(kind, target, old, &new))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn by_region(l: &Loaded) -> HashSet<(String, IpNet)> {
    l.prefixes
        .iter()
        .map(|(net, e)| {
            let entry = &l.entries[*e as usize];
            let region = match entry.region_names() {
                [Some(r), _] if !r.is_empty() => r,
                [_, Some(tag)] => tag,
                _ => "global".into(),
            };
            (region, *net)
        })
        .collect()
}

/// What changed, per region: `+added -removed`.
pub fn report(kind: DatasetKind, target: &Path, old: Option<&Loaded>, new: &Loaded) -> String {
    let new_set = by_region(new);
    let Some(old) = old else {
        return format!(
            "{kind}: new file {} ({}, {} prefixes)\n",
            target.display(),
            new.info.version,
            new.info.prefixes
        );
    };
    let old_set = by_region(old);
    let mut per_region: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (region, _) in new_set.difference(&old_set) {
        per_region.entry(region).or_default().0 += 1;
    }
    for (region, _) in old_set.difference(&new_set) {
        per_region.entry(region).or_default().1 += 1;
    }
    if per_region.is_empty() && old.info.version == new.info.version {
        return format!("{kind}: unchanged ({})\n", new.info.version);
    }
    let (added, removed) = per_region
        .values()
        .fold((0, 0), |(a, r), (x, y)| (a + x, r + y));
    let mut out = format!(
        "{kind}: {} -> {}: +{added} -{removed} prefixes\n",
        old.info.version, new.info.version
    );
    for (region, (a, r)) in per_region {
        out.push_str(&format!("  {region}: +{a} -{r}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_azure_link_on_its_download_page() {
        let page = br#"<a href="https://download.microsoft.com/download/7/1/D/71D86715-5596-4529-9B13-DA13A5DE5B63/ServiceTags_Public_20251124.json" class="x">Download</a>"#;
        assert_eq!(
            azure_file_url(page).as_deref(),
            Some("https://download.microsoft.com/download/7/1/D/71D86715-5596-4529-9B13-DA13A5DE5B63/ServiceTags_Public_20251124.json")
        );
        assert_eq!(azure_file_url(b"<html>nothing</html>"), None);
    }
}
