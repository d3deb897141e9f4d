//! `sovereign-collector`: receives alerts from a fleet of agents over mutual TLS, stores each
//! exactly once in its own journal, and serves them to the security team (docs/collector.md).
use std::{path::PathBuf, process::ExitCode, sync::Arc};

use clap::Parser;
use sovereign_agent::{
    config::LogConfig, exit, journal::JournalOptions, serve::api, serve::collector::Collector,
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
    /// CA that agents' (and subscribers') client certificates must chain to.
    #[arg(long)]
    client_ca: PathBuf,
    /// Local Unix socket for `sovereign-agent tail --socket` and other local clients.
    #[arg(
        long,
        env = "SOVEREIGN_COLLECTOR_SOCKET",
        default_value = "/run/sovereign-collector/collector.sock"
    )]
    api_socket: PathBuf,
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
        retention_max_age: None,
        retention_max_bytes: None,
        ..JournalOptions::new(&cli.journal)
    };
    let (collector, shared) =
        Collector::open(opts).map_err(|e| (exit::CANTCREAT, e.to_string()))?;
    let collector = Arc::new(collector);
    let api = Arc::new(api::Api::new(
        Arc::new(sovereign_agent::serve::metrics::Counters::default()),
        Some(shared),
        None,
    ));
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
        client_ca: cli.client_ca,
    };
    let tcp = api::serve_tcp(
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
    tracing::info!("collector running");
    stop.await;
    let _ = tx.send(true);
    for mut task in [tcp, unix] {
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
