//! The journal's identity: a random 128-bit id, written to `journal.id` when the journal is
//! created (or first opened by a version that has it). Sequence numbers start again at 0 in a
//! new journal (an agent reinstalled, a node rebuilt under the same name), so a receiver tells
//! "seen" from "new" by (agent, journal id, seq), never by seq alone.
use std::{fs, io::Write, path::Path};

use super::error::JournalError;

pub const ID_FILE: &str = "journal.id";
const ID_TMP: &str = "journal.id.tmp";

/// The id of the journal in `dir`, created if it has none yet.
pub fn open_or_create(dir: &Path) -> Result<String, JournalError> {
    let path = dir.join(ID_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if is_valid(id) {
                return Ok(id.to_string());
            }
            return Err(JournalError::Dir {
                dir: dir.to_path_buf(),
                message: format!(
                    "{ID_FILE} does not hold a journal id (32 hex digits): {:?}",
                    id.chars().take(40).collect::<String>()
                ),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(JournalError::Io { path, source });
        }
    }
    write_new(dir)
}

/// Gives the journal in `dir` a new id (after a recovery removed records it had published
/// under the old one) and returns it.
pub fn renew(dir: &Path) -> Result<String, JournalError> {
    write_new(dir)
}

fn write_new(dir: &Path) -> Result<String, JournalError> {
    let path = dir.join(ID_FILE);
    let id = random_id().map_err(|source| JournalError::Io {
        path: "/dev/urandom".into(),
        source,
    })?;
    let tmp = dir.join(ID_TMP);
    let io = |source| JournalError::Io {
        path: tmp.clone(),
        source,
    };
    let mut f = fs::File::create(&tmp).map_err(io)?;
    writeln!(f, "{id}").map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, &path).map_err(io)?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(id)
}

fn is_valid(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn random_id() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_made_once_kept_across_opens_and_differs_per_journal() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let id = open_or_create(a.path()).unwrap();
        assert!(is_valid(&id), "{id}");
        assert_eq!(open_or_create(a.path()).unwrap(), id);
        assert_ne!(open_or_create(b.path()).unwrap(), id);
        assert!(!a.path().join(ID_TMP).exists());
    }

    #[test]
    fn a_damaged_id_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(ID_FILE), "not an id\n").unwrap();
        let e = open_or_create(dir.path()).unwrap_err().to_string();
        assert!(e.contains("journal.id") && e.contains("not an id"), "{e}");
    }
}
