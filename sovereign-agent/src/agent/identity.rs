//! Who this agent is, for the journal's start record: its binary, its configuration, its host.
use crate::{
    config::Config,
    event::{Lifecycle, LifecycleEvent},
};

/// What the journal's start record says about this agent.
pub(super) struct Identity {
    binary_hash: String,
    config_hash: String,
    config_path: Option<String>,
    pub(super) hostname: String,
}

impl Identity {
    pub(super) fn collect(config: &Config) -> Self {
        use sha2::{Digest, Sha256};
        let digest = |bytes: &[u8]| format!("sha256:{:x}", Sha256::digest(bytes));
        let binary_hash = std::fs::read("/proc/self/exe")
            .map_or_else(|e| format!("unreadable: {e}"), |b| digest(&b));
        let config_hash = match &config.source {
            Some(p) => std::fs::read(p).map_or_else(|e| format!("unreadable: {e}"), |b| digest(&b)),
            None => digest(b""),
        };
        // In a Kubernetes pod the kernel's hostname is the pod's: the DaemonSet passes the
        // node's name (downward API) in NODE_NAME.
        let hostname = std::env::var("NODE_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_default()
            });
        Identity {
            binary_hash,
            config_hash,
            config_path: config.source.as_ref().map(|p| p.display().to_string()),
            hostname,
        }
    }

    /// The journal's record of this start: what ran, with which configuration, on what.
    pub(super) fn start_record(
        self,
        cgroup: &std::path::Path,
        hooks: Vec<String>,
        hooks_failed: Vec<String>,
        not_reported: Vec<String>,
    ) -> LifecycleEvent {
        LifecycleEvent::now(Lifecycle::AgentStart {
            version: env!("CARGO_PKG_VERSION").to_string(),
            binary_hash: self.binary_hash,
            config_hash: self.config_hash,
            config_path: self.config_path,
            hostname: self.hostname,
            cgroup: cgroup.display().to_string(),
            hooks,
            hooks_failed,
            pid: std::process::id(),
            not_reported,
        })
    }
}
