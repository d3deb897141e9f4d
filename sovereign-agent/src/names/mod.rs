//! Naming destinations: DNS responses and TLS ClientHellos seen in the kernel, parsed here,
//! joined to flows by (cgroup, address) and by socket cookie.
pub mod dns;
pub mod map;
pub mod sni;

pub use map::{NameMap, Naming};

/// A packet recorded from a real tool (tests/fixtures; see its README).
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
