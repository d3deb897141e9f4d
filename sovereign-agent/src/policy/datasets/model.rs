//! What a dataset is once loaded: its kind and identity, its [`Entry`]s and prefixes, and
//! the errors that name the file and the place in it.
use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
};

use ipnet::IpNet;

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

/// Collects one file's entries (deduplicated) and prefixes.
pub(super) struct EntriesBuilder<'a> {
    pub(super) path: &'a Path,
    pub(super) kind: DatasetKind,
    pub(super) version: String,
    index: HashMap<Entry, u32>,
    entries: Vec<Entry>,
    pub(super) prefixes: Vec<(IpNet, u32)>,
}

impl<'a> EntriesBuilder<'a> {
    pub(super) fn new(path: &'a Path, kind: DatasetKind) -> Self {
        Self {
            path,
            kind,
            version: String::new(),
            index: HashMap::new(),
            entries: Vec::new(),
            prefixes: Vec::new(),
        }
    }

    pub(super) fn entry(&mut self, region: &str, service: &str, name: &str) -> u32 {
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

    pub(super) fn prefix(
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

    pub(super) fn finish(self) -> Loaded {
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
