//! From the validated configuration to each stage's own options type: the only place that
//! knows both. `config` reads and checks the file and knows nothing of the runtime; each
//! module owns the options it runs with.
use std::{num::NonZeroUsize, time::Duration};

use crate::{
    alerts::AlertFolder,
    capture::{
        bpf::{CaptureOptions, Rate},
        pipeline::PipelineOptions,
    },
    config::{Config, ConfigError, FsyncMode},
    journal::{keys, FsyncPolicy, JournalOptions},
    names::NamesOptions,
    serve::{sinks, tls::TcpTls},
};

/// The kernel side: ring sizes, wake-up pacing, the per-workload budgets.
pub fn capture_options(config: &Config) -> CaptureOptions {
    let mut options = if config.max_event_delay_ms == 0 {
        CaptureOptions::per_record(config.ring_buffer_bytes)
    } else {
        CaptureOptions::paced(config.ring_buffer_bytes)
    };
    options.priority_ring_bytes = config.priority_ring_buffer_bytes;
    options.tcp_socket_entries = config.tcp_socket_entries;
    options.process_budget = Rate {
        per_sec: config.budget.process_records_per_sec,
        burst: config.budget.process_burst,
    };
    options.cgroup_budget = Rate {
        per_sec: config.budget.cgroup_records_per_sec,
        burst: config.budget.cgroup_burst,
    };
    options.new_destination_budget = Rate {
        per_sec: config.budget.cgroup_new_destinations_per_sec,
        burst: config.budget.cgroup_new_destinations_burst,
    };
    options.process_records_budget = Rate {
        per_sec: config.budget.cgroup_process_records_per_sec,
        burst: config.budget.cgroup_process_records_burst,
    };
    options
}

/// The journal's settings, with its signing key read; `None` when the journal is off.
pub fn journal_options(config: &Config) -> Result<Option<JournalOptions>, ConfigError> {
    let j = &config.journal;
    if !j.enabled {
        return Ok(None);
    }
    let signing_key = match &j.signing_key {
        None => None,
        Some(path) => {
            Some(
                keys::read_signing_key(path).map_err(|message| ConfigError::Invalid {
                    origin: config.origin(),
                    key: "journal.signing_key",
                    message,
                })?,
            )
        }
    };
    let nonzero = |v: u64| (v > 0).then_some(v);
    Ok(Some(JournalOptions {
        dir: j.dir.clone(),
        segment_max_bytes: j.segment_max_bytes,
        segment_max_age: Duration::from_secs(j.segment_max_age_secs),
        retention_max_age: nonzero(j.retention_max_age_days)
            .map(|d| Duration::from_secs(d * 86_400)),
        retention_max_bytes: nonzero(j.retention_max_bytes),
        fsync: match j.fsync {
            FsyncMode::Batch => FsyncPolicy::Batch,
            FsyncMode::Interval => {
                FsyncPolicy::Interval(Duration::from_millis(j.fsync_interval_ms))
            }
            FsyncMode::Never => FsyncPolicy::Never,
        },
        checkpoint_interval: Duration::from_millis(j.checkpoint_interval_ms),
        signing_key,
    }))
}

/// Alert folding: the window and how many (workload, destination, rule) keys are kept.
pub fn alert_folder(config: &Config) -> AlertFolder {
    AlertFolder::new(
        Duration::from_secs(config.alerts.window_secs),
        NonZeroUsize::new(config.alerts.max_keys).unwrap_or(NonZeroUsize::MIN),
    )
}

/// The API's TCP listener with its TLS files, when configured (and the API is on).
pub fn api_tcp(config: &Config) -> Option<TcpTls> {
    let a = &config.api;
    match (
        a.enabled,
        a.tcp_listen,
        &a.tls_cert,
        &a.tls_key,
        &a.client_ca,
    ) {
        (true, Some(listen), Some(cert), Some(key), Some(ca)) => Some(TcpTls {
            listen,
            cert: cert.clone(),
            key: key.clone(),
            client_ca: crate::serve::tls::ClientCa::File(ca.clone()),
            admission: crate::serve::limits::Admission::new(
                crate::serve::limits::ConnectionLimits {
                    max_connections: a.max_connections,
                    max_connections_per_client: a.max_connections_per_client,
                    handshake_timeout: Duration::from_secs(a.handshake_timeout_secs),
                },
            ),
        }),
        _ => None,
    }
}

/// The sinks to run: `[push]` (a collector sink named `collector`, with its `push.cursor`)
/// and every `[[sink]]`.
pub fn sink_plans(config: &Config, journal_dir: &std::path::Path) -> Vec<sinks::Planned> {
    let push = config.push.as_ref().map(|p| sinks::Planned {
        config: sinks::SinkConfig {
            name: "collector".into(),
            kind: sinks::SinkKind::Collector(sinks::to_collector::CollectorSink {
                url: p.collector.clone(),
                ca: p.ca.clone(),
                cert: p.cert.clone(),
                key: p.key.clone(),
            }),
            filter: sinks::SinkFilter::default(),
            batch: p.batch,
        },
        cursor: crate::serve::cursor::Cursor::of_push(journal_dir),
    });
    push.into_iter()
        .chain(
            config
                .sink
                .iter()
                .map(|s| sinks::Planned::sink(s.clone(), journal_dir)),
        )
        .collect()
}

/// The user-space pipeline: process cache, naming bounds, pacing, the flow ceiling.
pub fn pipeline_options(config: &Config) -> PipelineOptions {
    PipelineOptions {
        process_cache_entries: NonZeroUsize::new(config.process_cache_entries)
            .unwrap_or(NonZeroUsize::MIN),
        udp_socket_entries: NonZeroUsize::new(config.udp_socket_entries)
            .unwrap_or(NonZeroUsize::MIN),
        loss_poll_interval: Duration::from_millis(config.loss_poll_interval_ms),
        process_keep_exited: Duration::from_secs(config.process_keep_exited_secs),
        ancestors_depth: config.ancestors_depth,
        names: NamesOptions {
            // Checked by `validate`.
            trusted_resolvers: config.names.resolvers().unwrap_or_default(),
            map_entries: NonZeroUsize::new(config.name_map_entries).unwrap_or(NonZeroUsize::MIN),
            map_per_cgroup: NonZeroUsize::new(config.names.map_per_cgroup)
                .unwrap_or(NonZeroUsize::MIN),
            ttl_floor: Duration::from_secs(config.name_ttl_floor_secs),
            ttl_cap: Duration::from_secs(config.names.max_ttl_secs),
            query_table_entries: config.names.query_table_entries,
            query_table_per_cgroup: config.names.query_table_per_cgroup,
            query_timeout: Duration::from_millis(config.names.query_timeout_ms),
            resolver_cgroups: config.names.resolver_cgroups.clone(),
        },
        open_flow_entries: NonZeroUsize::new(config.names.open_flow_entries)
            .unwrap_or(NonZeroUsize::MIN),
        // With per-record wake-ups a slow timer is only a safety net.
        max_event_delay: Duration::from_millis(match config.max_event_delay_ms {
            0 => 1000,
            ms => ms,
        }),
        poll_when_busy: config.max_event_delay_ms != 0,
        flow_ceiling: (config.journal.max_flows_per_sec > 0).then_some((
            config.journal.max_flows_per_sec,
            config.journal.max_flows_burst,
        )),
        ..PipelineOptions::default()
    }
}
