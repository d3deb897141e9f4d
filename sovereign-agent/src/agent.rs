//! `sovereign-agent run`: resolve the cgroup, load and attach the programs, run the pipeline
//! until SIGINT/SIGTERM, then drain and detach.
use std::path::PathBuf;

use crate::{
    bpf::{BpfError, Capture},
    cgroup::{self, CgroupError},
    config::Config,
    output::{self, OutputError},
    pipeline::{Pipeline, PipelineError, Stats},
    policy_watch::{self, PolicySource},
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
}

impl AgentError {
    /// Exit codes from sysexits.h, so service managers and scripts can tell causes apart.
    pub fn exit_code(&self) -> u8 {
        match self {
            AgentError::Bpf(BpfError::PermissionDenied) => 77, // EX_NOPERM
            AgentError::Cgroup(CgroupError::BadPath { .. }) | AgentError::Policy(_) => 64, // EX_USAGE
            AgentError::Cgroup(_) | AgentError::Bpf(_) => 69, // EX_UNAVAILABLE
            AgentError::Output(_) => 73,                      // EX_CANTCREAT
            AgentError::Pipeline(_) | AgentError::Signals(_) => 74, // EX_IOERR
        }
    }
}

pub async fn run(config: &Config) -> Result<Stats, AgentError> {
    let shutdown = shutdown::signalled().map_err(AgentError::Signals)?;
    let cgroup: PathBuf = cgroup::resolve(config.cgroup.as_deref())?;
    let sink = output::open(&config.output)?;
    // The policy is compiled before anything is attached: a bad one stops the start.
    let policy = match &config.policy {
        Some(path) => Some(
            policy_watch::start(PolicySource {
                path: path.clone(),
                datasets: config.datasets.clone(),
                poll_interval: std::time::Duration::from_millis(config.policy_poll_interval_ms),
            })
            .await?,
        ),
        None => None,
    };

    let mut capture = Capture::load(config.capture_options())?;
    let hooks = capture.attach(&cgroup)?;
    let attached: Vec<String> = hooks
        .iter()
        .filter(|h| h.error.is_none())
        .map(|h| h.hook.to_string())
        .collect();
    tracing::info!(cgroup = %cgroup.display(), hooks = %attached.join(","), "capturing");

    let maps = capture.take_maps()?;
    let (mut pipeline, ring) = Pipeline::new(maps, sink, config.pipeline_options());
    if let Some(policy) = policy {
        pipeline = pipeline.with_policy(policy);
    }
    let result = pipeline.run(ring, shutdown).await;
    drop(capture); // closes every link: the programs are detached
    tracing::info!(cgroup = %cgroup.display(), "programs detached");
    let stats = result?;
    tracing::info!(?stats, "stopped");
    Ok(stats)
}
