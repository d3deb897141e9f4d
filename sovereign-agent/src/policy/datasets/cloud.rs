//! The cloud providers' published IP-range files (AWS, Azure, Google Cloud, Oracle), each
//! recognised by its top-level keys.
use std::{collections::HashMap, path::Path};

use serde::Deserialize;

use super::model::{DatasetError, DatasetKind, EntriesBuilder, Loaded};

/// Reads a provider file; [`DatasetError::Unrecognised`] if `bytes` is none of them.
pub(super) fn load(path: &Path, bytes: &[u8]) -> Result<Loaded, DatasetError> {
    let Some(kind) = json_kind(path, bytes)? else {
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
            let f: AwsFile = serde_json::from_slice(bytes).map_err(json_err)?;
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
            let f: AzureFile = serde_json::from_slice(bytes).map_err(json_err)?;
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
            let f: GcpFile = serde_json::from_slice(bytes).map_err(json_err)?;
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
            let f: OracleFile = serde_json::from_slice(bytes).map_err(json_err)?;
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
