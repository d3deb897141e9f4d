//! The files a configuration names, read before anything runs: TLS certificates and keys,
//! the signing key, the datasets directory, the policy.
use std::path::Path;

use super::{Config, ConfigError};
use crate::journal::keys::read_signing_key;

impl Config {
    /// Checks that the files the configuration names can be read and are what they should
    /// be (TLS certificates and keys, the signing key, the policy's datasets directory), so
    /// that `config check` and the start report them rather than a background task later.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let origin = self.origin();
        let invalid = |key, message: String| ConfigError::Invalid {
            origin: origin.clone(),
            key,
            message,
        };
        let pem = |key: &'static str, path: &Path, what: &str| {
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid(key, format!("{}: {e}", path.display())))?;
            if !text
                .lines()
                .any(|l| l.starts_with("-----BEGIN ") && l.contains(what))
            {
                return Err(invalid(
                    key,
                    format!("{}: not a PEM file (expected {what})", path.display()),
                ));
            }
            Ok(())
        };
        if self.api.enabled && self.api.tcp_listen.is_some() {
            for (key, path, what) in [
                ("api.tls_cert", &self.api.tls_cert, "CERTIFICATE"),
                ("api.tls_key", &self.api.tls_key, "PRIVATE KEY"),
                ("api.client_ca", &self.api.client_ca, "CERTIFICATE"),
            ] {
                if let Some(path) = path {
                    pem(key, path, what)?;
                }
            }
        }
        if let Some(p) = &self.push {
            pem("push.ca", &p.ca, "CERTIFICATE")?;
            pem("push.cert", &p.cert, "CERTIFICATE")?;
            pem("push.key", &p.key, "PRIVATE KEY")?;
        }
        for sink in &self.sink {
            for (path, what) in sink.kind.pem_files() {
                pem("sink", path, what).map_err(|e| match e {
                    ConfigError::Invalid {
                        origin,
                        key,
                        message,
                    } => ConfigError::Invalid {
                        origin,
                        key,
                        message: format!("{:?}: {message}", sink.name),
                    },
                    e => e,
                })?;
            }
        }
        if self.journal.enabled {
            if let Some(k) = &self.journal.signing_key {
                read_signing_key(k).map_err(|m| invalid("journal.signing_key", m))?;
            }
        }
        if let Some(d) = &self.datasets {
            if !d.is_dir() {
                return Err(invalid(
                    "datasets",
                    format!("{}: not a directory", d.display()),
                ));
            }
        }
        if let Some(p) = &self.policy {
            if let Err(e) = std::fs::metadata(p) {
                return Err(invalid("policy", format!("{}: {e}", p.display())));
            }
        }
        Ok(())
    }
}
