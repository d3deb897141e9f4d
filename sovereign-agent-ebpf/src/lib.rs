#![no_std]
// This file exists so that sovereign-agent's build script can depend on this crate (cargo then
// rebuilds the agent when the kernel programs change); the programs are the `bin` target.
