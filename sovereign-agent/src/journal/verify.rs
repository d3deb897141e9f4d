//! `journal verify`: every frame, checksum, sequence number, hash link, seal, retention
//! record, the `HEAD` checkpoint, and (with a public key) every signature.
use std::{
    fs,
    path::{Path, PathBuf},
};

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::Serialize;

use super::{
    convert,
    error::JournalError,
    format::{self, Hash, SegmentHeader, HEADER_LEN},
    reader,
    writer::read_checkpoint,
};
use crate::event::{Event, Lifecycle};

/// The first problem found, where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: PathBuf,
    pub offset: u64,
    pub message: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub segments: u64,
    pub first_segment: u64,
    pub records: u64,
    pub first_seq: u64,
    pub next_seq: u64,
    pub bytes: u64,
    /// Seals or the checkpoint carry signatures.
    pub signed: bool,
    pub signatures_checked: u64,
    /// Hex chain head at the end of the journal.
    pub head: String,
    pub problem: Option<Problem>,
    /// Recoveries that cut records which had been synced (damage, not a crash), as the
    /// journal's `journal_recovered` records tell: the chain is intact, but those records are
    /// gone from it (kept aside).
    pub damage_recovered: Vec<DamageRecovered>,
}

/// One recovery below the checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DamageRecovered {
    /// The sequence number of the `journal_recovered` record (the first after the cut).
    pub seq: u64,
    pub ts: String,
    pub segment: u64,
    pub offset: u64,
    pub records_removed: u64,
    pub reason: String,
    pub set_aside: Option<String>,
    pub previous_journal_id: Option<String>,
}

struct Walk<'a> {
    key: Option<&'a VerifyingKey>,
    report: Report,
    /// (last deleted segment, its chain head) from retention records.
    retention: Vec<(u64, Hash)>,
    checkpoint: Option<format::Checkpoint>,
    checkpoint_seen: bool,
}

fn problem(file: &Path, offset: usize, message: impl Into<String>) -> Problem {
    Problem {
        file: file.to_path_buf(),
        offset: offset as u64,
        message: message.into(),
    }
}

fn signature_ok(key: &VerifyingKey, message: &[u8], sig: &[u8]) -> bool {
    <[u8; 64]>::try_from(sig).is_ok_and(|s| key.verify(message, &Signature::from_bytes(&s)).is_ok())
}

/// Verifies the journal in `dir`. `Err` is for a directory that cannot be read as a journal at
/// all; everything else is a [`Report`] whose `problem` says what is wrong first.
pub fn verify(dir: &Path, key: Option<&VerifyingKey>) -> Result<Report, JournalError> {
    let segments = reader::segments(dir)?;
    let checkpoint_path = dir.join(format::HEAD_FILE);
    let mut walk = Walk {
        key,
        report: Report {
            first_segment: segments[0].0,
            ..Default::default()
        },
        retention: Vec::new(),
        checkpoint: None,
        checkpoint_seen: false,
    };
    match read_checkpoint(dir) {
        Ok(Some(c)) if c.format != format::FORMAT_VERSION => {
            walk.report.problem = Some(problem(
                &checkpoint_path,
                0,
                format!(
                    "the HEAD checkpoint says format {}; this build reads format {}",
                    c.format,
                    format::FORMAT_VERSION
                ),
            ));
            return Ok(walk.report);
        }
        Ok(Some(c)) => walk.checkpoint = Some(c),
        Ok(None) => {
            walk.report.problem = Some(problem(
                &checkpoint_path,
                0,
                "the HEAD checkpoint is missing: records cut from the end could not be detected",
            ));
            return Ok(walk.report);
        }
        Err(e) => {
            walk.report.problem = Some(problem(&checkpoint_path, 0, e.to_string()));
            return Ok(walk.report);
        }
    }
    if let Err(p) = walk.segments(&segments) {
        walk.report.problem = Some(p);
        return Ok(walk.report);
    }
    if let Err(p) = walk.finish(&segments, &checkpoint_path) {
        walk.report.problem = Some(p);
    }
    Ok(walk.report)
}

impl Walk<'_> {
    fn segments(&mut self, segments: &[(u64, PathBuf)]) -> Result<(), Problem> {
        let mut prev: Option<(u64, u64, Hash)> = None;
        for (index, path) in segments {
            let bytes = fs::read(path).map_err(|e| problem(path, 0, e.to_string()))?;
            self.report.bytes += bytes.len() as u64;
            let header =
                SegmentHeader::decode(&bytes).map_err(|e| problem(path, 0, e.to_string()))?;
            if header.segment != *index {
                return Err(problem(
                    path,
                    16,
                    format!(
                        "the header says segment {}: the file was renamed or replaced",
                        header.segment
                    ),
                ));
            }
            match prev {
                None => {
                    self.report.first_seq = header.first_seq;
                    if *index == 0 && (header.first_seq != 0 || header.prev_head != [0; 32]) {
                        return Err(problem(path, 24, "segment 0 does not start the journal (sequence or previous head not zero)"));
                    }
                }
                Some((pindex, pnext, phead)) => {
                    if *index != pindex + 1 {
                        return Err(problem(
                            path,
                            0,
                            format!(
                                "segment(s) {}..={} are missing between {pindex} and {index}",
                                pindex + 1,
                                index - 1
                            ),
                        ));
                    }
                    if header.first_seq != pnext {
                        return Err(problem(
                            path,
                            24,
                            format!(
                                "starts at sequence {}, but segment {pindex} ended before {pnext}",
                                header.first_seq
                            ),
                        ));
                    }
                    if header.prev_head != phead {
                        return Err(problem(
                            path,
                            40,
                            format!("the seal of segment {pindex} in this header does not match its records: segment {pindex} was modified, or this segment replaced"),
                        ));
                    }
                }
            }
            if *index > 0 {
                match (&header.prev_signature, self.key) {
                    (Some(sig), Some(key)) => {
                        self.report.signed = true;
                        let m =
                            format::seal_message(index - 1, header.first_seq, &header.prev_head);
                        if !signature_ok(key, &m, sig) {
                            return Err(problem(path, 72, format!("the signature of the seal of segment {} does not verify with the given public key", index - 1)));
                        }
                        self.report.signatures_checked += 1;
                    }
                    (Some(_), None) => self.report.signed = true,
                    (None, Some(_)) => {
                        return Err(problem(
                            path,
                            72,
                            format!("the seal of segment {} is not signed", index - 1),
                        ))
                    }
                    (None, None) => {}
                }
            }
            let mut seq = header.first_seq;
            let mut off = HEADER_LEN;
            // Where the HEAD checkpoint points into this segment, if it does.
            let mut checkpoint_at = self.checkpoint_offset(*index, seq, off);
            while off < bytes.len() {
                let frame = format::decode_frame(&bytes[off..]).map_err(|e| {
                    let hint = match e {
                        format::FrameError::ShortHeader(_) | format::FrameError::ShortPayload { .. } => {
                            " (the journal was cut here, or the agent crashed and has not reopened it since)"
                        }
                        _ => "",
                    };
                    problem(path, off, format!("record {seq}: {e}{hint}"))
                })?;
                if frame.seq != seq {
                    return Err(problem(
                        path,
                        off,
                        format!(
                            "sequence {} where {seq} was expected: records removed or reordered",
                            frame.seq
                        ),
                    ));
                }
                if convert::is_lifecycle(frame.payload) {
                    match convert::decode(frame.payload) {
                        Ok(Event::Lifecycle(l)) => {
                            if let Lifecycle::JournalRecovered {
                                segment,
                                offset,
                                reason,
                                below_checkpoint: true,
                                records_removed,
                                set_aside,
                                previous_journal_id,
                                ..
                            } = &l.body
                            {
                                self.report.damage_recovered.push(DamageRecovered {
                                    seq,
                                    ts: l.ts.clone(),
                                    segment: *segment,
                                    offset: *offset,
                                    records_removed: *records_removed,
                                    reason: reason.clone(),
                                    set_aside: set_aside.clone(),
                                    previous_journal_id: previous_journal_id.clone(),
                                });
                            }
                            if let Lifecycle::JournalRetention {
                                last_segment,
                                last_head,
                                ..
                            } = &l.body
                            {
                                if let Some(h) =
                                    format::unhex(last_head).and_then(|h| Hash::try_from(h).ok())
                                {
                                    self.retention.push((*last_segment, h));
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(e) => return Err(problem(path, off, format!("record {seq}: {e}"))),
                    }
                }
                seq += 1;
                off += frame.bytes.len();
                self.report.records += 1;
                if checkpoint_at.is_none() {
                    checkpoint_at = self.checkpoint_offset(*index, seq, off);
                }
            }
            if let Some((cp_off, cp_seq)) = checkpoint_at {
                let c = self.checkpoint.as_ref().expect("offset implies checkpoint");
                if c.head != format::hex(&format::chain_of(&bytes[..cp_off])) {
                    return Err(problem(
                        path,
                        0,
                        format!("the chain head before record {cp_seq} does not match the HEAD checkpoint: records of segment {index} were modified"),
                    ));
                }
            }
            let head = format::chain_of(&bytes);
            self.report.segments += 1;
            self.report.next_seq = seq;
            self.report.head = format::hex(&head);
            prev = Some((*index, seq, head));
        }
        Ok(())
    }

    /// The offset (and sequence number) the checkpoint names, when the walk is there.
    fn checkpoint_offset(
        &mut self,
        segment: u64,
        next_seq: u64,
        off: usize,
    ) -> Option<(usize, u64)> {
        let c = self.checkpoint.as_ref()?;
        if c.segment == segment && c.next_seq == next_seq && !self.checkpoint_seen {
            self.checkpoint_seen = true;
            return Some((off, next_seq));
        }
        None
    }

    fn finish(
        &mut self,
        segments: &[(u64, PathBuf)],
        checkpoint_path: &Path,
    ) -> Result<(), Problem> {
        let (first_index, first_path) = &segments[0];
        if *first_index > 0 {
            let bytes = fs::read(first_path).map_err(|e| problem(first_path, 0, e.to_string()))?;
            let header =
                SegmentHeader::decode(&bytes).map_err(|e| problem(first_path, 0, e.to_string()))?;
            let accounted = self
                .retention
                .iter()
                .any(|(last, head)| *last == first_index - 1 && *head == header.prev_head);
            if !accounted {
                return Err(problem(
                    first_path,
                    40,
                    format!("segments before {first_index} are missing and no retention record accounts for their deletion"),
                ));
            }
        }
        let c = self.checkpoint.clone().expect("read before the walk");
        if !self.checkpoint_seen {
            return Err(problem(
                checkpoint_path,
                0,
                format!(
                    "HEAD says the journal reached segment {} record {}, but it ends at record {}: records were cut from the end",
                    c.segment, c.next_seq, self.report.next_seq
                ),
            ));
        }
        match (&c.signature, self.key) {
            (Some(sig), Some(key)) => {
                self.report.signed = true;
                let head = format::unhex(&c.head)
                    .and_then(|h| Hash::try_from(h).ok())
                    .unwrap_or_default();
                let ok = format::unhex(sig).is_some_and(|s| {
                    signature_ok(
                        key,
                        &format::checkpoint_message(c.segment, c.next_seq, &head),
                        &s,
                    )
                });
                if !ok {
                    return Err(problem(
                        checkpoint_path,
                        0,
                        "the HEAD checkpoint's signature does not verify with the given public key",
                    ));
                }
                self.report.signatures_checked += 1;
            }
            (Some(_), None) => self.report.signed = true,
            (None, Some(_)) => {
                return Err(problem(
                    checkpoint_path,
                    0,
                    "the HEAD checkpoint is not signed",
                ))
            }
            (None, None) => {}
        }
        Ok(())
    }
}
