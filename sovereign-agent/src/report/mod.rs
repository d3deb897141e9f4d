//! The residency report (`sovereign-agent report`): a journal turned into the document a
//! compliance lead hands to an auditor: scope and provenance, completeness and integrity,
//! the egress inventory, where the data went (countries, cloud regions), external AI APIs,
//! verdicts, and the report's limitations (docs/report.md).
//!
//! In the order the data flows:
//!
//! - [`scan`]: one pass over the journal's records (flows as borrowed views);
//! - [`locate`]: addresses to country, autonomous system and cloud region (the datasets),
//!   names to the external AI APIs of the built-in catalogue;
//! - [`assemble`]: the scan's tallies into the [`model::Report`], whose serde form is the
//!   JSON report;
//! - [`html`] and [`csv`]: the other two forms, rendered from the same `Report`.
//!
//! The journal is verified first ([`crate::journal::verify`]); a damaged journal still gets a
//! report, which says so on its first page.
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use crate::{
    journal::{reader, verify},
    policy::datasets,
};

pub mod assemble;
pub mod csv;
pub mod html;
pub mod locate;
pub mod model;
pub mod scan;
#[cfg(test)]
mod tests;

pub use model::Report;
pub use scan::Window;

/// What to report on and how.
pub struct Options<'a> {
    pub dir: &'a Path,
    pub window: Window,
    /// Datasets to locate addresses with; `None`: those the agent recorded with its policy
    /// (when they are still where it read them).
    pub datasets: Option<&'a Path>,
    /// The key seals must be signed with, and where it was read from (for the re-check
    /// command the report prints).
    pub public_key: Option<(&'a Path, VerifyingKey)>,
    /// Countries treated as adequate, beside the EEA (ISO codes, upper case).
    pub adequate: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Not a journal at all (no segment, unreadable directory).
    #[error("{0}")]
    NoJournal(String),
    #[error("{0}")]
    Datasets(String),
}

/// Verifies and reads the journal, and assembles the report. `progress` gets each segment's
/// size once it is read.
pub fn build(opts: &Options<'_>, progress: impl FnMut(u64)) -> Result<Report, BuildError> {
    let key = opts.public_key.as_ref().map(|(_, k)| k);
    let verified =
        verify::verify(opts.dir, key).map_err(|e| BuildError::NoJournal(e.to_string()))?;
    let mut scan = scan::Scan::new(opts.window);
    let mut unreadable = None;
    let read = reader::for_each_payload(opts.dir, true, progress, |seq, payload| {
        scan.record(seq, payload).map_err(|message| {
            unreadable = Some(message.clone());
            crate::journal::JournalError::Record { seq, message }
        })
    });
    if let Err(e) = read {
        scan.unreadable = Some(unreadable.unwrap_or_else(|| e.to_string()));
    }

    let mut missing = Vec::new();
    let loaded = match opts.datasets {
        Some(dir) => datasets::load_dir(dir).map_err(|e| BuildError::Datasets(e.to_string()))?,
        None => recorded_datasets(&scan, &mut missing),
    };
    let mut locator = locate::Locator::new(loaded);
    let recheck_command = match &opts.public_key {
        Some((path, _)) => format!(
            "sovereign-agent journal verify {} --public-key {}",
            opts.dir.display(),
            path.display()
        ),
        None => format!("sovereign-agent journal verify {}", opts.dir.display()),
    };
    Ok(assemble::assemble(
        scan,
        &mut locator,
        assemble::Context {
            journal: opts.dir.display().to_string(),
            verify: model::VerifySummary::of(&verified, key.is_some()),
            recheck_command,
            adequate: &opts.adequate,
            generated_at_ns: crate::clock::unix_now_ns(),
            missing,
        },
    ))
}

/// Largest dataset file a journal's record may make the report read (the largest real one, a
/// city database, is under 100 MiB).
const MAX_RECORDED_DATASET_BYTES: u64 = 512 << 20;

/// Whether a path a journal names (a record pushed by any agent, at a collector) may be read
/// as a dataset: a regular file of bounded size, never a device, pipe or directory
/// (`/dev/zero` would be read forever).
fn recorded_dataset_file(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_RECORDED_DATASET_BYTES {
        return Err(format!(
            "{} bytes, more than any dataset ({MAX_RECORDED_DATASET_BYTES})",
            meta.len()
        ));
    }
    Ok(())
}

/// The datasets the agent's policies recorded, read from where the agent read them, when
/// they are still there and still the version it used.
fn recorded_datasets(scan: &scan::Scan, missing: &mut Vec<String>) -> Vec<datasets::Loaded> {
    let mut paths: Vec<(PathBuf, String)> = Vec::new();
    for track in scan.tracks.values() {
        for (_, l) in &track.policies {
            if let crate::event::Lifecycle::Policy { datasets, .. } = &l.body {
                for d in datasets {
                    let p = PathBuf::from(&d.path);
                    if !paths.iter().any(|(q, _)| *q == p) {
                        paths.push((p, d.version.clone()));
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for (path, version) in paths {
        if let Err(why) = recorded_dataset_file(&path) {
            missing.push(format!(
                "the dataset the agent recorded, {}, was not read: {why}; give --datasets DIR",
                path.display()
            ));
            continue;
        }
        match datasets::load(&path) {
            Ok(l) if l.info.version == version => out.push(l),
            Ok(l) => {
                missing.push(format!(
                    "dataset {}: the agent judged with version {version}, the file is now version {}; it was used, so locations may differ from the verdicts' (give --datasets to choose)",
                    path.display(),
                    l.info.version
                ));
                out.push(l);
            }
            Err(e) => missing.push(format!(
                "the dataset the agent recorded is not readable here ({e}); give --datasets DIR"
            )),
        }
    }
    out
}

#[cfg(test)]
mod recorded_tests {
    use super::*;

    #[test]
    fn a_journal_cannot_make_the_report_read_a_device_or_a_directory() {
        // Issue 31, finding 11: a policy record pushed to a collector names the datasets'
        // paths; the report reads what they name.
        assert_eq!(
            recorded_dataset_file(Path::new("/dev/zero")),
            Err("not a regular file".into())
        );
        assert!(recorded_dataset_file(Path::new("/")).is_err());
        assert!(recorded_dataset_file(Path::new("/nonexistent/aws.json")).is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ip-ranges.json");
        std::fs::write(&file, b"{}").unwrap();
        assert_eq!(recorded_dataset_file(&file), Ok(()));
    }
}
