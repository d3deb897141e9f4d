//! Keeps the running agent's policy current: reloads on SIGHUP and when the policy file
//! changes (polled), compiles off the event loop, and publishes the new policy only when it
//! compiled. A policy that fails to load is reported and the previous one stays in force.
use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use tokio::{
    signal::unix::{signal, SignalKind},
    sync::watch,
};

use crate::policy::{Policy, PolicyErrors, PolicyReceiver};

/// What the watcher did, for `/metrics`: the last load's duration and time, reloads by outcome.
#[derive(Debug, Default)]
pub struct LoadStats {
    pub load_ns: AtomicU64,
    pub loaded_unix_ns: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
}

impl LoadStats {
    /// A load that took `took`: the first (`reload` None) or a reload that compiled or not. A
    /// failed reload leaves the figures of the policy in force.
    fn record(&self, took: Duration, reload: Option<bool>) {
        match reload {
            Some(true) => self.reloads_ok.fetch_add(1, Relaxed),
            Some(false) => {
                self.reloads_failed.fetch_add(1, Relaxed);
                return;
            }
            None => 0,
        };
        self.load_ns
            .store(took.as_nanos().min(u128::from(u64::MAX)) as u64, Relaxed);
        self.loaded_unix_ns
            .store(crate::clock::unix_now_ns().max(0) as u64, Relaxed);
    }
}

/// Told of each policy now in force (e.g. systemd's STATUS line).
pub type OnReload = fn(&str);

#[derive(Clone, Debug)]
pub struct PolicySource {
    pub path: PathBuf,
    pub datasets: Option<PathBuf>,
    pub poll_interval: Duration,
}

/// What tells one version of the file from the next: its modification time, size and inode.
/// The time alone is not enough: it has the kernel's coarse clock tick (a few ms), so two
/// writes within one tick look alike; a file renamed into place (as editors and configuration
/// management write) has a new inode.
type Fingerprint = Option<(SystemTime, u64, u64)>;

fn fingerprint(path: &Path) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Loads the policy once (an error here stops the agent: it never starts without the policy
/// it was given), then watches it in a background task.
pub async fn start(
    source: PolicySource,
    stats: Arc<LoadStats>,
    on_reload: OnReload,
) -> Result<PolicyReceiver, PolicyErrors> {
    let began = Instant::now();
    // The file as it is before it is read: a change made while it loads, or before the
    // watcher first runs, is then seen as a change, not taken for the version already loaded.
    let seen = fingerprint(&source.path);
    let first = load(&source).await?;
    stats.record(began.elapsed(), None);
    log_loaded(&first, "policy loaded");
    let (tx, rx) = watch::channel(Some(Arc::new(first)));
    tokio::spawn(watch_loop(source, tx, stats, on_reload, seen));
    Ok(rx)
}

async fn load(source: &PolicySource) -> Result<Policy, PolicyErrors> {
    let (path, datasets) = (source.path.clone(), source.datasets.clone());
    tokio::task::spawn_blocking(move || Policy::load(&path, datasets.as_deref()))
        .await
        .unwrap_or_else(|e| {
            Err(PolicyErrors(vec![crate::policy::PolicyError {
                file: source.path.clone(),
                place: None,
                message: format!("policy compilation failed: {e}"),
            }]))
        })
}

fn log_loaded(p: &Policy, what: &str) {
    tracing::info!(
        policy = %p.name, version = %p.version, hash = %p.hash,
        zones = p.zone_count(), rules = p.rule_count(), "{what}"
    );
}

async fn watch_loop(
    source: PolicySource,
    tx: watch::Sender<Option<Arc<Policy>>>,
    stats: Arc<LoadStats>,
    on_reload: OnReload,
    mut seen: Fingerprint,
) {
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; the policy reloads on file changes only");
            return;
        }
    };
    let mut tick = tokio::time::interval(source.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let reason = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            _ = tick.tick() => {
                let now = fingerprint(&source.path);
                if now == seen {
                    continue;
                }
                seen = now;
                "policy file changed"
            }
            _ = tx.closed() => return,
        };
        let began = Instant::now();
        match load(&source).await {
            Ok(p) => {
                stats.record(began.elapsed(), Some(true));
                log_loaded(&p, &format!("policy reloaded ({reason})"));
                on_reload(&format!(
                    "capturing; policy {} version {} reloaded ({reason})",
                    p.name, p.version
                ));
                if tx.send(Some(Arc::new(p))).is_err() {
                    return;
                }
            }
            Err(errors) => {
                stats.record(began.elapsed(), Some(false));
                let current = tx
                    .borrow()
                    .as_ref()
                    .map(|p| format!("{} version {} ({})", p.name, p.version, p.hash));
                for e in &errors.0 {
                    tracing::error!(reason, "policy reload failed: {e}");
                }
                tracing::error!(
                    reason,
                    "policy reload failed with {} error(s); still enforcing {}",
                    errors.0.len(),
                    current.unwrap_or_default()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    const POLICY: &str =
        "[policy]\nname = \"watched\"\nversion = \"VERSION\"\ndefault = \"allow\"\n";

    static REPORTED: Mutex<Vec<String>> = Mutex::new(Vec::new());

    fn report(status: &str) {
        REPORTED.lock().unwrap().push(status.to_string());
    }

    fn write(path: &Path, version: &str) {
        // A new file renamed into place, as editors and configuration management do.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, POLICY.replace("VERSION", version)).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    async fn version_becomes(rx: &mut PolicyReceiver, version: &str) {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if rx.borrow_and_update().as_ref().map(|p| p.version.as_str()) == Some(version) {
                    return;
                }
                rx.changed().await.expect("the watcher runs");
            }
        })
        .await
        .unwrap_or_else(|_| panic!("version {version} was never published"));
    }

    #[tokio::test]
    async fn a_changed_file_is_published_a_broken_one_is_counted_and_the_last_good_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        write(&path, "1");
        let stats = Arc::new(LoadStats::default());
        let source = PolicySource {
            path: path.clone(),
            datasets: None,
            poll_interval: Duration::from_millis(20),
        };
        let mut rx = start(source, stats.clone(), report).await.unwrap();
        version_becomes(&mut rx, "1").await;
        assert!(stats.loaded_unix_ns.load(Relaxed) > 0);

        write(&path, "2");
        version_becomes(&mut rx, "2").await;
        assert_eq!(stats.reloads_ok.load(Relaxed), 1);
        assert!(REPORTED
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.contains("policy watched version 2 reloaded (policy file changed)")));

        std::fs::write(&path, "[policy\nbroken").unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while stats.reloads_failed.load(Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the broken policy was tried");
        assert_eq!(
            rx.borrow().as_ref().unwrap().version,
            "2",
            "still enforcing version 2"
        );

        write(&path, "3");
        version_becomes(&mut rx, "3").await;
        assert_eq!(stats.reloads_ok.load(Relaxed), 2);
    }

    #[tokio::test]
    async fn a_policy_that_does_not_compile_at_start_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "[policy]\nname = 1\n").unwrap();
        let source = PolicySource {
            path,
            datasets: None,
            poll_interval: Duration::from_millis(20),
        };
        let stats = Arc::new(LoadStats::default());
        assert!(start(source, stats.clone(), report).await.is_err());
        assert_eq!(stats.loaded_unix_ns.load(Relaxed), 0);
    }
}
