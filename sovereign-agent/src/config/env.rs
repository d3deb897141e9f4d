//! `SOVEREIGN_*` environment variables: every key of the configuration file can be set (or
//! overridden) from the environment, which is how containers are configured. The variable of
//! `journal.segment_max_bytes` is `SOVEREIGN_JOURNAL_SEGMENT_MAX_BYTES`: the key upper-cased,
//! dots as underscores. Precedence: command-line flags, then the environment, then the file,
//! then the built-in defaults.

/// How an environment value becomes a TOML value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Taken as it is (paths, addresses, names).
    Text,
    /// An integer or `true`/`false`, parsed as TOML.
    Literal,
    /// A list of strings, separated by commas (`10.96.0.10,[fd00::a]:53`).
    List,
}

use Kind::{List, Literal, Text};

/// Every key of the configuration file. A unit test checks this list against the
/// configuration's fields, and another that docs/configuration.md documents each.
pub const KEYS: &[(&str, Kind)] = &[
    ("cgroup", Text),
    ("output", Text),
    ("policy", Text),
    ("datasets", Text),
    ("policy_poll_interval_ms", Literal),
    ("name_map_entries", Literal),
    ("name_ttl_floor_secs", Literal),
    ("ring_buffer_bytes", Literal),
    ("priority_ring_buffer_bytes", Literal),
    ("tcp_socket_entries", Literal),
    ("process_cache_entries", Literal),
    ("udp_socket_entries", Literal),
    ("process_keep_exited_secs", Literal),
    ("ancestors_depth", Literal),
    ("existing_connections", Literal),
    ("loss_poll_interval_ms", Literal),
    ("max_event_delay_ms", Literal),
    ("log.level", Text),
    ("log.format", Text),
    ("journal.enabled", Literal),
    ("journal.dir", Text),
    ("journal.segment_max_bytes", Literal),
    ("journal.segment_max_age_secs", Literal),
    ("journal.retention_max_age_days", Literal),
    ("journal.retention_max_bytes", Literal),
    ("journal.fsync", Text),
    ("journal.fsync_interval_ms", Literal),
    ("journal.checkpoint_interval_ms", Literal),
    ("journal.signing_key", Text),
    ("journal.max_flows_per_sec", Literal),
    ("journal.max_flows_burst", Literal),
    ("api.enabled", Literal),
    ("api.socket", Text),
    ("api.tcp_listen", Text),
    ("api.tls_cert", Text),
    ("api.tls_key", Text),
    ("api.client_ca", Text),
    ("api.max_connections", Literal),
    ("api.max_connections_per_client", Literal),
    ("api.handshake_timeout_secs", Literal),
    ("agent_id", Text),
    ("alerts.window_secs", Literal),
    ("alerts.max_keys", Literal),
    ("budget.process_records_per_sec", Literal),
    ("budget.process_burst", Literal),
    ("budget.cgroup_records_per_sec", Literal),
    ("budget.cgroup_burst", Literal),
    ("budget.cgroup_new_destinations_per_sec", Literal),
    ("budget.cgroup_new_destinations_burst", Literal),
    ("budget.cgroup_process_records_per_sec", Literal),
    ("budget.cgroup_process_records_burst", Literal),
    ("push.collector", Text),
    ("push.ca", Text),
    ("push.cert", Text),
    ("push.key", Text),
    ("push.batch", Literal),
    ("metrics.enabled", Literal),
    ("metrics.listen", Text),
    ("names.trusted_resolvers", List),
    ("names.resolver_cgroups", List),
    ("names.max_ttl_secs", Literal),
    ("names.query_timeout_ms", Literal),
    ("names.query_table_entries", Literal),
    ("names.query_table_per_cgroup", Literal),
    ("names.map_per_cgroup", Literal),
    ("names.open_flow_entries", Literal),
    ("enforce.failsafe", List),
];

pub const PREFIX: &str = "SOVEREIGN_";

/// Variables the command line reads itself (not configuration keys).
const COMMAND_LINE: &[&str] = &[
    "SOVEREIGN_CONFIG",
    "SOVEREIGN_LOG",
    "SOVEREIGN_TLS_CA",
    "SOVEREIGN_TLS_CERT",
    "SOVEREIGN_TLS_KEY",
    "SOVEREIGN_COLLECTOR_LISTEN",
    "SOVEREIGN_COLLECTOR_JOURNAL",
    "SOVEREIGN_COLLECTOR_SOCKET",
];

/// The environment variable of `key`.
pub fn variable(key: &str) -> String {
    format!("{PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// One override taken from the environment.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub variable: String,
    pub key: &'static str,
    pub value: toml::Value,
}

/// What the environment sets: the overrides, and the `SOVEREIGN_*` variables that are no
/// setting (reported as a warning: a typo must not pass silently, but Kubernetes adds
/// `<SERVICE>_PORT`-style variables of its own).
pub fn overrides(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(Vec<Override>, Vec<String>), String> {
    let mut found = Vec::new();
    let mut unknown = Vec::new();
    for (name, raw) in vars {
        if !name.starts_with(PREFIX) || COMMAND_LINE.contains(&name.as_str()) {
            continue;
        }
        let Some(&(key, kind)) = KEYS.iter().find(|(k, _)| variable(k) == name) else {
            unknown.push(name);
            continue;
        };
        // Empty is unset: a container template can leave a variable blank.
        if raw.is_empty() {
            continue;
        }
        let value = match kind {
            Text => toml::Value::String(raw),
            List => toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_string()))
                    .collect(),
            ),
            Literal => toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .ok_or_else(|| {
                    format!(
                        "environment variable {name}={raw:?} (key `{key}`): not a number or \
                         true/false"
                    )
                })?,
        };
        found.push(Override {
            variable: name,
            key,
            value,
        });
    }
    found.sort_by(|a, b| a.variable.cmp(&b.variable));
    unknown.sort();
    Ok((found, unknown))
}

/// Sets `key` (dotted) in `table`.
pub fn apply(table: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        None => {
            table.insert(key.to_string(), value);
        }
        Some((section, rest)) => {
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                apply(t, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/configuration.md has a row for every key, naming its variable.
    #[test]
    fn the_documentation_lists_every_key_and_variable() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
        )
        .unwrap();
        for (key, _) in KEYS {
            let row = format!("| `{key}` | `{}` |", variable(key));
            assert!(
                doc.contains(&row),
                "docs/configuration.md lacks the row {row}"
            );
        }
    }
}
