//! `sovereign-collector`: receives alerts from a fleet of agents over mutual TLS, stores each
//! exactly once in its own journal, and serves them to the security team (docs/collector.md).
use std::{path::PathBuf, process::ExitCode, sync::Arc};

use clap::Parser;
use sovereign_agent::{
    config::LogConfig,
    exit,
    journal::JournalOptions,
    serve::{
        api,
        collector::{jetstream, metrics, Collector},
        cursor::Cursor,
        limits::{Admission, ConnectionLimits},
        nats::NatsServers,
        roles::Roles,
        tls::ClientCa,
    },
    shutdown, telemetry,
};
use sovereign_agent_proto::collector::v1::collector_service_server::CollectorServiceServer;

#[derive(Parser)]
#[command(
    name = "sovereign-collector",
    version,
    about = "Receives alerts from sovereign-agents and serves them to the security team"
)]
struct Cli {
    /// Address agents push to (TLS; client certificates required).
    #[arg(
        long,
        env = "SOVEREIGN_COLLECTOR_LISTEN",
        default_value = "0.0.0.0:7444"
    )]
    listen: std::net::SocketAddr,
    /// The collector's journal.
    #[arg(
        long,
        env = "SOVEREIGN_COLLECTOR_JOURNAL",
        default_value = "/var/lib/sovereign-collector/journal"
    )]
    journal: PathBuf,
    /// Server certificate chain (PEM).
    #[arg(long)]
    tls_cert: PathBuf,
    /// Server private key (PEM).
    #[arg(long)]
    tls_key: PathBuf,
    /// CA of the agents' client certificates: these may push alerts (and nothing else).
    #[arg(long)]
    agent_ca: PathBuf,
    /// CA of the subscribers' client certificates (the security team's tools): these may read
    /// every agent's events (and not push). Must not be the agent CA: a certificate stolen
    /// from one host would read the whole fleet's alerts.
    #[arg(long)]
    subscriber_ca: PathBuf,
    /// Sealed journal segments older than this many days are deleted (0: kept forever).
    #[arg(long, env = "SOVEREIGN_COLLECTOR_RETENTION_DAYS", default_value_t = 0)]
    retention_days: u64,
    /// The oldest sealed segments are deleted while the journal is larger (bytes; 0: no limit).
    #[arg(
        long,
        env = "SOVEREIGN_COLLECTOR_RETENTION_MAX_BYTES",
        default_value_t = 0
    )]
    retention_max_bytes: u64,
    /// Local Unix socket for `sovereign-agent tail --socket` and other local clients.
    #[arg(
        long,
        env = "SOVEREIGN_COLLECTOR_SOCKET",
        default_value = "/run/sovereign-collector/collector.sock"
    )]
    api_socket: PathBuf,
    /// Consume the fleet's events from NATS JetStream as well as receiving pushes: a server
    /// URL (repeat for each node of the cluster). docs/collector.md, "A fleet on JetStream".
    #[arg(long = "nats-server", value_name = "URL")]
    nats_servers: Vec<String>,
    /// The JetStream stream the agents' `nats` sinks publish to.
    #[arg(long, default_value = "SOVEREIGN")]
    nats_stream: String,
    /// Which of the stream's subjects to store.
    #[arg(long, default_value = "sovereign.>")]
    nats_subject: String,
    /// NATS credentials file (JWT and NKey seed).
    #[arg(long)]
    nats_credentials: Option<PathBuf>,
    /// CA of `tls://` NATS servers, and this collector's client certificate and key.
    #[arg(long)]
    nats_ca: Option<PathBuf>,
    #[arg(long, requires = "nats_key")]
    nats_cert: Option<PathBuf>,
    #[arg(long, requires = "nats_cert")]
    nats_key: Option<PathBuf>,
    /// Serve Prometheus `/metrics` and `/healthz` on this address (plain HTTP: a loopback or
    /// cluster-internal address). Unset: no metrics endpoint.
    #[arg(long, env = "SOVEREIGN_COLLECTOR_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Connections open at once from everyone (0: no cap); over it a connection is closed
    /// as soon as it is accepted.
    #[arg(
        long,
        env = "SOVEREIGN_COLLECTOR_MAX_CONNECTIONS",
        default_value_t = 1024
    )]
    max_connections: usize,
    /// Connections open at once from one client address (0: no cap). A fleet behind one NAT
    /// address needs more.
    #[arg(
        long,
        env = "SOVEREIGN_COLLECTOR_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 64
    )]
    max_connections_per_client: usize,
    /// Seconds a client has to finish its TLS handshake before it is disconnected.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    handshake_timeout_secs: u64,
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(&LogConfig {
        level: cli.log_level.clone(),
        ..LogConfig::default()
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sovereign-collector: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("sovereign-collector: {message}");
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), (u8, String)> {
    let stop = shutdown::signalled()
        .map_err(|e| (exit::IOERR, format!("cannot install signal handlers: {e}")))?;
    let opts = JournalOptions {
        retention_max_age: (cli.retention_days > 0)
            .then(|| std::time::Duration::from_secs(cli.retention_days.saturating_mul(86_400))),
        retention_max_bytes: (cli.retention_max_bytes > 0).then_some(cli.retention_max_bytes),
        ..JournalOptions::new(&cli.journal)
    };
    if same_file(&cli.agent_ca, &cli.subscriber_ca) {
        return Err((
            exit::USAGE,
            format!(
                "--agent-ca and --subscriber-ca are the same file ({}): every agent \
                 certificate could read the whole fleet's alerts; give subscribers a CA of \
                 their own (docs/collector.md, \"Roles\")",
                cli.agent_ca.display()
            ),
        ));
    }
    let roles = Roles::load(
        (&cli.agent_ca, "--agent-ca"),
        (&cli.subscriber_ca, "--subscriber-ca"),
    )
    .map(Arc::new)
    .map_err(|e| (exit::NOINPUT, e))?;
    // Bound before the journal opens: a port in use stops the start with a clear message.
    let metrics_listener = match cli.metrics_listen {
        Some(addr) => Some(
            metrics::bind(addr)
                .await
                .map_err(|e| (exit::CANTCREAT, e))?,
        ),
        None => None,
    };
    let (collector, shared) =
        Collector::open(opts, roles.clone()).map_err(|e| (exit::CANTCREAT, e.to_string()))?;
    let admission = Admission::new(ConnectionLimits {
        max_connections: cli.max_connections,
        max_connections_per_client: cli.max_connections_per_client,
        handshake_timeout: std::time::Duration::from_secs(cli.handshake_timeout_secs),
    });
    let collector = Arc::new(collector.with_listener(admission.clone()));
    let agents = {
        let collector = collector.clone();
        Arc::new(move || collector.agents())
    };
    let api = Arc::new(
        api::Api::new(
            Arc::new(sovereign_agent::serve::metrics::Counters::default()),
            Some(shared),
            None,
        )
        .for_collector(roles.clone(), agents),
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let tls = sovereign_agent::serve::tls::TcpTls {
        listen: cli.listen,
        cert: cli.tls_cert,
        key: cli.tls_key,
        client_ca: ClientCa::Roles(roles),
        admission,
    };
    let tcp = api::serve_tcp_beside(
        &tls,
        api.clone(),
        Some(CollectorServiceServer::from_arc(collector.clone())),
        stopped(),
    )
    .await
    .map_err(|e| (exit::CANTCREAT, e.to_string()))?;
    let unix = api::serve(&cli.api_socket, api, stopped())
        .await
        .map_err(|e| (exit::CANTCREAT, e.to_string()))?;
    let mut tasks = vec![tcp, unix];
    if let Some(listener) = metrics_listener {
        tasks.push(metrics::serve(listener, collector.clone(), stopped()));
    }
    if !cli.nats_servers.is_empty() {
        let source = jetstream::JetStreamSource {
            servers: NatsServers {
                servers: cli.nats_servers.clone(),
                credentials: cli.nats_credentials.clone(),
                ca: cli.nats_ca.clone(),
                cert: cli.nats_cert.clone(),
                key: cli.nats_key.clone(),
            },
            stream: cli.nats_stream.clone(),
            subject: cli.nats_subject.clone(),
            cursor: Cursor::of_jetstream(&cli.journal, &cli.nats_stream),
        };
        tasks.push(tokio::spawn(jetstream::run(
            collector.clone(),
            source,
            stopped(),
        )));
    }
    tracing::info!("collector running");
    stop.await;
    let _ = tx.send(true);
    for mut task in tasks {
        if tokio::time::timeout(std::time::Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
    let _ = std::fs::remove_file(&cli.api_socket);
    collector.close();
    tracing::info!("collector stopped");
    Ok(())
}

/// Whether two paths name the same file (or the same contents: one CA copied twice).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(ma), Ok(mb)) if ma.dev() == mb.dev() && ma.ino() == mb.ino() => true,
        _ => matches!((std::fs::read(a), std::fs::read(b)), (Ok(x), Ok(y)) if x == y),
    }
}
