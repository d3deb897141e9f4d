//! Naming destinations: DNS responses and TLS ClientHellos seen in the kernel, parsed here,
//! joined to flows by (cgroup, address) and by socket cookie.
pub mod dns;
pub mod map;
pub mod sni;

pub use map::{NameMap, Naming};
