//! Times as the report writes them: RFC 3339 text and seconds.
use crate::clock::rfc3339_from_unix_ns;

pub(super) fn ts(ns: i64) -> String {
    rfc3339_from_unix_ns(i128::from(ns))
}

pub(super) fn seconds(ns: i64) -> f64 {
    ns as f64 / 1e9
}
