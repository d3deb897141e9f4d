//! How `tail` and `status` reach an API: the agent's Unix socket, or a collector (or an
//! agent's TCP API) over mutual TLS.
use std::path::{Path, PathBuf};

use clap::Args;
use hyper_util::rt::TokioIo;
use sovereign_agent_proto::agent::v1::agent_service_client::AgentServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// Where `tail` and `status` find the API.
#[derive(Args)]
pub struct TargetFlags {
    /// The API's Unix socket (an agent's, or a collector's --api-socket).
    #[arg(
        long,
        env = "SOVEREIGN_API_SOCKET",
        default_value = "/run/sovereign-agent/agent.sock"
    )]
    socket: PathBuf,
    /// A collector (or an agent's TCP API) instead: https://HOST:PORT, with mutual TLS.
    #[arg(long, requires_all = ["ca", "cert", "key"])]
    collector: Option<String>,
    /// CA the server's certificate chains to (PEM), with --collector.
    #[arg(long, env = "SOVEREIGN_TLS_CA")]
    ca: Option<PathBuf>,
    /// This client's certificate (PEM), with --collector.
    #[arg(long, env = "SOVEREIGN_TLS_CERT")]
    cert: Option<PathBuf>,
    /// This client's key (PEM), with --collector.
    #[arg(long, env = "SOVEREIGN_TLS_KEY")]
    key: Option<PathBuf>,
}

impl TargetFlags {
    pub fn target(&self) -> Target {
        match (&self.collector, &self.ca, &self.cert, &self.key) {
            (Some(url), Some(ca), Some(cert), Some(key)) => Target::Tls {
                url: url.clone(),
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => Target::Socket(self.socket.clone()),
        }
    }
}

/// A small runtime for the API clients.
pub fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// Where the API is: a local Unix socket, or a collector (or agent) on TCP with mutual TLS.
#[derive(Clone, Debug)]
pub enum Target {
    Socket(PathBuf),
    Tls {
        /// `https://host:port`
        url: String,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
}

/// Connects to the API at `target`.
pub async fn connect_to(target: &Target) -> Result<AgentServiceClient<Channel>, String> {
    match target {
        Target::Socket(path) => connect(path).await,
        Target::Tls { url, ca, cert, key } => Ok(AgentServiceClient::new(
            crate::serve::tls::tls_channel(url, ca, cert, key).await?,
        )),
    }
}

/// Connects to the agent's API on `socket`.
pub async fn connect(socket: &Path) -> Result<AgentServiceClient<Channel>, String> {
    let path: PathBuf = socket.to_path_buf();
    // The URI is required by the API but unused: the connector dials the socket.
    let channel = Endpoint::from_static("http://agent.local")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| {
            format!(
                "cannot connect to the agent's API at {}: {} (is the agent running, and are you root?)",
                socket.display(),
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string)
            )
        })?;
    Ok(AgentServiceClient::new(channel))
}
