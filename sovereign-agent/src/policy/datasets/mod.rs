//! Third-party datasets: the cloud providers' published IP-range files and MaxMind-format
//! databases, each recognised by its content (never by its file name), loaded into
//! [`Entry`]s (deduplicated: one per provider/region/service, country or ASN) and prefixes.
//!
//! - [`model`]: what a loaded dataset is ([`Loaded`], [`Entry`], [`DatasetError`]).
//! - [`cloud`]: the providers' JSON files; [`mmdb`]: MaxMind-format databases.
mod cloud;
mod mmdb;
mod model;

use std::path::{Path, PathBuf};

#[cfg(test)]
pub use mmdb::mmdb_country;
pub use model::{DatasetError, DatasetInfo, DatasetKind, Entry, Loaded};

/// Reads `path` and recognises what it is by its content.
pub fn load(path: &Path) -> Result<Loaded, DatasetError> {
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if mmdb::is_mmdb(&bytes) {
        return mmdb::load(path, bytes);
    }
    cloud::load(path, &bytes)
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

#[cfg(test)]
mod tests;
