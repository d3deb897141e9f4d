//! The agent's own history: start, stop, the policy in force, journal maintenance.
use serde::Serialize;

/// The agent's own history (start, stop, policy in force, journal maintenance), so a gap in
/// coverage is itself on record. JSON: `ts`, `kind` and the fields of the kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LifecycleEvent {
    pub ts: String,
    #[serde(skip)]
    pub ts_unix_ns: i64,
    #[serde(flatten)]
    pub body: Lifecycle,
}

impl LifecycleEvent {
    /// A lifecycle event stamped now.
    pub fn now(body: Lifecycle) -> Self {
        let ts_unix_ns = crate::clock::unix_now_ns();
        Self {
            ts: crate::clock::rfc3339_from_unix_ns(i128::from(ts_unix_ns)),
            ts_unix_ns,
            body,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Lifecycle {
    /// The agent started capturing.
    AgentStart {
        version: String,
        /// `sha256:` digest of the running executable.
        binary_hash: String,
        /// `sha256:` digest of the configuration file (of the empty string without one).
        config_hash: String,
        config_path: Option<String>,
        hostname: String,
        cgroup: String,
        hooks: Vec<String>,
        hooks_failed: Vec<String>,
        pid: u32,
        /// What the refused hooks would have reported ("HOOK: what"): what every flow after
        /// this start lacks. Absent when every hook attached.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        not_reported: Vec<String>,
    },
    /// The agent stopped.
    AgentStop {
        reason: String,
        flows: u64,
        kernel_losses: u64,
        not_journaled: u64,
    },
    /// Flows are judged under this policy from here on (at start and on every reload).
    Policy {
        name: String,
        version: String,
        hash: String,
        path: String,
        datasets: Vec<DatasetVersion>,
        catalogue_version: Option<String>,
    },
    /// Journal retention deleted the oldest sealed segments.
    JournalRetention {
        first_segment: u64,
        last_segment: u64,
        last_seq: u64,
        /// Hex of the hash chain head at the end of the last deleted segment.
        last_head: String,
        bytes: u64,
        reason: String,
    },
    /// The journal was reopened after a crash and its torn tail cut; or, `below_checkpoint`,
    /// damage was found among records that had been synced (docs/journal.md, "Recovery").
    JournalRecovered {
        segment: u64,
        offset: u64,
        bytes_cut: u64,
        reason: String,
        /// The cut removed records that had been synced: not a crash, damage.
        below_checkpoint: bool,
        /// How many synced records the cut removed.
        records_removed: u64,
        /// Where the damaged segment was kept, relative to the journal directory.
        #[serde(skip_serializing_if = "Option::is_none")]
        set_aside: Option<String>,
        /// The journal's id before; it goes on under a new one.
        #[serde(skip_serializing_if = "Option::is_none")]
        previous_journal_id: Option<String>,
    },
    /// Events observed but not journaled (e.g. the disk was full).
    JournalGap {
        events: u64,
        reason: String,
        from: String,
        until: String,
        #[serde(skip)]
        from_unix_ns: i64,
        #[serde(skip)]
        until_unix_ns: i64,
    },
}

impl Lifecycle {
    pub fn policy_in_force(p: &crate::policy::Policy) -> Self {
        Lifecycle::Policy {
            name: p.name.clone(),
            version: p.version.clone(),
            hash: p.hash.clone(),
            path: p.path.display().to_string(),
            datasets: p
                .datasets
                .iter()
                .map(|d| DatasetVersion {
                    kind: d.kind.key().to_string(),
                    version: d.version.clone(),
                    path: d.path.display().to_string(),
                })
                .collect(),
            catalogue_version: (!p.catalogue_version.is_empty())
                .then(|| p.catalogue_version.clone()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DatasetVersion {
    pub kind: String,
    pub version: String,
    pub path: String,
}
