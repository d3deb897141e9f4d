//! sovereign-agent kernel programs: one eBPF object, one module per hook.
//!
//! Every program copies facts into a record in the `EVENTS` ring buffer and returns; nothing
//! is parsed or matched here. Every program allows the operation it observes, except that
//! connect and sendmsg refuse what an enforce rule of the policy refuses (`enforce.rs`).
#![no_std]
#![no_main]

mod budget;
mod connect;
mod dns;
mod egress;
mod emit;
mod enforce;
mod maps;
mod packet;
mod process;
mod release;
mod send;
mod tcp_state;
mod tls;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// GPL-compatible: the ring buffer and socket-cookie helpers are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
