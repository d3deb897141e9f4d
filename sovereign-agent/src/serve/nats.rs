//! The NATS client that the `nats` sink publishes with and the collector consumes with:
//! where it connects and with what credentials, what it does when its connection is lost,
//! and the subject token that names one agent.
use std::{
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

/// An agent id as one subject token, injectively: ASCII letters, digits, `-` and `_` stay;
/// every other byte (`.`, `*`, `>`, `%`, blanks, anything not ASCII) becomes `%XX`; the empty
/// id is `%`. Two ids never share a token, so the subject (which the operator's NATS
/// permissions bind to each agent's credentials) names exactly one agent, and
/// [`agent_of_token`] gives it back without trusting any header.
pub fn subject_token(s: &str) -> String {
    if s.is_empty() {
        return "%".into();
    }
    let mut t = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            t.push(b as char);
        } else {
            t.push_str(&format!("%{b:02X}"));
        }
    }
    t
}

/// The agent id a subject token stands for; `None` for a token [`subject_token`] would not
/// have written (no other spelling of an id is accepted).
pub fn agent_of_token(t: &str) -> Option<String> {
    if t == "%" {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(t.len());
    let mut rest = t.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    let id = String::from_utf8(bytes).ok()?;
    (subject_token(&id) == t).then_some(id)
}

/// Where a NATS client connects, and with what credentials: the `nats` sink's settings, and
/// the collector's when it consumes from JetStream.
#[derive(Clone, Debug, Default)]
pub struct NatsServers {
    pub servers: Vec<String>,
    pub credentials: Option<std::path::PathBuf>,
    pub ca: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

/// What a client does when its connection is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterLoss {
    /// Fail over to another server by itself (a consumer, which resumes from its cursor).
    Reconnect,
    /// Stay disconnected, saying so in the returned flag (a publisher that must keep order:
    /// see the module's documentation).
    Stay,
}

/// Never, for a client: its connection task sleeps this long before a reconnect, and is
/// dropped with the client well before.
const NO_RECONNECT: Duration = Duration::from_secs(3600);

/// Connects to the first NATS server of `to` that answers; returns the client and a flag set
/// when its connection is lost. `unread`: messages a subscription may hold unread before the
/// client drops what comes next (None: the library's 65,536).
pub async fn connect(
    to: &NatsServers,
    name: String,
    after_loss: AfterLoss,
    unread: Option<usize>,
) -> Result<(async_nats::Client, Arc<AtomicBool>), String> {
    let lost = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicBool::new(false));
    let mut options = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .name(name);
    if let Some(unread) = unread {
        options = options.subscription_capacity(unread.max(1024));
    }
    if after_loss == AfterLoss::Stay {
        let (lost, on_event) = (lost.clone(), connected.clone());
        let on_delay = connected.clone();
        options = options
            .event_callback(move |event| {
                if on_event.load(Relaxed) && matches!(event, async_nats::Event::Disconnected) {
                    lost.store(true, Relaxed);
                }
                std::future::ready(())
            })
            .reconnect_delay_callback(move |attempts| {
                if on_delay.load(Relaxed) {
                    NO_RECONNECT
                } else if attempts <= 1 {
                    // The first connection tries each server at once.
                    Duration::ZERO
                } else {
                    Duration::from_millis(250)
                }
            });
    }
    if let Some(path) = &to.credentials {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| format!("NATS credentials {}: {e}", path.display()))?;
    }
    if let Some(ca) = &to.ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&to.cert, &to.key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let servers: Vec<async_nats::ServerAddr> = to
        .servers
        .iter()
        .map(|s| s.parse().map_err(|e| format!("NATS server {s:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let client = options
        .connect(servers)
        .await
        .map_err(|e| format!("cannot connect to NATS {}: {e}", to.servers.join(", ")))?;
    connected.store(true, Relaxed);
    Ok((client, lost))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_id_becomes_one_subject_token_and_back() {
        assert_eq!(
            subject_token("node-1.eu-west.example"),
            "node-1%2Eeu-west%2Eexample"
        );
        assert_eq!(subject_token("a b*c>"), "a%20b%2Ac%3E");
        assert_eq!(subject_token("node_1"), "node_1");
        assert_eq!(subject_token(""), "%");
        // Injective: ids that the old `_` replacement merged stay apart.
        assert_ne!(subject_token("node.1"), subject_token("node_1"));
        for id in [
            "node-1.eu-west.example",
            "a b*c>",
            "",
            "50%",
            "nœud-1",
            "node_1",
        ] {
            assert_eq!(agent_of_token(&subject_token(id)).as_deref(), Some(id));
        }
        // Only the canonical spelling is accepted.
        for token in ["%41", "%2e", "%4", "%zz", "a%", "%FF"] {
            assert_eq!(agent_of_token(token), None, "{token}");
        }
    }
}
