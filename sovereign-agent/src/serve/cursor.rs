//! Each sink's durable cursor: the next journal sequence number it has to deliver, in
//! `sink.<name>.cursor` in the journal directory, written (and synced) only after the
//! receiver acknowledged everything before it. The collector sink configured by the older
//! `[push]` section keeps its `push.cursor`.
use std::{
    io::Write,
    path::{Path, PathBuf},
};

#[derive(Clone, Debug)]
pub struct Cursor {
    path: PathBuf,
    tmp: PathBuf,
}

impl Cursor {
    /// The cursor of the sink `name` in `dir`.
    pub fn of_sink(dir: &Path, name: &str) -> Self {
        Cursor {
            path: dir.join(format!("sink.{name}.cursor")),
            tmp: dir.join(format!("sink.{name}.cursor.tmp")),
        }
    }

    /// A collector's position in the JetStream stream `stream`: the next stream sequence
    /// number to store.
    pub fn of_jetstream(dir: &Path, stream: &str) -> Self {
        Cursor {
            path: dir.join(format!("jetstream.{stream}.cursor")),
            tmp: dir.join(format!("jetstream.{stream}.cursor.tmp")),
        }
    }

    /// The cursor of the `[push]` section (named `push.cursor` before sinks existed).
    pub fn of_push(dir: &Path) -> Self {
        Cursor {
            path: dir.join("push.cursor"),
            tmp: dir.join("push.cursor.tmp"),
        }
    }

    /// The next sequence number to deliver (0 when nothing was ever acknowledged, or when
    /// the file is damaged: delivery is at least once, so starting over loses nothing).
    pub fn read(&self) -> u64 {
        std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn write(&self, next: u64) -> std::io::Result<()> {
        let mut f = std::fs::File::create(&self.tmp)?;
        writeln!(f, "{next}")?;
        f.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_a_missing_or_damaged_one_starts_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cursor::of_sink(dir.path(), "siem");
        assert_eq!(c.read(), 0);
        c.write(4_242).unwrap();
        assert_eq!(c.read(), 4_242);
        assert!(dir.path().join("sink.siem.cursor").exists());
        assert!(!dir.path().join("sink.siem.cursor.tmp").exists());
        // Each sink has its own.
        assert_eq!(Cursor::of_sink(dir.path(), "chat").read(), 0);
        std::fs::write(dir.path().join("sink.siem.cursor"), "not a number").unwrap();
        assert_eq!(c.read(), 0);
    }
}
