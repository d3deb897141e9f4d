//! Compiles the .proto files with protox (pure Rust): no `protoc` needed on the build machine.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["sovereign/agent/v1/events.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["."])?;
    prost_build::Config::new()
        // A flow is much larger than the other bodies; boxing it keeps every Event small.
        .boxed(".sovereign.agent.v1.Event.body.flow")
        .compile_fds(descriptors)?;
    Ok(())
}
