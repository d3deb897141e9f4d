//! Where events go: JSON lines on stdout or appended to a file, or (for tests and embedding)
//! a channel.
use std::{
    fs::OpenOptions,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use crate::event::Event;

pub trait EventSink: Send {
    fn write(&mut self, event: &Event) -> io::Result<()>;
    /// Called after each drained batch, so a reader of the file sees events promptly.
    fn flush(&mut self) -> io::Result<()>;
    /// Events are waiting that could not be handed on yet (a journal behind its disk): the
    /// pipeline stops reading the ring buffer until a `flush` succeeds, instead of blocking.
    fn behind(&self) -> bool {
        false
    }
    /// Hands everything on, waiting if it must (at shutdown: nothing written is left behind).
    fn flush_wait(&mut self) -> io::Result<()> {
        self.flush()
    }
}

/// One JSON object per line.
pub struct JsonLines<W: Write + Send> {
    out: BufWriter<W>,
}

impl<W: Write + Send> JsonLines<W> {
    pub fn new(out: W) -> Self {
        Self {
            out: BufWriter::with_capacity(64 * 1024, out),
        }
    }
}

impl<W: Write + Send> EventSink for JsonLines<W> {
    fn write(&mut self, event: &Event) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, event)?;
        self.out.write_all(b"\n")
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open output file {path}: {source}")]
pub struct OutputError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// `output = "none"`: no JSON lines at all (the journal is the record, read with `tail` and
/// `journal export`). A file of that name is `./none`.
pub const NONE: &str = "none";

/// `-` is standard output, [`NONE`] no output (`None`); anything else a file opened for
/// appending (created if missing).
pub fn open(target: &Path) -> Result<Option<Box<dyn EventSink>>, OutputError> {
    if target == Path::new(NONE) {
        return Ok(None);
    }
    if target == Path::new("-") {
        return Ok(Some(Box::new(JsonLines::new(io::stdout()))));
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(target)
        .map_err(|source| OutputError {
            path: target.to_path_buf(),
            source,
        })?;
    Ok(Some(Box::new(JsonLines::new(file))))
}

/// Sends events into a channel (tests, or an embedding program).
pub struct ChannelSink(pub tokio::sync::mpsc::UnboundedSender<Event>);

impl EventSink for ChannelSink {
    fn write(&mut self, event: &Event) -> io::Result<()> {
        self.0
            .send(event.clone())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "event receiver dropped"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Every event to each of several sinks (the JSON output and the journal).
pub struct Tee(pub Vec<Box<dyn EventSink>>);

impl EventSink for Tee {
    fn write(&mut self, event: &Event) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|s| s.write(event))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|s| s.flush())
    }
    fn behind(&self) -> bool {
        self.0.iter().any(|s| s.behind())
    }
    fn flush_wait(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|s| s.flush_wait())
    }
}
