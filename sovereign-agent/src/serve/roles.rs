//! Who may do what at a collector: a client certificate issued by the agent CA may push
//! alerts; one issued by the subscriber CA may read the fleet's events. The TLS handshake
//! accepts a certificate from either CA (rustls checks the chain, validity and usage); each
//! call then checks which CA signed it, so an agent's certificate, stolen from one host,
//! cannot read every other host's alerts, and a subscriber's cannot forge alerts.
use std::path::Path;

use tonic::{Request, Status};
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// May push (`CollectorService/Push`).
    Agent,
    /// May read (`AgentService/StreamEvents`, `GetStatus`).
    Subscriber,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Subscriber => "subscriber",
        }
    }
}

/// The CA certificates (DER) behind each role.
#[derive(Debug)]
pub struct Roles {
    agents: Vec<Vec<u8>>,
    subscribers: Vec<Vec<u8>>,
    /// Both CA files, for the TLS handshake.
    bundle: Vec<u8>,
}

impl Roles {
    /// Reads the two CA files (PEM, one or more certificates each); `what` names the flag or
    /// key each came from in errors.
    pub fn load(agent_ca: (&Path, &str), subscriber_ca: (&Path, &str)) -> Result<Self, String> {
        let read = |(path, what): (&Path, &str)| -> Result<(Vec<u8>, Vec<Vec<u8>>), String> {
            let pem = std::fs::read(path)
                .map_err(|e| format!("{what} {}: cannot read: {e}", path.display()))?;
            let mut ders = Vec::new();
            for item in x509_parser::pem::Pem::iter_from_buffer(&pem) {
                let item = item.map_err(|e| format!("{what} {}: not PEM: {e}", path.display()))?;
                if item.label == "CERTIFICATE" {
                    X509Certificate::from_der(&item.contents).map_err(|e| {
                        format!("{what} {}: unreadable certificate: {e}", path.display())
                    })?;
                    ders.push(item.contents);
                }
            }
            if ders.is_empty() {
                return Err(format!(
                    "{what} {}: holds no CERTIFICATE block",
                    path.display()
                ));
            }
            Ok((pem, ders))
        };
        let (agent_pem, agents) = read(agent_ca)?;
        let (subscriber_pem, subscribers) = read(subscriber_ca)?;
        let mut bundle = agent_pem;
        bundle.push(b'\n');
        bundle.extend_from_slice(&subscriber_pem);
        Ok(Roles {
            agents,
            subscribers,
            bundle,
        })
    }

    /// Both CAs in one PEM: what the handshake accepts.
    pub fn handshake_bundle(&self) -> &[u8] {
        &self.bundle
    }

    /// The caller's identity (its certificate's common name) when its certificate holds
    /// `role`; `permission_denied` naming the role otherwise. Requests without a client
    /// certificate (the local Unix socket, root only) hold every role.
    pub fn require<T>(&self, request: &Request<T>, role: Role) -> Result<String, Status> {
        let Some(certs) = request.peer_certs() else {
            return Ok("local".into());
        };
        let identity = super::tls::client_identity(request)?;
        let cas = match role {
            Role::Agent => &self.agents,
            Role::Subscriber => &self.subscribers,
        };
        // The peer's chain (leaf first, then any intermediates it sent): one of them must be
        // signed by one of the role's CAs.
        let signed = certs.iter().any(|der| {
            X509Certificate::from_der(der.as_ref()).is_ok_and(|(_, cert)| {
                cas.iter().any(|ca| {
                    X509Certificate::from_der(ca).is_ok_and(|(_, ca)| {
                        cert.issuer() == ca.subject()
                            && cert.verify_signature(Some(ca.public_key())).is_ok()
                    })
                })
            })
        });
        if signed {
            Ok(identity)
        } else {
            Err(Status::permission_denied(format!(
                "certificate {identity:?} is not from the {} CA: it may not {}",
                role.name(),
                match role {
                    Role::Agent => "push alerts",
                    Role::Subscriber => "read events",
                }
            )))
        }
    }
}
