//! Reads a journal's records in order (export, replay), checking each frame's checksum and
//! sequence number on the way. Hash links and signatures are `verify`'s job.
use std::{
    fs,
    path::{Path, PathBuf},
};

use super::{
    convert,
    error::JournalError,
    format::{self, SegmentHeader, HEADER_LEN},
    writer::list_segments,
};
use crate::event::Event;

/// The segment files of a journal; an error naming `dir` when it is not one.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    if !dir.is_dir() {
        return Err(JournalError::Dir {
            dir: dir.to_path_buf(),
            message: "no such directory".into(),
        });
    }
    let segments = list_segments(dir)?;
    if segments.is_empty() {
        return Err(JournalError::Dir {
            dir: dir.to_path_buf(),
            message: "not a journal: no segment files (NNNNNNNNNNNN.journal)".into(),
        });
    }
    Ok(segments)
}

/// Total size of the segment files, for progress reporting.
pub fn total_bytes(segments: &[(u64, PathBuf)]) -> u64 {
    segments
        .iter()
        .filter_map(|(_, p)| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Calls `f(seq, payload)` for every record, in order. Stops with an error naming the segment
/// and offset at the first damaged frame or sequence break, except that an incomplete last
/// frame of the last segment (a crash while writing, not yet recovered) ends the walk quietly
/// when `tolerate_torn_tail` is set. `progress` gets each segment's size once it is read.
pub fn for_each_payload(
    dir: &Path,
    tolerate_torn_tail: bool,
    progress: impl FnMut(u64),
    f: impl FnMut(u64, &[u8]) -> Result<(), JournalError>,
) -> Result<(), JournalError> {
    for_each_payload_from(dir, 0, tolerate_torn_tail, progress, f)
}

/// The first sequence number a journal still has (older segments may have been deleted by
/// retention), from the first segment's header.
pub fn first_seq(dir: &Path) -> Result<u64, JournalError> {
    let segments = segments(dir)?;
    Ok(header_of(&segments[0].1)?.first_seq)
}

fn header_of(path: &Path) -> Result<SegmentHeader, JournalError> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; HEADER_LEN];
    fs::File::open(path)
        .and_then(|f| f.read_exact_at(&mut b, 0))
        .map_err(|source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    SegmentHeader::decode(&b).map_err(|e| JournalError::Segment {
        path: path.to_path_buf(),
        offset: 0,
        message: e.to_string(),
    })
}

/// [`for_each_payload`] for the records from sequence number `from` on: segments that end
/// before it are skipped by their headers, not read.
pub fn for_each_payload_from(
    dir: &Path,
    from: u64,
    tolerate_torn_tail: bool,
    mut progress: impl FnMut(u64),
    mut f: impl FnMut(u64, &[u8]) -> Result<(), JournalError>,
) -> Result<(), JournalError> {
    let mut segments = segments(dir)?;
    if from > 0 {
        // Keep the last segment whose first record is at or before `from`, and what follows.
        let mut keep_from = 0;
        for (i, (_, path)) in segments.iter().enumerate().skip(1) {
            if header_of(path)?.first_seq <= from {
                keep_from = i;
            } else {
                break;
            }
        }
        segments.drain(..keep_from);
    }
    let mut expected: Option<u64> = None;
    let last = segments.len() - 1;
    for (i, (index, path)) in segments.iter().enumerate() {
        let io_error = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        // Streamed a frame at a time: a reader (a subscriber catching up, an export) holds one
        // record in memory, not a whole segment.
        let mut file =
            std::io::BufReader::with_capacity(64 * 1024, fs::File::open(path).map_err(io_error)?);
        let damaged = |offset: usize, message: String| JournalError::Segment {
            path: path.clone(),
            offset: offset as u64,
            message,
        };
        let mut head = [0u8; HEADER_LEN];
        let n = read_full(&mut file, &mut head).map_err(io_error)?;
        let header = SegmentHeader::decode(&head[..n]).map_err(|e| damaged(0, e.to_string()))?;
        if header.segment != *index {
            return Err(damaged(
                16,
                format!("header says segment {}", header.segment),
            ));
        }
        if let Some(exp) = expected {
            if header.first_seq != exp {
                return Err(damaged(
                    24,
                    format!(
                        "segment starts at sequence {}, the previous one ended before {exp}",
                        header.first_seq
                    ),
                ));
            }
        }
        let mut seq = header.first_seq;
        let mut off = HEADER_LEN;
        let mut frame_bytes = Vec::new();
        loop {
            frame_bytes.resize(format::FRAME_HEADER_LEN, 0);
            let n = read_full(&mut file, &mut frame_bytes).map_err(io_error)?;
            if n == 0 {
                break; // the end of the segment
            }
            frame_bytes.truncate(n);
            if n == format::FRAME_HEADER_LEN {
                let len = u32::from_le_bytes([
                    frame_bytes[0],
                    frame_bytes[1],
                    frame_bytes[2],
                    frame_bytes[3],
                ]);
                // A length over the limit is decode_frame's to report; nothing more is read.
                if len <= format::MAX_PAYLOAD {
                    frame_bytes.resize(format::FRAME_HEADER_LEN + len as usize, 0);
                    let got = read_full(&mut file, &mut frame_bytes[format::FRAME_HEADER_LEN..])
                        .map_err(io_error)?;
                    frame_bytes.truncate(format::FRAME_HEADER_LEN + got);
                }
            }
            match format::decode_frame(&frame_bytes) {
                Ok(frame) if frame.seq == seq => {
                    if seq >= from {
                        f(seq, frame.payload)?;
                    }
                    seq += 1;
                    off += frame.bytes.len();
                }
                Ok(frame) => {
                    return Err(damaged(
                        off,
                        format!("sequence {} where {seq} was expected", frame.seq),
                    ))
                }
                Err(
                    e @ (format::FrameError::ShortHeader(_)
                    | format::FrameError::ShortPayload { .. }),
                ) if tolerate_torn_tail && i == last => {
                    tracing::warn!(
                        segment = index,
                        offset = off,
                        "journal ends with an incomplete record ({e}); ignored"
                    );
                    break;
                }
                Err(e) => return Err(damaged(off, e.to_string())),
            }
        }
        expected = Some(seq);
        progress(off as u64);
    }
    Ok(())
}

/// Reads until `buf` is full or the file ends; how many bytes were read.
fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Like [`for_each_payload`], decoding each record into the event it was written from.
pub fn for_each_event(
    dir: &Path,
    progress: impl FnMut(u64),
    mut f: impl FnMut(u64, Event) -> Result<(), JournalError>,
) -> Result<(), JournalError> {
    let mut decode_error = None;
    let result = for_each_payload(dir, true, progress, |seq, payload| {
        match convert::decode(payload) {
            Ok(event) => f(seq, event),
            Err(e) => {
                decode_error = Some((seq, e));
                Err(JournalError::Dir {
                    dir: dir.to_path_buf(),
                    message: String::new(),
                })
            }
        }
    });
    if let Some((seq, e)) = decode_error {
        return Err(JournalError::Record {
            seq,
            message: e.to_string(),
        });
    }
    result
}
