//! `sovereign-agent run`: resolve the cgroup, load and attach the programs, run the pipeline
//! until SIGINT/SIGTERM, then drain and detach.
//!
//! - [`start`]: [`Agent::start`], everything checked, opened and attached, in the order that
//!   stops a bad start before anything runs unrecorded.
//! - [`mod@run`]: [`Agent::run`], the pipeline until the signal, then the stop: detach, close the
//!   journal, end the API.
//! - [`options`]: the configuration as each stage's options; [`identity`]: what the start
//!   record says; [`existing`]: the scan for connections open before the start.
mod existing;
mod identity;
pub mod options;
mod run;
mod start;

use std::{path::PathBuf, sync::Arc};

use tokio::{sync::watch, task::JoinHandle};

use crate::{
    capture::bpf::{BpfError, Capture},
    capture::cgroup::CgroupError,
    capture::pipeline::{Pipeline, PipelineError, Rings, Stats},
    config::Config,
    exit,
    journal::output::OutputError,
    journal::{recorder::JournalHandle, JournalError},
    serve::{api, metrics},
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
    #[error(transparent)]
    Enforce(#[from] crate::enforce::EnforceError),
    /// The policy enforces, and the kernel cannot: never a silent downgrade to monitoring.
    #[error("the policy has enforce rules ({rules}), but {what}")]
    EnforceUnavailable { rules: String, what: String },
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
            AgentError::Cgroup(_)
            | AgentError::Bpf(_)
            | AgentError::Enforce(_)
            | AgentError::EnforceUnavailable { .. } => exit::UNAVAILABLE,
            AgentError::Output(_) | AgentError::Api(_) | AgentError::Metrics(_) => exit::CANTCREAT,
            AgentError::Pipeline(_) | AgentError::Signals(_) => exit::IOERR,
        }
    }
}

/// An agent started: attached, its start recorded, its pipeline ready to read.
pub struct Agent {
    cgroup: PathBuf,
    /// Owns the links: dropping it detaches every program.
    capture: Capture,
    pipeline: Pipeline,
    rings: Rings,
    journal: Option<JournalHandle>,
    counters: Arc<metrics::Counters>,
    /// Ends the API, the metrics endpoint and the sinks.
    serving: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    api_socket: Option<PathBuf>,
    hooks_attached: usize,
}

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(config: &Config) -> Result<Stats, AgentError> {
    // Handlers first: a signal during the start is not lost.
    let shutdown = shutdown::signalled().map_err(AgentError::Signals)?;
    Agent::start(config).await?.run(shutdown).await
}
