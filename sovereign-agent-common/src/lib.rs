//! Records shared by the kernel programs (`sovereign-agent-ebpf`) and user space.
//!
//! Every record the kernel writes into the ring buffer is one [`FlowRecord`]: fixed-width
//! integers and byte arrays only, explicit padding, the `u32` kind first. User space never
//! transmutes a kernel value into an enum: it decodes with [`TryFrom`] and rejects what it
//! does not know (feature `user`).
#![no_std]

#[cfg(feature = "user")]
extern crate alloc;

mod budget;
#[cfg(feature = "user")]
mod decode;
mod enforce;
mod flow;
mod maps;
mod packet;
mod process;

pub use budget::*;
#[cfg(feature = "user")]
pub use decode::{comm_string, ip_of, DecodeError, Decoded, PacketView, ProcessView, Record};
pub use enforce::*;
pub use flow::*;
pub use maps::*;
pub use packet::*;
pub use process::*;

#[cfg(all(test, feature = "user"))]
mod tests;
