//! Values that parse but cannot work: sizes out of range, names that clash, a sink without
//! the journal it spools in. Each is one message naming the key.
use std::path::Path;

use super::{Config, ConfigError};

impl Config {
    /// Checks values that parse but cannot work. `origin` names the file (or the flags).
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message,
        };
        if !(64..=16_777_216).contains(&self.tcp_socket_entries) {
            return Err(invalid(
                "tcp_socket_entries",
                format!("{} is not between 64 and 16777216", self.tcp_socket_entries),
            ));
        }
        for (key, ring) in [
            ("ring_buffer_bytes", self.ring_buffer_bytes),
            (
                "priority_ring_buffer_bytes",
                self.priority_ring_buffer_bytes,
            ),
        ] {
            if ring < 4096 || !ring.is_power_of_two() {
                return Err(invalid(
                    key,
                    format!("{ring} is not a power of two of at least 4096"),
                ));
            }
        }
        for (key, rate, burst) in [
            (
                "budget.process_burst",
                self.budget.process_records_per_sec,
                self.budget.process_burst,
            ),
            (
                "budget.cgroup_burst",
                self.budget.cgroup_records_per_sec,
                self.budget.cgroup_burst,
            ),
            (
                "budget.cgroup_new_destinations_burst",
                self.budget.cgroup_new_destinations_per_sec,
                self.budget.cgroup_new_destinations_burst,
            ),
            (
                "budget.cgroup_process_records_burst",
                self.budget.cgroup_process_records_per_sec,
                self.budget.cgroup_process_records_burst,
            ),
        ] {
            if rate > 0 && burst == 0 {
                return Err(invalid(
                    key,
                    "must be at least 1 when the rate is set".into(),
                ));
            }
            if rate > 1_000_000_000 {
                return Err(invalid(
                    key,
                    format!("rate {rate} is more than 10^9 per second"),
                ));
            }
        }
        if self.process_cache_entries == 0 {
            return Err(invalid(
                "process_cache_entries",
                "must be at least 1".into(),
            ));
        }
        if self.udp_socket_entries == 0 {
            return Err(invalid("udp_socket_entries", "must be at least 1".into()));
        }
        if self.ancestors_depth > 64 {
            return Err(invalid(
                "ancestors_depth",
                format!("{} is more than 64", self.ancestors_depth),
            ));
        }
        if !self.journal.enabled && self.output == Path::new(crate::journal::output::NONE) {
            return Err(invalid(
                "output",
                "is \"none\" and the journal is disabled: nothing would record the flows".into(),
            ));
        }
        if self.max_event_delay_ms > 60_000 {
            return Err(invalid(
                "max_event_delay_ms",
                format!("{} is more than a minute", self.max_event_delay_ms),
            ));
        }
        if self.api.tcp_listen.is_some() {
            for (key, value) in [
                ("api.tls_cert", &self.api.tls_cert),
                ("api.tls_key", &self.api.tls_key),
                ("api.client_ca", &self.api.client_ca),
            ] {
                if value.is_none() {
                    return Err(invalid(
                        key,
                        "is required with api.tcp_listen: the API is only served on TCP with TLS and client certificates".into(),
                    ));
                }
            }
        }
        if !(1..=300).contains(&self.api.handshake_timeout_secs) {
            return Err(invalid(
                "api.handshake_timeout_secs",
                format!(
                    "{} is not between 1 and 300 seconds",
                    self.api.handshake_timeout_secs
                ),
            ));
        }
        if let Some(p) = &self.push {
            if !self.journal.enabled {
                return Err(invalid(
                    "push",
                    "needs the journal (it is the spool of unacknowledged alerts)".into(),
                ));
            }
            if !p.collector.starts_with("https://") {
                return Err(invalid(
                    "push.collector",
                    format!(
                        "{:?}: expected https://HOST:PORT (the push is always TLS)",
                        p.collector
                    ),
                ));
            }
            if p.batch == 0 {
                return Err(invalid("push.batch", "must be at least 1".into()));
            }
        }
        self.validate_sinks(&invalid)?;
        if self.alerts.max_keys == 0 {
            return Err(invalid("alerts.max_keys", "must be at least 1".into()));
        }
        if self.name_map_entries == 0 {
            return Err(invalid("name_map_entries", "must be at least 1".into()));
        }
        if let Err(e) = self.names.resolvers() {
            return Err(invalid("names.trusted_resolvers", e));
        }
        if let Err(e) = crate::names::resolvers::resolver_cgroups(
            &self.names.resolver_cgroups,
            "names.resolver_cgroups",
        ) {
            return Err(invalid("names.resolver_cgroups", e));
        }
        for (key, value) in [
            ("names.max_ttl_secs", self.names.max_ttl_secs),
            ("names.query_timeout_ms", self.names.query_timeout_ms),
            (
                "names.query_table_entries",
                self.names.query_table_entries as u64,
            ),
            (
                "names.query_table_per_cgroup",
                self.names.query_table_per_cgroup as u64,
            ),
            ("names.map_per_cgroup", self.names.map_per_cgroup as u64),
            (
                "names.open_flow_entries",
                self.names.open_flow_entries as u64,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        if self.policy_poll_interval_ms == 0 {
            return Err(invalid(
                "policy_poll_interval_ms",
                "must be at least 1".into(),
            ));
        }
        if self.loss_poll_interval_ms == 0 {
            return Err(invalid(
                "loss_poll_interval_ms",
                "must be at least 1".into(),
            ));
        }
        let j = &self.journal;
        if !(4096..=(1 << 32)).contains(&j.segment_max_bytes) {
            return Err(invalid(
                "journal.segment_max_bytes",
                format!("{} is not between 4096 and 4 GiB", j.segment_max_bytes),
            ));
        }
        for (key, value) in [
            ("journal.segment_max_age_secs", j.segment_max_age_secs),
            ("journal.fsync_interval_ms", j.fsync_interval_ms),
            ("journal.checkpoint_interval_ms", j.checkpoint_interval_ms),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        if j.enabled && j.dir.as_os_str().is_empty() {
            return Err(invalid("journal.dir", "is empty".into()));
        }
        if let Err(e) = self.enforce.failsafe_nets() {
            return Err(invalid("enforce.failsafe", e));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(invalid("log.level", format!("{:?}: {e}", self.log.level)));
        }
        Ok(())
    }

    /// Sinks: unique names, the journal on, each type's settings usable.
    fn validate_sinks(
        &self,
        invalid: &dyn Fn(&'static str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if let Some(id) = &self.agent_id {
            if id.is_empty() || id.len() > 255 || !id.chars().all(|c| c.is_ascii_graphic()) {
                return Err(invalid(
                    "agent_id",
                    format!("{id:?}: 1 to 255 printable ASCII characters without spaces"),
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        if self.push.is_some() {
            names.insert("collector".to_string());
        }
        for sink in &self.sink {
            let fail = |message: String| invalid("sink", format!("{:?}: {message}", sink.name));
            if sink.name.is_empty()
                || sink.name.len() > 64
                || !sink
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(fail(
                    "name: 1 to 64 letters, digits, - or _ (it names the cursor file)".into(),
                ));
            }
            if !names.insert(sink.name.clone()) {
                return Err(fail(if sink.name == "collector" && self.push.is_some() {
                    "name taken by the [push] section".into()
                } else {
                    "a second sink with this name".into()
                }));
            }
            if !self.journal.enabled {
                return Err(fail(
                    "needs the journal (it is the spool of undelivered events)".into(),
                ));
            }
            sink.validate().map_err(fail)?;
        }
        Ok(())
    }
}
