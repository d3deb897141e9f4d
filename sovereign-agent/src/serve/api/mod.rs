//! The agent's gRPC API (docs/api.md): `StreamEvents` (journal + live) and `GetStatus`, with
//! the standard health and reflection services, on a Unix socket only root can use.
use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use sovereign_agent_proto::agent::v1::{
    self as pb,
    agent_service_server::{AgentService, AgentServiceServer},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status};

use crate::{
    journal::{
        feed::{filter, stream},
        recorder::JournalShared,
    },
    policy::PolicyReceiver,
    serve::{
        metrics::Counters,
        roles::{self, Role, Roles},
        tls::{self, TcpTls},
    },
};

/// What `GetStatus` reports that is fixed at start.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    pub hostname: String,
    pub cgroup: String,
    pub hooks: Vec<String>,
    pub hooks_failed: Vec<String>,
    pub started_unix_ns: i64,
}

/// Event streams served at once, in all and per client. A subscriber catching up from the
/// journal holds one of the runtime's blocking threads while it waits for its client; bounding
/// the streams (well below tokio's 512 blocking threads) keeps stalled clients from starving
/// the rest: at a collector, the stores that acknowledge agents' pushes.
pub const MAX_SUBSCRIBERS: u64 = 128;
pub const MAX_SUBSCRIBERS_PER_CLIENT: u32 = 32;

pub struct Api {
    identity: Mutex<Identity>,
    counters: Arc<Counters>,
    journal: Option<Arc<JournalShared>>,
    policy: Option<PolicyReceiver>,
    subscribers: Arc<AtomicU64>,
    /// Streams open per client (certificate common name; `local` on the Unix socket).
    per_client: Arc<Mutex<std::collections::HashMap<String, u32>>>,
    /// At a collector: only subscriber certificates may read (serve/roles.rs).
    roles: Option<Arc<Roles>>,
    /// At a collector: what it knows of each agent, for `GetStatus`.
    agents: Option<Arc<dyn Fn() -> Vec<pb::AgentProgress> + Send + Sync>>,
    /// At an agent: its sinks, for `GetStatus`.
    sinks: Vec<Arc<crate::serve::sinks::SinkStats>>,
}

impl Api {
    pub fn new(
        counters: Arc<Counters>,
        journal: Option<Arc<JournalShared>>,
        policy: Option<PolicyReceiver>,
    ) -> Self {
        Api {
            identity: Mutex::new(Identity::default()),
            counters,
            journal,
            policy,
            subscribers: Arc::new(AtomicU64::new(0)),
            per_client: Arc::default(),
            roles: None,
            agents: None,
            sinks: Vec::new(),
        }
    }

    /// A collector's API: reads need a subscriber certificate; status lists the agents.
    pub fn for_collector(
        mut self,
        roles: Arc<Roles>,
        agents: Arc<dyn Fn() -> Vec<pb::AgentProgress> + Send + Sync>,
    ) -> Self {
        self.roles = Some(roles);
        self.agents = Some(agents);
        self
    }

    /// An agent's sinks, reported by `GetStatus`.
    pub fn with_sinks(mut self, sinks: Vec<Arc<crate::serve::sinks::SinkStats>>) -> Self {
        self.sinks = sinks;
        self
    }

    fn check_reader<T>(&self, request: &Request<T>) -> Result<(), Status> {
        match &self.roles {
            Some(roles) => roles.require(request, Role::Subscriber).map(|_| ()),
            None => Ok(()),
        }
    }

    /// The live count of event-stream subscribers (for `/metrics`).
    pub fn subscribers(&self) -> Arc<AtomicU64> {
        self.subscribers.clone()
    }

    pub fn set_identity(&self, identity: Identity) {
        *self
            .identity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = identity;
    }
}

/// Decrements the subscriber counts when a subscription ends, however it ends.
struct Subscribed {
    all: Arc<AtomicU64>,
    per_client: Arc<Mutex<std::collections::HashMap<String, u32>>>,
    client: String,
}
impl Drop for Subscribed {
    fn drop(&mut self) {
        self.all.fetch_sub(1, Ordering::Relaxed);
        let mut per_client = self
            .per_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                per_client.remove(&self.client);
            }
        }
    }
}

/// Who is asking: the common name of the client certificate (TCP with mutual TLS), or
/// `local` (the Unix socket, root only).
fn client_of<T>(request: &Request<T>) -> String {
    match request.peer_certs() {
        Some(_) => roles::client_identity(request).unwrap_or_else(|_| "unidentified".into()),
        None => "local".into(),
    }
}

#[tonic::async_trait]
impl AgentService for Api {
    type StreamEventsStream = ReceiverStream<stream::Item>;

    async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        self.check_reader(&request)?;
        let client = client_of(&request);
        let req = request.into_inner();
        let filter = filter::EventFilter::compile(&req.filter.unwrap_or_default())
            .map_err(Status::invalid_argument)?;
        let Some(journal) = self.journal.clone() else {
            return Err(Status::failed_precondition(
                "the agent runs without a journal (--no-journal): there is no event stream",
            ));
        };
        {
            let mut per_client = self
                .per_client
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mine = per_client.get(&client).copied().unwrap_or(0);
            if mine >= MAX_SUBSCRIBERS_PER_CLIENT {
                return Err(Status::resource_exhausted(format!(
                    "client {client} already has {mine} event streams open (at most {MAX_SUBSCRIBERS_PER_CLIENT})"
                )));
            }
            let all = self.subscribers.load(Ordering::Relaxed);
            if all >= MAX_SUBSCRIBERS {
                return Err(Status::resource_exhausted(format!(
                    "{all} event streams open (at most {MAX_SUBSCRIBERS})"
                )));
            }
            per_client.insert(client.clone(), mine + 1);
            self.subscribers.fetch_add(1, Ordering::Relaxed);
        }
        let (tx, rx) = mpsc::channel(stream::SUBSCRIBER_BUFFER);
        let guard = Subscribed {
            all: self.subscribers.clone(),
            per_client: self.per_client.clone(),
            client,
        };
        tokio::spawn(async move {
            let _guard = guard;
            stream::run(journal, req.since_seq, filter, tx).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::Status>, Status> {
        self.check_reader(&request)?;
        let id = self
            .identity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let policy = self
            .policy
            .as_ref()
            .and_then(|rx| rx.borrow().clone())
            .map(|p| pb::PolicyRef {
                name: p.name.clone(),
                version: p.version.clone(),
                hash: p.hash.clone(),
            });
        let c = &self.counters;
        Ok(Response::new(pb::Status {
            version: env!("CARGO_PKG_VERSION").into(),
            hostname: id.hostname,
            cgroup: id.cgroup,
            hooks: id.hooks,
            hooks_failed: id.hooks_failed,
            policy,
            started_unix_ns: id.started_unix_ns,
            events: c.events(),
            kernel_losses: c.kernel_losses.load(Ordering::Relaxed),
            decode_errors: c.decode_errors.load(Ordering::Relaxed),
            subscribers: self.subscribers.load(Ordering::Relaxed),
            journal_next_seq: self
                .journal
                .as_ref()
                .map_or(0, |j| j.next_seq.load(Ordering::Relaxed)),
            journal_dir: self
                .journal
                .as_ref()
                .map(|j| j.dir.display().to_string())
                .unwrap_or_default(),
            not_journaled: self
                .journal
                .as_ref()
                .map_or(0, |j| j.not_journaled.load(Ordering::Relaxed)),
            agents: self.agents.as_ref().map(|a| a()).unwrap_or_default(),
            sinks: self.sinks.iter().map(|s| s.status()).collect(),
        }))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("API socket {}: {message}", path.display())]
pub struct ApiError {
    pub path: PathBuf,
    pub message: String,
}

/// The services on `server` (built once per listener).
async fn router(
    mut server: tonic::transport::Server,
    api: Arc<Api>,
) -> Result<tonic::transport::server::Router, String> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AgentServiceServer<Api>>().await;
    // Both reflection versions: grpcurl and newer clients ask for v1, grpcio's still v1alpha.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sovereign_agent_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| format!("reflection: {e}"))?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sovereign_agent_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| format!("reflection: {e}"))?;
    Ok(server
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(AgentServiceServer::from_arc(api)))
}

/// Serves on TCP with TLS; a client must present a certificate that chains to the client CA
/// and is valid now, or the handshake fails and it gets nothing.
pub async fn serve_tcp(
    tls: &TcpTls,
    api: Arc<Api>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, ApiError> {
    serve_tcp_beside(tls, api, None::<AgentServiceServer<Api>>, shutdown).await
}

/// [`serve_tcp`], with another gRPC service on the same listener and TLS (a collector's
/// `CollectorService`, which the API knows nothing of).
pub async fn serve_tcp_beside<S>(
    tls: &TcpTls,
    api: Arc<Api>,
    beside: Option<S>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, ApiError>
where
    S: tonic::codegen::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Response: axum::response::IntoResponse,
    S::Future: Send + 'static,
{
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| ApiError {
            path: path.to_path_buf(),
            message: format!("cannot read the {what}: {e}"),
        })
    };
    let cert = read(&tls.cert, "server certificate (api.tls_cert)")?;
    let key = read(&tls.key, "server key (api.tls_key)")?;
    let ca = match &tls.client_ca {
        tls::ClientCa::File(path) => read(path, "client CA (api.client_ca)")?,
        tls::ClientCa::Roles(roles) => roles.handshake_bundle().to_vec(),
    };
    let config = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert, key))
        .client_ca_root(tonic::transport::Certificate::from_pem(ca))
        .client_auth_optional(false)
        .timeout(tls.admission.limits().handshake_timeout);
    let err = |message: String| ApiError {
        path: PathBuf::from(tls.listen.to_string()),
        message,
    };
    let server = tonic::transport::Server::builder()
        .tls_config(config)
        .map_err(|e| {
            err(format!(
                "TLS configuration (api.tls_cert, api.tls_key, api.client_ca): {e}"
            ))
        })?;
    let router = router(server, api)
        .await
        .map_err(err)?
        .add_optional_service(beside);
    let listener = tokio::net::TcpListener::bind(tls.listen)
        .await
        .map_err(|e| err(e.to_string()))?;
    let listen = tls.listen;
    // Within the caps, with TCP_NODELAY (a small write that follows another waited for the
    // peer's delayed ACK without it: ~40 ms a batch, which held a pushing agent to ~9,000
    // alerts/s).
    let incoming = crate::serve::limits::CappedIncoming::new(listener, tls.admission.clone());
    tracing::info!(%listen, "gRPC API listening on TCP (TLS, client certificates required)");
    Ok(tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::error!(%listen, "gRPC API (TCP) stopped: {e}");
        }
    }))
}

/// Binds the Unix socket (its directory created 0755 if missing, the socket itself 0600: only
/// root can connect) and serves until `shutdown` resolves. A stale socket file is replaced;
/// a live one (another agent) is an error.
pub async fn serve(
    path: &Path,
    api: Arc<Api>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, ApiError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |message: String| ApiError {
        path: path.to_path_buf(),
        message,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| err(format!("cannot create its directory: {e}")))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err("another process is serving on it".into()));
        }
        std::fs::remove_file(path)
            .map_err(|e| err(format!("cannot remove the stale socket: {e}")))?;
    }
    // The socket is made 0600 before it is reachable: bound in a fresh 0700 directory beside
    // it, its mode set, then renamed into place (a rename keeps the bound socket). Bound in
    // place and chmod-ed after, anyone could connect in between with the umask's mode.
    let private = path.with_file_name(format!(
        ".{}.{}.bind",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("api"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| err(format!("cannot create {}: {e}", private.display())))?;
    let staged = private.join("socket");
    let bound = tokio::net::UnixListener::bind(&staged)
        .map_err(|e| e.to_string())
        .and_then(|listener| {
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("cannot make it 0600: {e}"))?;
            std::fs::rename(&staged, path)
                .map_err(|e| format!("cannot move it into place: {e}"))?;
            Ok(listener)
        });
    let _ = std::fs::remove_dir_all(&private);
    let listener = bound.map_err(err)?;

    let router = router(tonic::transport::Server::builder(), api)
        .await
        .map_err(err)?;
    let incoming = UnixListenerStream::new(listener);
    let socket = path.to_path_buf();
    tracing::info!(socket = %socket.display(), "gRPC API listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::error!(socket = %socket.display(), "gRPC API stopped: {e}");
        }
        let _ = std::fs::remove_file(&socket);
    }))
}
