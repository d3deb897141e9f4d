//! MaxMind-format databases (GeoLite2/GeoIP2 Country and ASN, DB-IP's), flattened into one
//! entry per country or ASN and its prefixes.
use std::path::Path;

use ipnet::IpNet;

use super::model::{DatasetError, DatasetKind, EntriesBuilder, Loaded};

const MMDB_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";

pub(super) fn is_mmdb(bytes: &[u8]) -> bool {
    // The metadata section, with its marker, is within the last 128 KiB of the file.
    let tail = &bytes[bytes.len().saturating_sub(128 * 1024)..];
    tail.windows(MMDB_MARKER.len()).any(|w| w == MMDB_MARKER)
}

pub(super) fn load(path: &Path, bytes: Vec<u8>) -> Result<Loaded, DatasetError> {
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
