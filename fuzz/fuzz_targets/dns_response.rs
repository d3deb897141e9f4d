//! Any bytes as a DNS response (UDP and TCP framing): an answer or an error, never a panic,
//! a hang or an out-of-bounds read; every answer's names are non-empty and bounded.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sovereign_agent::names::dns::parse_response;

fuzz_target!(|data: &[u8]| {
    for tcp in [false, true] {
        if let Ok(answers) = parse_response(data, tcp) {
            for a in answers {
                assert!(!a.names.is_empty() && a.names.len() <= 16);
            }
        }
    }
});
