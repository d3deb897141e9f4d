use which::which;

/// Building this crate needs the `bpf-linker` binary, which cargo cannot express as a
/// dependency: rebuild when the linker found on PATH changes (same approach as aya-template).
fn main() {
    match which("bpf-linker") {
        Ok(linker) => println!("cargo:rerun-if-changed={}", linker.display()),
        Err(_) => println!("cargo:warning=bpf-linker not on PATH: run `cargo xtask setup`"),
    }
}
