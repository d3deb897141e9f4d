//! Compiles the .proto files with protox (pure Rust: no `protoc` on the build machine), then
//! generates the messages with prost and the gRPC services with tonic. The encoded descriptor
//! set is kept for gRPC server reflection.
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "sovereign/agent/v1/events.proto",
        "sovereign/agent/v1/agent.proto",
        "sovereign/collector/v1/collector.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out.join("sovereign_descriptor.bin");
    std::fs::write(&descriptor_path, descriptors.encode_to_vec())?;
    let mut config = prost_build::Config::new();
    config
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        // A flow is much larger than the other bodies; boxing it keeps every Event small.
        .boxed(".sovereign.agent.v1.Event.body.flow")
        .boxed(".sovereign.agent.v1.Event.body.alert");
    tonic_prost_build::configure().compile_with_config(config, &files, &["."])?;
    Ok(())
}
