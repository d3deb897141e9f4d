//! The start-up scan for connections open before the programs were attached.
use std::sync::Arc;

/// Reports the connections already open in the watched cgroup (and later their ends), so a
/// restart is not a blind spot; see [`crate::capture::existing`].
pub(super) fn start_existing_scan(
    cgroup: &std::path::Path,
    seen: aya::maps::HashMap<
        aya::maps::MapData,
        u64,
        [u8; sovereign_agent_common::TCP_SOCKET_VALUE_SIZE],
    >,
    report: Arc<crate::capture::existing::Report>,
) -> Option<tokio::sync::mpsc::Receiver<crate::capture::existing::Found>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let scope = crate::capture::existing::Scope {
        watched: cgroup.to_path_buf(),
        proc_root: "/proc".into(),
    };
    let seen_by_kernel = Box::new(move |cookie: u64| seen.get(&cookie, 0).is_ok());
    match crate::capture::existing::spawn(scope, seen_by_kernel, tx, report) {
        Ok(_) => Some(rx),
        Err(e) => {
            tracing::warn!("connections open at start will not be reported: {e}");
            None
        }
    }
}
