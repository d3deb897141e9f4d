//! Third-party datasets: the cloud providers' published IP-range files and MaxMind-format
//! databases, each recognised by its content (never by its file name), loaded into
//! [`Entry`]s (deduplicated: one per provider/region/service, country or ASN) and prefixes.
use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use serde::Deserialize;

/// What a dataset is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    Aws,
    Azure,
    Gcp,
    Oracle,
    Country,
    Asn,
}

impl DatasetKind {
    pub fn label(self) -> &'static str {
        match self {
            DatasetKind::Aws => "AWS ip-ranges.json",
            DatasetKind::Azure => "Azure Service Tags",
            DatasetKind::Gcp => "Google Cloud cloud.json",
            DatasetKind::Oracle => "Oracle Cloud public_ip_ranges.json",
            DatasetKind::Country => "GeoIP country database",
            DatasetKind::Asn => "GeoIP ASN database",
        }
    }

    /// The policy key that names this kind (`aws = [...]` in a zone, `aws = "file"` in
    /// `[datasets]`).
    pub fn key(self) -> &'static str {
        match self {
            DatasetKind::Aws => "aws",
            DatasetKind::Azure => "azure",
            DatasetKind::Gcp => "gcp",
            DatasetKind::Oracle => "oracle",
            DatasetKind::Country => "country",
            DatasetKind::Asn => "asn",
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A loaded dataset's identity, recorded as evidence with every verdict that used it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DatasetInfo {
    pub kind: DatasetKind,
    pub path: PathBuf,
    /// The publisher's own version: AWS/GCP syncToken, Azure changeNumber, Oracle
    /// last_updated_timestamp, MMDB database type and build epoch.
    pub version: String,
    pub prefixes: usize,
}

/// One meaningful unit of a dataset, e.g. AWS `eu-central-1`/`EC2`, Azure tag
/// `Storage.GermanyWestCentral`, country `DE`, AS 64512.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub kind: DatasetKind,
    /// Region (cloud), ISO code (country), AS number (asn).
    pub region: String,
    /// Service (AWS service, Azure systemService, GCP service, Oracle tags), AS organisation.
    pub service: String,
    /// Azure service tag name; AWS network border group; empty otherwise.
    pub name: String,
}

impl Entry {
    /// The names a region pattern is matched against. Azure's `region` property uses short
    /// forms (`germanywc`) while its service tag names carry the ARM region name
    /// (`Storage.GermanyWestCentral`): both count.
    pub fn region_names(&self) -> [Option<String>; 2] {
        let region = Some(self.region.to_ascii_lowercase());
        let tag_region = match self.kind {
            DatasetKind::Azure => self
                .name
                .split_once('.')
                .map(|(_, r)| r.to_ascii_lowercase()),
            _ => None,
        };
        [region, tag_region]
    }

    /// Ranges that many unrelated customers share, or that front traffic for anywhere (CDNs,
    /// global anycast): their region says little about where data ends up.
    pub fn is_shared(&self) -> bool {
        match self.kind {
            DatasetKind::Aws => {
                matches!(
                    self.service.as_str(),
                    "CLOUDFRONT" | "CLOUDFRONT_ORIGIN_FACING" | "GLOBALACCELERATOR"
                ) || self.region == "GLOBAL"
            }
            DatasetKind::Azure => {
                self.name.starts_with("AzureFrontDoor")
                    || self.name.starts_with("AzureCloud") && self.region.is_empty()
            }
            DatasetKind::Gcp => self.region == "global",
            _ => false,
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            DatasetKind::Aws => write!(f, "AWS {}/{}", self.region, self.service),
            DatasetKind::Azure => write!(
                f,
                "Azure {} (region {})",
                self.name,
                if self.region.is_empty() {
                    "global"
                } else {
                    &self.region
                }
            ),
            DatasetKind::Gcp => write!(f, "Google Cloud {} ({})", self.region, self.service),
            DatasetKind::Oracle => write!(f, "Oracle Cloud {} ({})", self.region, self.service),
            DatasetKind::Country => write!(f, "country {}", self.region),
            DatasetKind::Asn => write!(f, "AS{} {}", self.region, self.service),
        }
    }
}

/// A dataset read from disk: its identity, its entries and (prefix, entry index) pairs.
pub struct Loaded {
    pub info: DatasetInfo,
    pub entries: Vec<Entry>,
    pub prefixes: Vec<(IpNet, u32)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("dataset {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("dataset {path}: not a recognised dataset (expected an AWS, Azure, Google Cloud or Oracle IP-range JSON file, or a MaxMind .mmdb database)")]
    Unrecognised { path: PathBuf },
    #[error("dataset {path} ({kind}): malformed JSON at line {line}, column {column}: {message}")]
    Json {
        path: PathBuf,
        kind: &'static str,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("dataset {path} ({kind}): {place}: invalid prefix {value:?}")]
    Prefix {
        path: PathBuf,
        kind: &'static str,
        place: String,
        value: String,
    },
    #[error("dataset {path}: corrupt MaxMind database: {message}")]
    Mmdb { path: PathBuf, message: String },
}

/// Reads `path` and recognises what it is by its content.
pub fn load(path: &Path) -> Result<Loaded, DatasetError> {
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if is_mmdb(&bytes) {
        return load_mmdb(path, bytes);
    }
    let Some(kind) = json_kind(path, &bytes)? else {
        return Err(DatasetError::Unrecognised {
            path: path.to_path_buf(),
        });
    };
    let json_err = |e: serde_json::Error| DatasetError::Json {
        path: path.to_path_buf(),
        kind: kind.label(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    };
    let mut b = EntriesBuilder::new(path, kind);
    match kind {
        DatasetKind::Aws => {
            let f: AwsFile = serde_json::from_slice(&bytes).map_err(json_err)?;
            b.version = format!("syncToken {} ({})", f.sync_token, f.create_date);
            for (i, p) in f.prefixes.iter().enumerate() {
                let e = b.entry(&p.region, &p.service, &p.network_border_group);
                b.prefix(&p.ip_prefix, e, || format!("prefixes[{i}].ip_prefix"))?;
            }
            for (i, p) in f.ipv6_prefixes.iter().enumerate() {
                let e = b.entry(&p.region, &p.service, &p.network_border_group);
                b.prefix(&p.ipv6_prefix, e, || {
                    format!("ipv6_prefixes[{i}].ipv6_prefix")
                })?;
            }
        }
        DatasetKind::Azure => {
            let f: AzureFile = serde_json::from_slice(&bytes).map_err(json_err)?;
            b.version = format!("changeNumber {} ({})", f.change_number, f.cloud);
            for (i, v) in f.values.iter().enumerate() {
                let e = b.entry(&v.properties.region, &v.properties.system_service, &v.name);
                for (j, p) in v.properties.address_prefixes.iter().enumerate() {
                    b.prefix(p, e, || {
                        format!("values[{i}] ({}).addressPrefixes[{j}]", v.name)
                    })?;
                }
            }
        }
        DatasetKind::Gcp => {
            let f: GcpFile = serde_json::from_slice(&bytes).map_err(json_err)?;
            b.version = format!("syncToken {} ({})", f.sync_token, f.creation_time);
            for (i, p) in f.prefixes.iter().enumerate() {
                let e = b.entry(&p.scope, &p.service, "");
                let Some(prefix) = p.ipv4_prefix.as_ref().or(p.ipv6_prefix.as_ref()) else {
                    return Err(DatasetError::Prefix {
                        path: path.to_path_buf(),
                        kind: kind.label(),
                        place: format!("prefixes[{i}]"),
                        value: "(neither ipv4Prefix nor ipv6Prefix)".into(),
                    });
                };
                b.prefix(prefix, e, || format!("prefixes[{i}]"))?;
            }
        }
        DatasetKind::Oracle => {
            let f: OracleFile = serde_json::from_slice(&bytes).map_err(json_err)?;
            b.version = format!("last_updated_timestamp {}", f.last_updated_timestamp);
            for (i, r) in f.regions.iter().enumerate() {
                for (j, c) in r.cidrs.iter().enumerate() {
                    let e = b.entry(&r.region, &c.tags.join(","), "");
                    b.prefix(&c.cidr, e, || {
                        format!("regions[{i}] ({}).cidrs[{j}]", r.region)
                    })?;
                }
            }
        }
        DatasetKind::Country | DatasetKind::Asn => unreachable!("mmdb handled above"),
    }
    Ok(b.finish())
}

/// Every dataset file directly inside `dir` (hidden files skipped), recognised by content.
pub fn load_dir(dir: &Path) -> Result<Vec<Loaded>, DatasetError> {
    let read = |source| DatasetError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        match load(&path) {
            Ok(l) => out.push(l),
            // Other files (a README, a LICENSE) may sit beside the datasets.
            Err(DatasetError::Unrecognised { .. }) => {
                tracing::debug!(path = %path.display(), "not a dataset; skipped");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Which provider file this is, from its top-level keys: first from the head of the file
/// (publishers put the version keys first), else from the whole document (a mirror may have
/// reordered them). `None`: not a provider file.
fn json_kind(path: &Path, bytes: &[u8]) -> Result<Option<DatasetKind>, DatasetError> {
    fn decide(has: impl Fn(&str) -> bool) -> Option<DatasetKind> {
        if has("createDate") && has("syncToken") {
            Some(DatasetKind::Aws)
        } else if has("changeNumber") && has("values") {
            Some(DatasetKind::Azure)
        } else if has("creationTime") && has("syncToken") {
            Some(DatasetKind::Gcp)
        } else if has("last_updated_timestamp") || has("regions") && has("cidrs") {
            Some(DatasetKind::Oracle)
        } else {
            None
        }
    }
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    if let Some(kind) = decide(|k| head.contains(&format!("\"{k}\""))) {
        return Ok(Some(kind));
    }
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Ok(None);
    }
    let keys: HashMap<String, serde::de::IgnoredAny> =
        serde_json::from_slice(bytes).map_err(|e| DatasetError::Json {
            path: path.to_path_buf(),
            kind: "JSON",
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
    // Oracle's "cidrs" key sits inside "regions"; the top level has "regions" only.
    Ok(decide(|k| {
        keys.contains_key(k) || k == "cidrs" && keys.contains_key("regions")
    }))
}

struct EntriesBuilder<'a> {
    path: &'a Path,
    kind: DatasetKind,
    version: String,
    index: HashMap<Entry, u32>,
    entries: Vec<Entry>,
    prefixes: Vec<(IpNet, u32)>,
}

impl<'a> EntriesBuilder<'a> {
    fn new(path: &'a Path, kind: DatasetKind) -> Self {
        Self {
            path,
            kind,
            version: String::new(),
            index: HashMap::new(),
            entries: Vec::new(),
            prefixes: Vec::new(),
        }
    }

    fn entry(&mut self, region: &str, service: &str, name: &str) -> u32 {
        let e = Entry {
            kind: self.kind,
            region: region.to_string(),
            service: service.to_string(),
            name: name.to_string(),
        };
        if let Some(i) = self.index.get(&e) {
            return *i;
        }
        let i = self.entries.len() as u32;
        self.entries.push(e.clone());
        self.index.insert(e, i);
        i
    }

    fn prefix(
        &mut self,
        text: &str,
        entry: u32,
        place: impl FnOnce() -> String,
    ) -> Result<(), DatasetError> {
        let net: IpNet = text.parse().map_err(|_| DatasetError::Prefix {
            path: self.path.to_path_buf(),
            kind: self.kind.label(),
            place: place(),
            value: text.to_string(),
        })?;
        self.prefixes.push((net, entry));
        Ok(())
    }

    fn finish(self) -> Loaded {
        Loaded {
            info: DatasetInfo {
                kind: self.kind,
                path: self.path.to_path_buf(),
                version: self.version,
                prefixes: self.prefixes.len(),
            },
            entries: self.entries,
            prefixes: self.prefixes,
        }
    }
}

#[derive(Deserialize)]
struct AwsFile {
    #[serde(rename = "syncToken")]
    sync_token: String,
    #[serde(rename = "createDate")]
    create_date: String,
    prefixes: Vec<AwsV4>,
    #[serde(default)]
    ipv6_prefixes: Vec<AwsV6>,
}

#[derive(Deserialize)]
struct AwsV4 {
    ip_prefix: String,
    region: String,
    service: String,
    #[serde(default)]
    network_border_group: String,
}

#[derive(Deserialize)]
struct AwsV6 {
    ipv6_prefix: String,
    region: String,
    service: String,
    #[serde(default)]
    network_border_group: String,
}

#[derive(Deserialize)]
struct AzureFile {
    #[serde(rename = "changeNumber")]
    change_number: u64,
    #[serde(default)]
    cloud: String,
    values: Vec<AzureValue>,
}

#[derive(Deserialize)]
struct AzureValue {
    name: String,
    properties: AzureProperties,
}

#[derive(Deserialize)]
struct AzureProperties {
    #[serde(default)]
    region: String,
    #[serde(rename = "systemService", default)]
    system_service: String,
    #[serde(rename = "addressPrefixes", default)]
    address_prefixes: Vec<String>,
}

#[derive(Deserialize)]
struct GcpFile {
    #[serde(rename = "syncToken")]
    sync_token: String,
    #[serde(rename = "creationTime")]
    creation_time: String,
    prefixes: Vec<GcpPrefix>,
}

#[derive(Deserialize)]
struct GcpPrefix {
    #[serde(rename = "ipv4Prefix")]
    ipv4_prefix: Option<String>,
    #[serde(rename = "ipv6Prefix")]
    ipv6_prefix: Option<String>,
    #[serde(default)]
    service: String,
    #[serde(default)]
    scope: String,
}

#[derive(Deserialize)]
struct OracleFile {
    #[serde(default)]
    last_updated_timestamp: String,
    regions: Vec<OracleRegion>,
}

#[derive(Deserialize)]
struct OracleRegion {
    region: String,
    cidrs: Vec<OracleCidr>,
}

#[derive(Deserialize)]
struct OracleCidr {
    cidr: String,
    #[serde(default)]
    tags: Vec<String>,
}

const MMDB_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";

fn is_mmdb(bytes: &[u8]) -> bool {
    // The metadata section, with its marker, is within the last 128 KiB of the file.
    let tail = &bytes[bytes.len().saturating_sub(128 * 1024)..];
    tail.windows(MMDB_MARKER.len()).any(|w| w == MMDB_MARKER)
}

fn load_mmdb(path: &Path, bytes: Vec<u8>) -> Result<Loaded, DatasetError> {
    let corrupt = |message: String| DatasetError::Mmdb {
        path: path.to_path_buf(),
        message,
    };
    let reader = maxminddb::Reader::from_source(bytes).map_err(|e| corrupt(e.to_string()))?;
    let db_type = reader.metadata.database_type.clone();
    let kind = if db_type.contains("ASN") {
        DatasetKind::Asn
    } else if db_type.contains("Country") || db_type.contains("City") {
        DatasetKind::Country
    } else {
        return Err(corrupt(format!(
            "database type {db_type:?} is neither a country nor an ASN database"
        )));
    };
    let mut b = EntriesBuilder::new(path, kind);
    b.version = format!("{db_type} build {}", reader.metadata.build_epoch);
    // An IPv6 database also holds the IPv4 space (iterated as IPv4 networks).
    let root: ipnetwork::IpNetwork = if reader.metadata.ip_version == 6 {
        "::/0".parse().expect("valid")
    } else {
        "0.0.0.0/0".parse().expect("valid")
    };
    // A valid search tree has at most node_count + 1 leaves; more means it loops (the
    // crate's iterator never ends on such a file).
    let limit = u64::from(reader.metadata.node_count) + 1;
    let networks = reader
        .within(root, Default::default())
        .map_err(|e| corrupt(e.to_string()))?;
    let mut seen = 0u64;
    for item in networks {
        seen += 1;
        if seen > limit {
            return Err(corrupt(
                "the search tree loops (more networks than nodes)".into(),
            ));
        }
        let item = item.map_err(|e| corrupt(e.to_string()))?;
        let network = item.network().map_err(|e| corrupt(e.to_string()))?;
        let net = IpNet::new(network.ip(), network.prefix()).map_err(|e| corrupt(e.to_string()))?;
        let entry = match kind {
            DatasetKind::Country => {
                let Some(c) = item
                    .decode::<maxminddb::geoip2::Country>()
                    .map_err(|e| corrupt(format!("{net}: {e}")))?
                else {
                    continue;
                };
                let iso = c.country.iso_code.or(c.registered_country.iso_code);
                let Some(iso) = iso else { continue };
                b.entry(iso, "", "")
            }
            _ => {
                let Some(a) = item
                    .decode::<maxminddb::geoip2::Asn>()
                    .map_err(|e| corrupt(format!("{net}: {e}")))?
                else {
                    continue;
                };
                let Some(number) = a.autonomous_system_number else {
                    continue;
                };
                b.entry(
                    &number.to_string(),
                    a.autonomous_system_organization.unwrap_or(""),
                    "",
                )
            }
        };
        b.prefixes.push((net, entry));
    }
    Ok(b.finish())
}

/// Looks an address up directly in a MaxMind database: tests cross-check the flattened
/// table against the crate's own lookup.
#[cfg(test)]
pub fn mmdb_country(path: &Path, ip: std::net::IpAddr) -> Option<String> {
    let reader = maxminddb::Reader::open_readfile(path).ok()?;
    let c: maxminddb::geoip2::Country = reader.lookup(ip).ok()?.decode().ok()??;
    c.country
        .iso_code
        .or(c.registered_country.iso_code)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata")
            .join(name)
    }

    #[test]
    fn loads_every_provider_file_by_content() {
        for (file, kind, min_prefixes) in [
            ("cloud-ranges/aws-ip-ranges.json", DatasetKind::Aws, 13_000),
            (
                "cloud-ranges/microsoft-azure-ip-ranges.json",
                DatasetKind::Azure,
                90_000,
            ),
            (
                "cloud-ranges/google-cloud-ip-ranges.json",
                DatasetKind::Gcp,
                700,
            ),
            (
                "cloud-ranges/oracle-cloud-ip-ranges.json",
                DatasetKind::Oracle,
                800,
            ),
            (
                "geoip/GeoLite2-Country-Test.mmdb",
                DatasetKind::Country,
                200,
            ),
            ("geoip/GeoLite2-ASN-Test.mmdb", DatasetKind::Asn, 300),
        ] {
            let l = load(&testdata(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(l.info.kind, kind, "{file}");
            assert!(
                l.info.prefixes >= min_prefixes,
                "{file}: {}",
                l.info.prefixes
            );
        }
        let aws = load(&testdata("cloud-ranges/aws-ip-ranges.json")).unwrap();
        assert_eq!(
            aws.info.version,
            "syncToken 1753388594 (2025-07-24-20-23-14)"
        );
        assert_eq!(aws.info.prefixes, 8_971 + 4_373);
    }

    #[test]
    fn corrupt_databases_are_clear_errors_not_hangs_or_panics() {
        for file in [
            "geoip/MaxMind-DB-test-broken-pointers-24.mmdb",
            "geoip/MaxMind-DB-test-broken-search-tree-24.mmdb",
        ] {
            let err = load(&testdata(file))
                .err()
                .unwrap_or_else(|| panic!("{file} loaded"))
                .to_string();
            assert!(err.contains(file.rsplit('/').next().unwrap()), "{err}");
            assert!(
                err.contains("corrupt MaxMind database") || err.contains("neither a country"),
                "{err}"
            );
        }
    }

    fn temp(name: &str, content: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sa-datasets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn malformed_json_names_file_line_and_column() {
        let p = temp("aws-bad.json", b"{\"syncToken\": \"1\", \"createDate\": \"x\",\n \"prefixes\": [ {\"ip_prefix\": }\n]}");
        let err = load(&p).err().unwrap().to_string();
        assert!(
            err.contains("aws-bad.json") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn truncated_file_is_an_error() {
        let full = std::fs::read(testdata("cloud-ranges/google-cloud-ip-ranges.json")).unwrap();
        let p = temp("gcp-truncated.json", &full[..full.len() / 2]);
        let err = load(&p).err().unwrap().to_string();
        assert!(
            err.contains("gcp-truncated.json") && err.contains("malformed JSON"),
            "{err}"
        );
    }

    #[test]
    fn an_invalid_prefix_names_its_place() {
        let p = temp(
            "oracle-bad.json",
            br#"{"last_updated_timestamp": "t", "regions": [{"region": "eu-frankfurt-1", "cidrs": [{"cidr": "130.61.0.0/16", "tags": ["OCI"]}, {"cidr": "130.61.0.0/33", "tags": ["OCI"]}]}]}"#,
        );
        let err = load(&p).err().unwrap().to_string();
        assert!(
            err.contains("regions[0] (eu-frankfurt-1).cidrs[1]") && err.contains("130.61.0.0/33"),
            "{err}"
        );
    }

    #[test]
    fn unrecognised_files_are_skipped_in_a_directory_but_errors_elsewhere() {
        let p = temp("README.txt", b"not a dataset");
        assert!(matches!(load(&p), Err(DatasetError::Unrecognised { .. })));
        let loaded = match load_dir(&testdata("geoip")) {
            Ok(_) => panic!("the corrupt databases must fail the directory"),
            Err(e) => e.to_string(),
        };
        // The geoip folder holds the deliberately corrupt databases too.
        assert!(loaded.contains("corrupt MaxMind database"), "{loaded}");
        let all = load_dir(&testdata("cloud-ranges")).unwrap();
        let mut kinds: Vec<_> = all.iter().map(|l| l.info.kind.key()).collect();
        kinds.sort();
        assert_eq!(kinds, ["aws", "azure", "gcp", "oracle"]);
    }
}
