//! Who may do what at a collector: a client certificate issued by the agent CA may push
//! alerts; one issued by the subscriber CA may read the fleet's events. The TLS handshake
//! accepts a certificate from either CA (rustls checks the chain, validity and usage); each
//! call then checks that the client's *leaf* certificate has a verified path to that role's CA
//! (through the intermediates it sent, which must be CA certificates), so an agent's
//! certificate, stolen from one host, cannot read every other host's alerts, and a
//! subscriber's cannot forge alerts. A certificate of the other role appended to the chain
//! proves nothing: a leaf is no issuer (docs/collector.md, "Roles").
use std::{path::Path, sync::Arc};

use tokio_rustls::rustls::{
    self,
    pki_types::{CertificateDer, UnixTime},
    server::{danger::ClientCertVerifier, WebPkiClientVerifier},
    RootCertStore,
};
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

/// The path verifier of each role, rooted at that role's CA certificates only.
pub struct Roles {
    agents: Arc<dyn ClientCertVerifier>,
    subscribers: Arc<dyn ClientCertVerifier>,
    /// Both CA files, for the TLS handshake.
    bundle: Vec<u8>,
}

impl std::fmt::Debug for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roles").finish_non_exhaustive()
    }
}

/// A verifier that accepts exactly the client certificates with a path to one of `cas`.
fn verifier(
    cas: Vec<Vec<u8>>,
    what: &str,
    path: &Path,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for der in cas {
        roots.add(CertificateDer::from(der)).map_err(|e| {
            format!(
                "{what} {}: not a usable CA certificate: {e}",
                path.display()
            )
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("{what} {}: {e}", path.display()))
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
        let agents = verifier(agents, agent_ca.1, agent_ca.0)?;
        let subscribers = verifier(subscribers, subscriber_ca.1, subscriber_ca.0)?;
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
        let identity = client_identity(request)?;
        if self.holds(&certs, role) {
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

    /// Whether the chain a client presented (leaf first, then the intermediates it sent) gives
    /// its leaf a verified path to one of `role`'s CAs, valid now.
    pub fn holds(&self, chain: &[CertificateDer<'_>], role: Role) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        let verifier = match role {
            Role::Agent => &self.agents,
            Role::Subscriber => &self.subscribers,
        };
        verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .is_ok()
    }
}

/// The common name of the client certificate a request came with (an agent's identity at a
/// collector).
pub fn client_identity<T>(request: &Request<T>) -> Result<String, Status> {
    let certs = request
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let der = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| Status::unauthenticated(format!("unreadable client certificate: {e}")))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .ok_or_else(|| Status::unauthenticated("the client certificate has no common name"))?;
    Ok(cn.to_string())
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };

    use super::*;

    fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    fn client(name: &str, issuer: &CertifiedIssuer<'static, KeyPair>) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, issuer).unwrap().der().clone()
    }

    /// An agent CA, a subscriber CA, and the roles loaded from their PEM files.
    fn roles() -> (
        tempfile::TempDir,
        Roles,
        CertifiedIssuer<'static, KeyPair>,
        CertifiedIssuer<'static, KeyPair>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (agents, subscribers) = (ca("agents"), ca("subscribers"));
        std::fs::write(dir.path().join("agents.pem"), agents.pem()).unwrap();
        std::fs::write(dir.path().join("subscribers.pem"), subscribers.pem()).unwrap();
        let roles = Roles::load(
            (&dir.path().join("agents.pem"), "agent CA"),
            (&dir.path().join("subscribers.pem"), "subscriber CA"),
        )
        .unwrap();
        (dir, roles, agents, subscribers)
    }

    #[test]
    fn each_leaf_holds_the_role_of_its_own_ca_only() {
        let (_dir, roles, agents, subscribers) = roles();
        let agent = client("agent-a", &agents);
        let team = client("team", &subscribers);
        assert!(roles.holds(std::slice::from_ref(&agent), Role::Agent));
        assert!(!roles.holds(std::slice::from_ref(&agent), Role::Subscriber));
        assert!(roles.holds(std::slice::from_ref(&team), Role::Subscriber));
        assert!(!roles.holds(std::slice::from_ref(&team), Role::Agent));
        assert!(!roles.holds(&[], Role::Agent));
    }

    #[test]
    fn a_certificate_of_the_other_role_appended_to_the_chain_grants_nothing() {
        // The attack: an agent's own certificate and key, with the (public) subscriber
        // certificate, or even the subscriber CA itself, sent after it as "intermediates".
        let (_dir, roles, agents, subscribers) = roles();
        let agent = client("agent-a", &agents);
        let team = client("team", &subscribers);
        let chain = [agent.clone(), team.clone(), subscribers.der().clone()];
        assert!(
            !roles.holds(&chain, Role::Subscriber),
            "an agent reads the fleet"
        );
        assert!(
            roles.holds(&chain, Role::Agent),
            "the leaf keeps its own role"
        );
        let reverse = [team, agent, agents.der().clone()];
        assert!(
            !roles.holds(&reverse, Role::Agent),
            "a subscriber pushes alerts"
        );
        assert!(roles.holds(&reverse, Role::Subscriber));
    }

    #[test]
    fn a_real_intermediate_ca_of_the_role_is_followed() {
        let (_dir, roles, agents, _) = roles();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "agents-eu");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let eu =
            CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), &*agents).unwrap();
        let agent = client("agent-eu-1", &eu);
        assert!(roles.holds(&[agent.clone(), eu.der().clone()], Role::Agent));
        assert!(!roles.holds(&[agent.clone(), eu.der().clone()], Role::Subscriber));
        assert!(
            !roles.holds(&[agent], Role::Agent),
            "no path without the intermediate"
        );
    }
}
