//! Any bytes as the start of a TLS ClientHello: a valid host name, none, or an error; never a
//! panic or an out-of-bounds read.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sovereign_agent::names::sni::server_name;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(name)) = server_name(data) {
        assert!(!name.is_empty() && name.len() <= 255);
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)));
    }
});
