//! Any bytes as a DNS message (UDP and TCP framing), read as a response and as a query: an
//! answer or an error, never a panic, a hang or an out-of-bounds read; every answer's names
//! are non-empty and bounded, and a message read both ways has one id and one question.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sovereign_agent::names::dns::{parse_message, parse_query, parse_response};

fuzz_target!(|data: &[u8]| {
    for tcp in [false, true] {
        if let Ok(answers) = parse_response(data, tcp) {
            for a in answers {
                assert!(!a.names.is_empty() && a.names.len() <= 16);
            }
        }
        if let (Ok(q), Ok(m)) = (parse_query(data, tcp), parse_message(data, tcp)) {
            assert_eq!(Some(q.question), m.question);
            assert_eq!(q.id, m.id);
            assert!(m.answers.is_empty(), "a query has no answers");
        }
    }
});
