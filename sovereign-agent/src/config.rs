//! The agent's configuration file (TOML). Every key is optional; built-in defaults make
//! `sovereign-agent run` useful with no file at all. Unknown keys are errors, so a typo never
//! silently falls back to a default.
use std::{
    num::NonZeroUsize,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use sovereign_agent_common::DEFAULT_RING_BYTES;

use crate::{bpf::CaptureOptions, pipeline::PipelineOptions};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// cgroup v2 to watch: absolute, or relative to the hierarchy root. Unset: the whole host.
    pub cgroup: Option<PathBuf>,
    /// Where flow events go: `-` (stdout) or a file, appended to.
    pub output: PathBuf,
    /// Residency policy (docs/policy.md). Unset: flows are reported without verdicts.
    pub policy: Option<PathBuf>,
    /// Directory of datasets (provider IP-range files, .mmdb) for the policy.
    pub datasets: Option<PathBuf>,
    /// How often the policy file is checked for changes, in milliseconds.
    pub policy_poll_interval_ms: u64,
    /// (cgroup, address) → names entries kept for DNS answers (and as many for TLS SNI).
    pub name_map_entries: usize,
    /// DNS answers are kept at least this long, whatever their TTL, in seconds.
    pub name_ttl_floor_secs: u64,
    /// Size of the kernel ring buffer in bytes: a power of two, at least 4096.
    pub ring_buffer_bytes: u32,
    /// Processes whose /proc facts are cached.
    pub process_cache_entries: usize,
    /// How often the kernel loss counter is polled, in milliseconds.
    pub loss_poll_interval_ms: u64,
    /// The longest an event waits in the ring buffer before the agent reads it, in
    /// milliseconds. The kernel wakes the agent at once for a sparse event and at most once a
    /// millisecond per CPU during a burst; this timer drains what a burst left behind.
    /// 0: the kernel wakes the agent for every record (most CPU under load).
    pub max_event_delay_ms: u64,
    pub log: LogConfig,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `sovereign_agent=debug,warn`, ...
    pub level: String,
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cgroup: None,
            output: PathBuf::from("-"),
            policy: None,
            datasets: None,
            policy_poll_interval_ms: 2000,
            name_map_entries: 65_536,
            name_ttl_floor_secs: 60,
            ring_buffer_bytes: DEFAULT_RING_BYTES,
            process_cache_entries: 4096,
            loss_poll_interval_ms: 1000,
            max_event_delay_ms: 20,
            log: LogConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {origin}: key `{key}`: {message}")]
    Invalid {
        origin: String,
        key: &'static str,
        message: String,
    },
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// Checks values that parse but cannot work. `origin` names the file (or the flags).
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message,
        };
        let ring = self.ring_buffer_bytes;
        if ring < 4096 || !ring.is_power_of_two() {
            return Err(invalid(
                "ring_buffer_bytes",
                format!("{ring} is not a power of two of at least 4096"),
            ));
        }
        if self.process_cache_entries == 0 {
            return Err(invalid(
                "process_cache_entries",
                "must be at least 1".into(),
            ));
        }
        if self.max_event_delay_ms > 60_000 {
            return Err(invalid(
                "max_event_delay_ms",
                format!("{} is more than a minute", self.max_event_delay_ms),
            ));
        }
        if self.name_map_entries == 0 {
            return Err(invalid("name_map_entries", "must be at least 1".into()));
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
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(invalid("log.level", format!("{:?}: {e}", self.log.level)));
        }
        Ok(())
    }

    pub fn capture_options(&self) -> CaptureOptions {
        if self.max_event_delay_ms == 0 {
            CaptureOptions::per_record(self.ring_buffer_bytes)
        } else {
            CaptureOptions::paced(self.ring_buffer_bytes)
        }
    }

    pub fn pipeline_options(&self) -> PipelineOptions {
        PipelineOptions {
            process_cache_entries: NonZeroUsize::new(self.process_cache_entries)
                .unwrap_or(NonZeroUsize::MIN),
            loss_poll_interval: Duration::from_millis(self.loss_poll_interval_ms),
            name_map_entries: NonZeroUsize::new(self.name_map_entries).unwrap_or(NonZeroUsize::MIN),
            name_ttl_floor: Duration::from_secs(self.name_ttl_floor_secs),
            // With per-record wake-ups a slow timer is only a safety net.
            max_event_delay: Duration::from_millis(match self.max_event_delay_ms {
                0 => 1000,
                ms => ms,
            }),
            ..PipelineOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("sa-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!(
            "{:x}.toml",
            text.len() * 31 + text.bytes().map(u64::from).sum::<u64>() as usize
        ));
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn full_file() {
        let c = parse(
            "cgroup = \"system.slice/llm.service\"\noutput = \"/var/log/flows.jsonl\"\n\
             ring_buffer_bytes = 8388608\nprocess_cache_entries = 100\nloss_poll_interval_ms = 250\n\
             [log]\nlevel = \"debug\"\nformat = \"json\"\n",
        )
        .unwrap();
        assert_eq!(
            c.cgroup.as_deref(),
            Some(Path::new("system.slice/llm.service"))
        );
        assert_eq!(c.ring_buffer_bytes, 8 << 20);
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn unknown_key_names_the_key_and_file() {
        let err = parse("ring_bufer_bytes = 4096\n").unwrap_err().to_string();
        assert!(err.contains("ring_bufer_bytes"), "{err}");
        assert!(err.contains("config file"), "{err}");
        assert!(err.contains(".toml"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = parse("ring_buffer_bytes = 5000\n").unwrap_err().to_string();
        assert!(
            err.contains("`ring_buffer_bytes`") && err.contains("5000"),
            "{err}"
        );
        let err = parse("[log]\nformat = \"xml\"\n").unwrap_err().to_string();
        assert!(err.contains("xml"), "{err}");
        let err = parse("process_cache_entries = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("process_cache_entries"), "{err}");
    }

    #[test]
    fn missing_file_names_it() {
        let err = Config::load(Path::new("/nonexistent/agent.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config file /nonexistent/agent.toml:"),
            "{err}"
        );
    }
}
