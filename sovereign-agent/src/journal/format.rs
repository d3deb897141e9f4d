//! The on-disk format (docs/journal.md): segment header, record frame, hash chain, seals.
//!
//! ```text
//! segment = header (160 bytes) frame*
//! frame   = len:u32le crc32c:u32le seq:u64le payload[len]     crc32c over seq and payload
//! chain   = head(n) = BLAKE3(header || frame(first) || ... || frame(n))
//! ```
//!
//! The chain value after a record is the BLAKE3 hash of the segment's bytes up to and
//! including it: any edit, removal or reordering before that point changes it. Hashing the
//! bytes as one stream (instead of re-hashing per record) lets BLAKE3 use its SIMD paths:
//! writing and verifying stay far from being bound by the hash.
//!
//! The header of segment N+1 carries the chain head of segment N (and optionally an Ed25519
//! signature of it), so every segment is sealed by the next one; the open segment is sealed
//! by the `HEAD` checkpoint file.
use std::path::{Path, PathBuf};

pub const MAGIC: [u8; 8] = *b"SAJRNL\r\n";
/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 160;
pub const FRAME_HEADER_LEN: usize = 16;
/// Largest payload accepted: a frame claiming more is damage, not a record.
pub const MAX_PAYLOAD: u32 = 1 << 20;
pub const HASH_LEN: usize = 32;
pub type Hash = [u8; HASH_LEN];

const FLAG_SIGNED: u16 = 1;
const SEAL_DOMAIN: &[u8] = b"sovereign-agent journal seal v1\0";
const CHECKPOINT_DOMAIN: &[u8] = b"sovereign-agent journal checkpoint v1\0";

/// The fixed header of a segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub segment: u64,
    pub first_seq: u64,
    pub created_unix_ns: i64,
    /// Chain head at the end of the previous segment (zeros for segment 0).
    pub prev_head: Hash,
    /// Ed25519 signature of the previous segment's seal.
    pub prev_signature: Option<[u8; 64]>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("shorter than a segment header ({0} of {HEADER_LEN} bytes)")]
    Short(usize),
    #[error("not a journal segment (no SAJRNL magic)")]
    NotASegment,
    #[error("format version {0}; this build reads version {FORMAT_VERSION} and older: upgrade sovereign-agent")]
    NewerVersion(u16),
    #[error("header checksum mismatch")]
    Checksum,
    #[error("unsupported header length {0}")]
    Length(u32),
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let flags = if self.prev_signature.is_some() {
            FLAG_SIGNED
        } else {
            0
        };
        b[10..12].copy_from_slice(&flags.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.segment.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_seq.to_le_bytes());
        b[32..40].copy_from_slice(&self.created_unix_ns.to_le_bytes());
        b[40..72].copy_from_slice(&self.prev_head);
        if let Some(sig) = &self.prev_signature {
            b[72..136].copy_from_slice(sig);
        }
        let crc = crc32c::crc32c(&b[..156]);
        b[156..160].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, HeaderError> {
        if b.len() < 8 || b[0..8] != MAGIC {
            return Err(if b.len() < 8 && MAGIC.starts_with(b) {
                HeaderError::Short(b.len())
            } else {
                HeaderError::NotASegment
            });
        }
        if b.len() < 12 {
            return Err(HeaderError::Short(b.len()));
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version > FORMAT_VERSION {
            return Err(HeaderError::NewerVersion(version));
        }
        if b.len() < HEADER_LEN {
            return Err(HeaderError::Short(b.len()));
        }
        let crc = u32::from_le_bytes(b[156..160].try_into().unwrap());
        if crc32c::crc32c(&b[..156]) != crc {
            return Err(HeaderError::Checksum);
        }
        let header_len = u32::from_le_bytes(b[12..16].try_into().unwrap());
        if header_len as usize != HEADER_LEN {
            return Err(HeaderError::Length(header_len));
        }
        let flags = u16::from_le_bytes([b[10], b[11]]);
        Ok(SegmentHeader {
            segment: u64::from_le_bytes(b[16..24].try_into().unwrap()),
            first_seq: u64::from_le_bytes(b[24..32].try_into().unwrap()),
            created_unix_ns: i64::from_le_bytes(b[32..40].try_into().unwrap()),
            prev_head: b[40..72].try_into().unwrap(),
            prev_signature: (flags & FLAG_SIGNED != 0).then(|| b[72..136].try_into().unwrap()),
        })
    }
}

/// The chain value at the end of `prefix`: a segment's bytes from its header up to the end
/// of a record.
pub fn chain_of(prefix: &[u8]) -> Hash {
    *blake3::hash(prefix).as_bytes()
}

/// The chain value of a running hasher.
pub fn head_of(chain: &blake3::Hasher) -> Hash {
    *chain.finalize().as_bytes()
}

/// Appends one frame for `payload` with sequence number `seq` to `out`; returns its range.
pub fn encode_frame(out: &mut Vec<u8>, seq: u64, payload: &[u8]) -> std::ops::Range<usize> {
    let start = out.len();
    let mut crc = crc32c::crc32c(&seq.to_le_bytes());
    crc = crc32c::crc32c_append(crc, payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
    start..out.len()
}

/// A frame read from a segment's bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub seq: u64,
    pub payload: &'a [u8],
    /// The whole frame, for the hash chain.
    pub bytes: &'a [u8],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("incomplete frame header ({0} bytes before the end)")]
    ShortHeader(usize),
    #[error("frame length {0} exceeds the {MAX_PAYLOAD}-byte limit")]
    TooLong(u32),
    #[error("incomplete record: {need} payload bytes announced, {have} present")]
    ShortPayload { need: u32, have: usize },
    #[error("record checksum mismatch")]
    Checksum,
}

/// Reads the frame at the start of `b` (which must not be empty).
pub fn decode_frame(b: &[u8]) -> Result<Frame<'_>, FrameError> {
    if b.len() < FRAME_HEADER_LEN {
        return Err(FrameError::ShortHeader(b.len()));
    }
    let len = u32::from_le_bytes(b[0..4].try_into().unwrap());
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLong(len));
    }
    let end = FRAME_HEADER_LEN + len as usize;
    if b.len() < end {
        return Err(FrameError::ShortPayload {
            need: len,
            have: b.len() - FRAME_HEADER_LEN,
        });
    }
    let crc = u32::from_le_bytes(b[4..8].try_into().unwrap());
    if crc32c::crc32c_append(crc32c::crc32c(&b[8..16]), &b[16..end]) != crc {
        return Err(FrameError::Checksum);
    }
    Ok(Frame {
        seq: u64::from_le_bytes(b[8..16].try_into().unwrap()),
        payload: &b[16..end],
        bytes: &b[..end],
    })
}

/// The message an Ed25519 key signs when segment `segment` is sealed: its index, the
/// sequence number the next segment starts at, and its chain head.
pub fn seal_message(segment: u64, next_seq: u64, head: &Hash) -> Vec<u8> {
    let mut m = SEAL_DOMAIN.to_vec();
    m.extend_from_slice(&segment.to_le_bytes());
    m.extend_from_slice(&next_seq.to_le_bytes());
    m.extend_from_slice(head);
    m
}

/// The message signed in a `HEAD` checkpoint.
pub fn checkpoint_message(segment: u64, next_seq: u64, head: &Hash) -> Vec<u8> {
    let mut m = CHECKPOINT_DOMAIN.to_vec();
    m.extend_from_slice(&segment.to_le_bytes());
    m.extend_from_slice(&next_seq.to_le_bytes());
    m.extend_from_slice(head);
    m
}

pub const SEGMENT_SUFFIX: &str = ".journal";
pub const HEAD_FILE: &str = "HEAD";
pub const LOCK_FILE: &str = "LOCK";

pub fn segment_file_name(segment: u64) -> String {
    format!("{segment:012}{SEGMENT_SUFFIX}")
}

pub fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(segment_file_name(segment))
}

/// The segment index of a file name, if it names a segment.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() < 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Lower-case hex only: one spelling per value, so an edited letter case is not "the same".
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The `HEAD` checkpoint: the last durable point of the open segment, written atomically
/// (temporary file, fsync, rename). It is what makes cutting records off the end of the open
/// segment detectable; signed, it cannot be rewritten to match.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
// Strict: an edited key is damage, not an unknown extension.
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub format: u16,
    pub segment: u64,
    pub next_seq: u64,
    pub head: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader {
            segment: 7,
            first_seq: 1234,
            created_unix_ns: 1_795_824_000_000_000_000,
            prev_head: [9; 32],
            prev_signature: Some([5; 64]),
        }
    }

    #[test]
    fn header_round_trip_and_damage() {
        let h = header();
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h.clone()));
        let unsigned = SegmentHeader {
            prev_signature: None,
            ..h
        };
        assert_eq!(SegmentHeader::decode(&unsigned.encode()), Ok(unsigned));
        for i in 0..HEADER_LEN {
            let mut bad = b;
            bad[i] ^= 0x10;
            assert!(SegmentHeader::decode(&bad).is_err(), "flip at {i} accepted");
        }
        assert_eq!(
            SegmentHeader::decode(&b[..100]),
            Err(HeaderError::Short(100))
        );
        assert_eq!(
            SegmentHeader::decode(b"{\"not\": \"a journal\"}"),
            Err(HeaderError::NotASegment)
        );
    }

    #[test]
    fn newer_version_is_named() {
        let mut b = header().encode();
        b[8..10].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&b), Err(HeaderError::NewerVersion(2)));
    }

    #[test]
    fn frames_round_trip_and_detect_damage() {
        let mut buf = Vec::new();
        let r1 = encode_frame(&mut buf, 41, b"hello");
        let r2 = encode_frame(&mut buf, 42, b"");
        let f1 = decode_frame(&buf).unwrap();
        assert_eq!((f1.seq, f1.payload), (41, &b"hello"[..]));
        assert_eq!(f1.bytes, &buf[r1]);
        let f2 = decode_frame(&buf[r2.clone()]).unwrap();
        assert_eq!((f2.seq, f2.payload.len()), (42, 0));
        for i in 0..r2.start {
            let mut bad = buf.clone();
            bad[i] ^= 1;
            assert!(decode_frame(&bad).is_err(), "flip at {i} accepted");
        }
        assert_eq!(decode_frame(&buf[..10]), Err(FrameError::ShortHeader(10)));
        assert_eq!(
            decode_frame(&buf[..18]),
            Err(FrameError::ShortPayload { need: 5, have: 2 })
        );
    }

    #[test]
    fn segment_names() {
        assert_eq!(segment_file_name(42), "000000000042.journal");
        assert_eq!(parse_segment_file_name("000000000042.journal"), Some(42));
        assert_eq!(parse_segment_file_name("42.journal"), None);
        assert_eq!(parse_segment_file_name("000000000042.journal.tmp"), None);
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])), Some(vec![0, 1, 254, 255]));
        assert_eq!(unhex("zz"), None);
    }
}
