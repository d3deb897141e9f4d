//! `sovereign-agent run`: resolve the cgroup, load and attach the programs, run the pipeline
//! until SIGINT/SIGTERM, then drain and detach. [`options`] turns the configuration into each
//! stage's options.
pub mod options;

use std::path::PathBuf;

use std::sync::Arc;

use crate::{
    capture::bpf::{BpfError, Capture},
    capture::cgroup::{self, CgroupError},
    capture::pipeline::{Pipeline, PipelineError, Stats},
    config::Config,
    event::{Event, Lifecycle, LifecycleEvent},
    exit,
    journal::output::{self, EventSink, OutputError},
    journal::{recorder as journal_sink, JournalError},
    policy::watch::{self, PolicySource},
    serve::api,
    serve::metrics,
    serve::service,
    shutdown,
};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("{0}")]
    Policy(#[from] crate::policy::PolicyErrors),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Api(#[from] api::ApiError),
    #[error(transparent)]
    Metrics(#[from] metrics::http::MetricsError),
}

impl AgentError {
    /// The exit code for this error ([`crate::exit`]), so service managers and scripts can
    /// tell causes apart.
    pub fn exit_code(&self) -> u8 {
        match self {
            AgentError::Bpf(BpfError::PermissionDenied) => exit::NOPERM,
            AgentError::Cgroup(CgroupError::BadPath { .. })
            | AgentError::Policy(_)
            | AgentError::Config(_) => exit::USAGE,
            // A damaged journal or one of a newer format: the operator must look at it.
            AgentError::Journal(JournalError::Segment { .. } | JournalError::Record { .. }) => {
                exit::DATAERR
            }
            AgentError::Journal(JournalError::Locked { .. }) => exit::TEMPFAIL,
            AgentError::Journal(_) => exit::CANTCREAT,
            AgentError::Cgroup(_) | AgentError::Bpf(_) => exit::UNAVAILABLE,
            AgentError::Output(_) | AgentError::Api(_) | AgentError::Metrics(_) => exit::CANTCREAT,
            AgentError::Pipeline(_) | AgentError::Signals(_) => exit::IOERR,
        }
    }
}

pub async fn run(config: &Config) -> Result<Stats, AgentError> {
    let shutdown = shutdown::signalled().map_err(AgentError::Signals)?;
    // Everything that can be checked is checked before a program is loaded: the files the
    // configuration names, the cgroup, the output, the journal, the policy, the listeners.
    config.check_files()?;
    let cgroup: PathBuf = cgroup::resolve(config.cgroup.as_deref())?;
    let output = output::open(&config.output)?;
    let journal_options = options::journal_options(config)?;
    // Refused by `Config::validate` too; checked here for configurations built in code.
    if output.is_none() && journal_options.is_none() {
        return Err(AgentError::Config(crate::config::ConfigError::Invalid {
            origin: "the configuration".into(),
            key: "output",
            message: "is \"none\" and the journal is disabled: nothing would record the flows"
                .into(),
        }));
    }
    let metrics_listener = match config.metrics_listen() {
        Some(addr) => Some(metrics::http::bind(addr).await?),
        None => None,
    };
    let counters = Arc::new(metrics::Counters::default());
    let existing_report = Arc::new(crate::capture::existing::Report::default());
    // The policy is compiled before anything is attached: a bad one stops the start.
    let policy = match &config.policy {
        Some(path) => Some(
            watch::start(
                PolicySource {
                    path: path.clone(),
                    datasets: config.datasets.clone(),
                    poll_interval: std::time::Duration::from_millis(config.policy_poll_interval_ms),
                },
                counters.policy_loads.clone(),
                service::status,
            )
            .await?,
        ),
        None => None,
    };

    // Hashing the executable takes a moment: done before attaching, so no event waits on it.
    let identity = Identity::collect(config);
    let mut capture = Capture::load(options::capture_options(config))?;
    // The journal opens (and recovers) before anything is attached: a journal that cannot be
    // written stops the start rather than running unrecorded. (After loading the programs,
    // so that an unprivileged start is reported as such.)
    let journal = match journal_options {
        Some(opts) => {
            let dir = opts.dir.clone();
            let (handle, sink, _recovery, shared) = journal_sink::start(opts)?;
            tracing::info!(dir = %dir.display(), "journaling every event");
            Some((handle, sink, shared))
        }
        None => None,
    };
    let (api_stop, api_stopped) = tokio::sync::watch::channel(false);
    let (mut sink_stats, mut sink_tasks) = (Vec::new(), Vec::new());
    if let Some(j) = journal.as_ref() {
        let agent_id = config
            .agent_id
            .clone()
            .unwrap_or_else(|| identity.hostname.clone());
        let (stats, tasks) = crate::serve::sinks::start(
            options::sink_plans(config, &j.2.dir),
            &agent_id,
            &j.2,
            &api_stop.subscribe(),
        );
        sink_stats = stats;
        sink_tasks = tasks;
    }
    let api = Arc::new(
        api::Api::new(
            counters.clone(),
            journal.as_ref().map(|j| j.2.clone()),
            policy.clone(),
        )
        .with_sinks(sink_stats.clone()),
    );
    let stopped = move || {
        let mut rx = api_stopped.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let mut api_tasks = sink_tasks;
    if let Some(socket) = &config.api_socket() {
        api_tasks.push(api::serve(socket, api.clone(), stopped()).await?);
    }
    // The ring's fill is known once the maps are taken (after attaching).
    let ring_fill = Arc::new(std::sync::OnceLock::new());
    let program_fds = Arc::new(std::sync::OnceLock::new());
    let hook_states = Arc::new(std::sync::OnceLock::new());
    if let Some(listener) = metrics_listener {
        let addr = listener.local_addr().ok();
        let sources = metrics::Sources {
            counters: counters.clone(),
            ring: ring_fill.clone(),
            programs: program_fds.clone(),
            hooks: hook_states.clone(),
            journal: journal.as_ref().map(|j| j.2.clone()),
            policy: policy.clone(),
            subscribers: api.subscribers(),
            sinks: sink_stats.clone(),
            started_unix_ns: crate::clock::unix_now_ns(),
            existing: existing_report.clone(),
        };
        api_tasks.push(metrics::http::serve(listener, sources, stopped()));
        if let Some(addr) = addr {
            tracing::info!("metrics on http://{addr}/metrics, probes on /healthz and /readyz");
        }
    }
    if let Some(tls) = options::api_tcp(config) {
        api_tasks.push(api::serve_tcp(&tls, api.clone(), stopped()).await?);
    }
    let hooks = capture.attach(&cgroup)?.to_vec();
    let _ = program_fds.set(metrics::programs::Programs(capture.program_fds()));
    let _ = hook_states.set(hooks.clone());
    let attached: Vec<String> = hooks
        .iter()
        .filter(|h| h.error.is_none())
        .map(|h| h.hook.to_string())
        .collect();
    let failed: Vec<String> = hooks
        .iter()
        .filter(|h| h.error.is_some())
        .map(|h| h.hook.to_string())
        .collect();
    api.set_identity(api::Identity {
        hostname: identity.hostname.clone(),
        cgroup: cgroup.display().to_string(),
        hooks: attached.clone(),
        hooks_failed: failed.clone(),
        started_unix_ns: crate::clock::unix_now_ns(),
    });
    // Ready (`/readyz`) from here: the programs are attached and the kernel keeps what they
    // see in the ring buffer until the pipeline reads it. Set before the log line that says
    // so, since the metrics endpoint answers from its own thread.
    counters
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(cgroup = %cgroup.display(), hooks = %attached.join(","), "capturing");

    let (mut sink, journal): (Box<dyn EventSink>, _) = match (output, journal) {
        (Some(output), Some((handle, jsink, _))) => (
            Box::new(output::Tee(vec![output, Box::new(jsink)])),
            Some(handle),
        ),
        (None, Some((handle, jsink, _))) => (Box::new(jsink), Some(handle)),
        (Some(output), None) => (output, None),
        (None, None) => unreachable!("refused before anything was loaded"),
    };
    let not_reported = hooks
        .iter()
        .filter(|h| h.error.is_some())
        .map(|h| format!("{}: {}", h.hook, h.hook.loses()))
        .collect();
    let start = identity.start_record(&cgroup, attached.clone(), failed, not_reported);
    sink.write(&Event::Lifecycle(Box::new(start)))
        .and_then(|_| sink.flush())
        .map_err(PipelineError::Output)?;

    let mut maps = capture.take_maps()?;
    {
        use std::os::fd::AsFd;
        match metrics::ring::RingFill::new(maps.events.as_fd(), config.ring_buffer_bytes) {
            Ok(fill) => {
                let _ = ring_fill.set(fill);
            }
            Err(e) => tracing::warn!("ring-buffer fill will not be reported: {e}"),
        }
    }
    let mut pipeline_options = options::pipeline_options(config);
    pipeline_options.watched_cgroup = Some(cgroup.clone());
    let existing = maps
        .tcp_sockets
        .take()
        .filter(|_| config.existing_connections)
        .and_then(|seen| start_existing_scan(&cgroup, seen, existing_report.clone()));
    let (mut pipeline, ring) = Pipeline::new(maps, sink, pipeline_options);
    if let Some(found) = existing {
        pipeline = pipeline.with_found(found);
    }
    // Alerts with or without a policy: a flood is an alert on its own.
    pipeline = pipeline.with_alerts(options::alert_folder(config));
    if let Some(policy) = policy {
        pipeline = pipeline.with_policy(policy);
    }
    pipeline = pipeline.with_counters(counters.clone());
    service::ready(&format!(
        "capturing on {} ({} hooks)",
        cgroup.display(),
        attached.len()
    ));
    let watchdog = service::spawn_watchdog();
    let result = pipeline.run(ring, shutdown).await;
    counters
        .ready
        .store(false, std::sync::atomic::Ordering::Relaxed);
    service::stopping();
    if let Some(w) = watchdog {
        w.abort();
    }
    drop(capture); // closes every link: the programs are detached
    tracing::info!(cgroup = %cgroup.display(), "programs detached");
    if let Some(journal) = journal {
        let (reason, flows, losses) = match &result {
            Ok(s) => (
                "signal".to_string(),
                s.connect + s.send + s.established + s.close,
                s.kernel_losses,
            ),
            Err(e) => (format!("error: {e}"), 0, 0),
        };
        match journal.stop(&reason, flows, losses) {
            Ok(j) => tracing::info!(
                records = j.records,
                bytes = j.bytes,
                not_journaled = j.not_journaled,
                "journal closed"
            ),
            Err(e) => tracing::error!("journal close failed: {e}"),
        }
    }
    // Subscribers' streams never end by themselves: give the API a moment, then stop it.
    let _ = api_stop.send(true);
    for mut task in api_tasks {
        if tokio::time::timeout(std::time::Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
    if let Some(socket) = config.api_socket() {
        let _ = std::fs::remove_file(socket);
    }
    let stats = result?;
    tracing::info!(?stats, "stopped");
    Ok(stats)
}

/// Reports the connections already open in the watched cgroup (and later their ends), so a
/// restart is not a blind spot; see [`crate::capture::existing`].
fn start_existing_scan(
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

/// What the journal's start record says about this agent.
struct Identity {
    binary_hash: String,
    config_hash: String,
    config_path: Option<String>,
    hostname: String,
}

impl Identity {
    fn collect(config: &Config) -> Self {
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
    fn start_record(
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
