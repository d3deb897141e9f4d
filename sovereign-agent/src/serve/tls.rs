//! Mutual TLS, both ways: what an agent's TCP API and the collector serve with ([`TcpTls`]),
//! and the channel a client (the pusher, `tail --collector`) dials with ([`tls_channel`]). The
//! identity and roles a server reads from a client's certificate are `roles.rs`'s.
use std::path::{Path, PathBuf};

/// A client channel to `url` (`https://host:port`) with mutual TLS: the server must chain to
/// `ca`; this client presents `cert` and `key`.
pub async fn tls_channel(
    url: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<tonic::transport::Channel, String> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(ca)?))
        .identity(Identity::from_pem(read(cert)?, read(key)?));
    Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("{url:?}: {e}"))?
        .tls_config(tls)
        .map_err(|e| format!("TLS: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| {
            format!(
                "cannot connect to {url}: {}",
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string)
            )
        })
}

/// TCP with TLS: the server's certificate and key, and the CA client certificates must chain to.
pub struct TcpTls {
    pub listen: std::net::SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: ClientCa,
    /// Connection caps and the handshake timeout; its counts are the listener's.
    pub admission: super::limits::Admission,
}

/// What client certificates must chain to.
pub enum ClientCa {
    /// One CA file (an agent's TCP API: `api.client_ca`).
    File(PathBuf),
    /// A collector's agent and subscriber CAs (serve/roles.rs).
    Roles(std::sync::Arc<super::roles::Roles>),
}
