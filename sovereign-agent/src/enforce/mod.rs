//! Enforcement (docs/enforce.md): the policy's `mode = "enforce"` rules, written into the
//! kernel maps that cgroup/connect4|6 and sendmsg4|6 decide from, so that a non-resident
//! connection is refused (`EPERM`) before its first byte, on the task's cgroup and the
//! destination address: facts the workload cannot forge.
//!
//! - [`maps`]: the kernel's maps, typed.
//! - [`cgroups`]: the cgroup tree, walked for each cgroup's class.
//!
//! A reload never leaves a window: the new policy's prefixes are written under classes of
//! the other generation first, then each cgroup is switched to its new class (one map update
//! each), then the old generation's prefixes are removed. Enforcement is fail-open: the
//! programs detach when the agent stops, and nothing is refused while it is down.
pub mod cgroups;
pub mod maps;

use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use aya::maps::lpm_trie::Key;
use ipnet::IpNet;
use sovereign_agent_common::{
    EnforceAction, EnforceClass, EnforceKeyV4, EnforceKeyV6, ENFORCE_ALLOW, ENFORCE_CGROUP_ENTRIES,
    ENFORCE_REFUSE,
};

use crate::policy::{enforce::EnforcedRule, file::RuleMode, Policy, PolicyReceiver};
pub use maps::KernelMaps;

/// How often the cgroup tree is walked for new cgroups.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("enforce map {map}: {source}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> EnforceError {
    move |source| EnforceError::Map { map, source }
}

/// What the kernel enforces now (for status and metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Enforced {
    /// The enforce rules, by name.
    pub rules: Vec<String>,
    /// Prefixes written, both families.
    pub prefixes: usize,
    /// Cgroups an enforce rule decides for.
    pub cgroups: usize,
    pub failsafe: usize,
}

/// Writes a policy's enforce rules into the kernel's maps and keeps the cgroups' classes
/// current.
pub struct Enforcer {
    maps: KernelMaps,
    /// The cgroup hierarchy's root as mounted here.
    mount: PathBuf,
    /// 0 or 1: which half of the class space the current policy's rules use.
    generation: u32,
    policy: Option<Arc<Policy>>,
    /// Prefix keys written for the current generation (removed after the next is in).
    written_v4: Vec<Key<EnforceKeyV4>>,
    written_v6: Vec<Key<EnforceKeyV6>>,
    /// What each cgroup has in the kernel's map now.
    classes: HashMap<u64, EnforceClass>,
    /// The current policy's enforce rules: rule index → (class, otherwise).
    rule_classes: HashMap<u32, EnforceClass>,
    pub enforced: Enforced,
}

impl Enforcer {
    /// `failsafe`: destinations never refused (the trusted resolvers, host and cluster
    /// essentials); loopback is never refused in any case.
    pub fn new(
        mut maps: KernelMaps,
        watched: &Path,
        failsafe: &[IpNet],
    ) -> Result<Self, EnforceError> {
        for net in failsafe {
            match net {
                IpNet::V4(n) => maps
                    .failsafe_v4
                    .insert(
                        &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                        1,
                        0,
                    )
                    .map_err(map_err("ENFORCE_FAILSAFE_V4"))?,
                IpNet::V6(n) => maps
                    .failsafe_v6
                    .insert(
                        &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                        1,
                        0,
                    )
                    .map_err(map_err("ENFORCE_FAILSAFE_V6"))?,
            }
        }
        let mount = watched
            .ancestors()
            .take_while(|dir| dir.join("cgroup.procs").exists())
            .last()
            .unwrap_or(watched)
            .to_path_buf();
        Ok(Enforcer {
            maps,
            mount,
            generation: 0,
            policy: None,
            written_v4: Vec::new(),
            written_v6: Vec::new(),
            classes: HashMap::new(),
            rule_classes: HashMap::new(),
            enforced: Enforced {
                failsafe: failsafe.len(),
                ..Enforced::default()
            },
        })
    }

    /// Makes the kernel enforce `policy`'s enforce rules (none: nothing is refused).
    pub fn apply(&mut self, policy: Option<Arc<Policy>>) -> Result<(), EnforceError> {
        let started = Instant::now();
        let generation = 1 - self.generation;
        let rules: Vec<EnforcedRule> = policy
            .as_ref()
            .map(|p| p.enforced_rules())
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.mode == RuleMode::Enforce)
            .collect();
        // 1. The new generation's prefixes, beside the old ones.
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        let mut rule_classes = HashMap::new();
        for rule in &rules {
            let class = (generation << 16) | (rule.index + 1);
            let action = |refuse: bool| EnforceAction {
                action: if refuse {
                    ENFORCE_REFUSE
                } else {
                    ENFORCE_ALLOW
                },
                rule: rule.index,
            };
            for (net, refuse) in &rule.v4 {
                let key = Key::new(
                    32 + u32::from(net.prefix_len()),
                    EnforceKeyV4 {
                        class: class.to_be_bytes(),
                        addr: net.network().octets(),
                    },
                );
                self.maps
                    .v4
                    .insert(&key, action(*refuse), 0)
                    .map_err(map_err("ENFORCE_V4"))?;
                v4.push(key);
            }
            for (net, refuse) in &rule.v6 {
                let key = Key::new(
                    32 + u32::from(net.prefix_len()),
                    EnforceKeyV6 {
                        class: class.to_be_bytes(),
                        addr: net.network().octets(),
                    },
                );
                self.maps
                    .v6
                    .insert(&key, action(*refuse), 0)
                    .map_err(map_err("ENFORCE_V6"))?;
                v6.push(key);
            }
            rule_classes.insert(
                rule.index,
                EnforceClass {
                    class,
                    otherwise: action(rule.refuse_otherwise),
                },
            );
        }
        // 2. Each cgroup switched to its new class.
        self.generation = generation;
        self.policy = policy;
        self.rule_classes = rule_classes;
        let on = u32::from(!rules.is_empty());
        if on == 1 {
            self.maps.on.set(0, on, 0).map_err(map_err("ENFORCE_ON"))?;
        }
        self.rescan()?;
        if on == 0 {
            self.maps.on.set(0, on, 0).map_err(map_err("ENFORCE_ON"))?;
        }
        // 3. The old generation's prefixes go.
        for key in std::mem::replace(&mut self.written_v4, v4) {
            let _ = self.maps.v4.remove(&key);
        }
        for key in std::mem::replace(&mut self.written_v6, v6) {
            let _ = self.maps.v6.remove(&key);
        }
        self.enforced.rules = rules.iter().map(|r| r.name.clone()).collect();
        self.enforced.prefixes = self.written_v4.len() + self.written_v6.len();
        tracing::info!(
            rules = self.enforced.rules.len(),
            prefixes = self.enforced.prefixes,
            cgroups = self.enforced.cgroups,
            ms = started.elapsed().as_millis() as u64,
            "enforcement applied"
        );
        Ok(())
    }

    /// Walks the cgroup tree and writes each cgroup's class where it changed (and removes
    /// the entries of cgroups that are gone).
    pub fn rescan(&mut self) -> Result<(), EnforceError> {
        if self.rule_classes.is_empty() {
            // Nothing enforced: no walk (and the entries of an earlier policy go).
            for id in std::mem::take(&mut self.classes).keys() {
                let _ = self.maps.cgroups.remove(id);
            }
            self.enforced.cgroups = 0;
            return Ok(());
        }
        let none = EnforceClass::default();
        let found = cgroups::walk(&self.mount, ENFORCE_CGROUP_ENTRIES as usize);
        let mut now = HashMap::with_capacity(found.len());
        for (id, path) in found {
            let class = self
                .policy
                .as_ref()
                .and_then(|p| p.enforcing_rule_of_cgroup(&path))
                .and_then(|rule| self.rule_classes.get(&rule).copied())
                .unwrap_or(none);
            now.insert(id, class);
        }
        for (id, class) in &now {
            if self.classes.get(id) != Some(class) {
                self.maps
                    .cgroups
                    .insert(id, class, 0)
                    .map_err(map_err("ENFORCE_CGROUPS"))?;
            }
        }
        for id in self.classes.keys() {
            if !now.contains_key(id) {
                let _ = self.maps.cgroups.remove(id);
            }
        }
        self.enforced.cgroups = now.values().filter(|c| c.class != 0).count();
        self.classes = now;
        Ok(())
    }

    /// Keeps enforcement current until `stop`: the policy's reloads, and new cgroups every
    /// [`RESCAN_INTERVAL`]. `state` is what status and metrics show.
    pub fn spawn(
        mut self,
        mut policy: Option<PolicyReceiver>,
        state: Arc<std::sync::Mutex<Enforced>>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RESCAN_INTERVAL);
            loop {
                let changed = async {
                    match policy.as_mut() {
                        Some(rx) => rx.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    ok = changed => {
                        if !ok {
                            policy = None;
                            continue;
                        }
                        let next = policy.as_ref().and_then(|rx| rx.borrow().clone());
                        if let Err(e) = self.apply(next) {
                            tracing::error!("enforcement not updated: {e}");
                        }
                    }
                    _ = tick.tick() => {
                        if let Err(e) = self.rescan() {
                            tracing::error!("enforce classes not updated: {e}");
                        }
                    }
                }
                if let Ok(mut s) = state.lock() {
                    s.clone_from(&self.enforced);
                }
            }
        })
    }
}

/// The failsafe list: the trusted resolvers' addresses and the configured destinations.
pub fn failsafe(resolvers: &[IpAddr], configured: &[IpNet]) -> Vec<IpNet> {
    resolvers
        .iter()
        .map(|ip| IpNet::from(*ip))
        .chain(configured.iter().copied())
        .collect()
}
