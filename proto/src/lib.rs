//! Protobuf messages and gRPC services of sovereign-agent (`proto/sovereign/...`), generated at
//! build time by prost and tonic from protox-compiled descriptors.
pub mod agent {
    pub mod v1 {
        tonic::include_proto!("sovereign.agent.v1");
    }
}

pub mod collector {
    pub mod v1 {
        tonic::include_proto!("sovereign.collector.v1");
    }
}

/// The encoded `FileDescriptorSet` of every package, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sovereign_descriptor.bin"));
