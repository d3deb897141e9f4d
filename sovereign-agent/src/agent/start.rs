//! [`Agent::start`]: everything that can be checked is checked before a program is loaded
//! (the files the configuration names, the cgroup, the output, the journal, the policy, the
//! listeners); then the programs are loaded, the journal opened, the API served, the
//! programs attached and the start recorded.
use std::{os::fd::AsFd, path::PathBuf, sync::Arc};

use super::{existing::start_existing_scan, identity::Identity, options, Agent, AgentError};
use crate::{
    capture::bpf::Capture,
    capture::cgroup,
    capture::pipeline::{Pipeline, PipelineError},
    config::{Config, ConfigError},
    enforce::{self, Enforcer},
    event::Event,
    journal::output::{self, EventSink},
    journal::recorder as journal_sink,
    policy::watch::{self, PolicySource},
    serve::{api, metrics, service, sinks},
};

impl Agent {
    pub async fn start(config: &Config) -> Result<Agent, AgentError> {
        config.check_files()?;
        let cgroup: PathBuf = cgroup::resolve(config.cgroup.as_deref())?;
        let output = output::open(&config.output)?;
        let journal_options = options::journal_options(config)?;
        // Refused by `Config::validate` too; checked here for configurations built in code.
        if output.is_none() && journal_options.is_none() {
            return Err(AgentError::Config(ConfigError::Invalid {
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
                        poll_interval: std::time::Duration::from_millis(
                            config.policy_poll_interval_ms,
                        ),
                    },
                    counters.policy_loads.clone(),
                    service::status,
                )
                .await?,
            ),
            None => None,
        };

        // Hashing the executable takes a moment: done before attaching, so no event waits on
        // it.
        let identity = Identity::collect(config);
        let mut capture = Capture::load(options::capture_options(config))?;
        // Enforcement is written before anything is attached: the first connect is decided.
        let failsafe = enforce::failsafe(
            &config
                .names
                .resolvers()
                .unwrap_or_default()
                .iter()
                .map(|r| r.ip)
                .collect::<Vec<_>>(),
            &config.enforce.failsafe_nets().map_err(|message| {
                AgentError::Config(ConfigError::Invalid {
                    origin: config.origin(),
                    key: "enforce.failsafe",
                    message,
                })
            })?,
        );
        let mut enforcer = Enforcer::new(capture.take_enforce_maps()?, &cgroup, &failsafe)?;
        enforcer.apply(policy.as_ref().and_then(|rx| rx.borrow().clone()))?;
        let enforced = Arc::new(std::sync::Mutex::new(enforcer.enforced.clone()));
        // The journal opens (and recovers) before anything is attached: a journal that cannot
        // be written stops the start rather than running unrecorded. (After loading the
        // programs, so that an unprivileged start is reported as such.)
        let journal = match journal_options {
            Some(opts) => {
                let dir = opts.dir.clone();
                let (handle, sink, _recovery, shared) = journal_sink::start(opts)?;
                tracing::info!(dir = %dir.display(), "journaling every event");
                Some((handle, sink, shared))
            }
            None => None,
        };
        let (serving, stop_serving) = tokio::sync::watch::channel(false);
        let (mut sink_stats, mut tasks) = (Vec::new(), Vec::new());
        if let Some(j) = journal.as_ref() {
            let agent_id = config
                .agent_id
                .clone()
                .unwrap_or_else(|| identity.hostname.clone());
            let (stats, sink_tasks) = sinks::start(
                options::sink_plans(config, &j.2.dir),
                &agent_id,
                &j.2,
                &serving.subscribe(),
            );
            sink_stats = stats;
            tasks = sink_tasks;
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
            let mut rx = stop_serving.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        if let Some(socket) = &config.api_socket() {
            tasks.push(api::serve(socket, api.clone(), stopped()).await?);
        }
        // The endpoint answers (/healthz) while the agent starts; what the kernel side is, it
        // learns once the programs are attached.
        let attached_slot = Arc::new(std::sync::OnceLock::new());
        if let Some(listener) = metrics_listener {
            let addr = listener.local_addr().ok();
            let sources = metrics::Sources {
                counters: counters.clone(),
                attached: attached_slot.clone(),
                enforced: enforced.clone(),
                journal: journal.as_ref().map(|j| j.2.clone()),
                policy: policy.clone(),
                subscribers: api.subscribers(),
                sinks: sink_stats.clone(),
                started_unix_ns: crate::clock::unix_now_ns(),
                existing: existing_report.clone(),
            };
            tasks.push(metrics::http::serve(listener, sources, stopped()));
            if let Some(addr) = addr {
                tracing::info!("metrics on http://{addr}/metrics, probes on /healthz and /readyz");
            }
        }
        if let Some(tls) = options::api_tcp(config) {
            tasks.push(api::serve_tcp(&tls, api.clone(), stopped()).await?);
        }

        let hooks = capture.attach(&cgroup)?.to_vec();
        if !enforcer.enforced.rules.is_empty() {
            let missing: Vec<String> = hooks
                .iter()
                .filter(|h| h.error.is_some() && h.hook.decides())
                .map(|h| format!("{}: {}", h.hook, h.error.as_deref().unwrap_or("")))
                .collect();
            if !missing.is_empty() {
                return Err(AgentError::EnforceUnavailable {
                    rules: enforcer.enforced.rules.join(", "),
                    what: format!(
                        "the kernel refused the hooks that decide: {}",
                        missing.join("; ")
                    ),
                });
            }
        }
        tasks.push(enforcer.spawn(policy.clone(), enforced, serving.subscribe()));
        let mut maps = capture.take_maps()?;
        let ring = metrics::ring::RingFill::new(maps.events.as_fd(), config.ring_buffer_bytes)
            .map_err(|e| tracing::warn!("ring-buffer fill will not be reported: {e}"))
            .ok();
        let _ = attached_slot.set(metrics::Attached {
            hooks: hooks.clone(),
            programs: metrics::programs::Programs(capture.program_fds()),
            ring,
        });
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
        // Ready (`/readyz`) from here: the programs are attached and the kernel keeps what
        // they see in the ring buffer until the pipeline reads it. Set before the log line
        // that says so, since the metrics endpoint answers from its own thread.
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
        let hooks_attached = attached.len();
        let start = identity.start_record(&cgroup, attached, failed, not_reported);
        sink.write(&Event::Lifecycle(Box::new(start)))
            .and_then(|_| sink.flush())
            .map_err(PipelineError::Output)?;

        let mut pipeline_options = options::pipeline_options(config);
        pipeline_options.watched_cgroup = Some(cgroup.clone());
        let existing = maps
            .tcp_sockets
            .take()
            .filter(|_| config.existing_connections)
            .and_then(|seen| start_existing_scan(&cgroup, seen, existing_report.clone()));
        let (mut pipeline, rings) = Pipeline::new(maps, sink, pipeline_options);
        if let Some(found) = existing {
            pipeline = pipeline.with_found(found);
        }
        // Alerts with or without a policy: a flood is an alert on its own.
        pipeline = pipeline.with_alerts(options::alert_folder(config));
        if let Some(policy) = policy {
            pipeline = pipeline.with_policy(policy);
        }
        pipeline = pipeline.with_counters(counters.clone());
        Ok(Agent {
            cgroup,
            capture,
            pipeline,
            rings,
            journal,
            counters,
            serving,
            tasks,
            api_socket: config.api_socket(),
            hooks_attached,
        })
    }
}
