//! Any bytes as the start of a TLS ClientHello: a valid host name, none, or an error; never a
//! panic or an out-of-bounds read. The same bytes cut into segments (as a workload may send
//! them) and put back together by the agent give the same answer as the whole, or say that
//! they could not be read.
#![no_main]
use std::num::NonZeroUsize;

use libfuzzer_sys::fuzz_target;
use sovereign_agent::names::{
    hello::{Hello, HelloAssembler},
    sni::server_name,
};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let whole = server_name(data);
    if let Ok(Some(name)) = &whole {
        assert!(!name.is_empty() && name.len() <= 255);
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)));
    }
    // Segments of `cut` bytes (1..=256), with sequence numbers that wrap.
    let size = usize::from(cut) + 1;
    let mut a = HelloAssembler::new(NonZeroUsize::new(4).unwrap());
    let mut seq = u32::MAX - 7;
    let mut last = Hello::Pending;
    for piece in data.chunks(size) {
        last = a.add(1, seq, piece);
        seq = seq.wrapping_add(piece.len() as u32);
        if last != Hello::Pending {
            break;
        }
    }
    if let (Hello::Name(n), Ok(Some(w))) = (&last, &whole) {
        assert_eq!(n, w);
    }
    if let Hello::Name(n) = &last {
        assert_eq!(whole.as_ref().ok(), Some(&Some(n.clone())), "a name only when the whole has it");
    }
});
