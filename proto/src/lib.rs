//! Protobuf messages of sovereign-agent (`proto/sovereign/...`), generated at build time
//! by prost from protox-compiled descriptors.
pub mod agent {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/sovereign.agent.v1.rs"));
    }
}
