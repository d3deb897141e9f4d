//! The `syslog` sink: RFC 5424 messages over TLS with RFC 5425 framing (octet counting), the
//! body JSON or CEF, the verdict in structured data. Syslog over TLS has no acknowledgement:
//! an event counts as delivered once written and flushed to a connection the receiver has not
//! closed (checked before each batch, so a receiver that went away is noticed before anything
//! is written into its closed connection). What a receiver that crashes loses from its socket
//! buffer is not seen; docs/sinks.md says so.
use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{
    client::TlsStream,
    rustls::{
        self,
        pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
    },
    TlsConnector,
};

use super::config::{SyslogFormat, SyslogSink};
use futures_util::FutureExt;

use crate::serve::sinks::{
    record::Record,
    render::{cef, render, Origin, Rendered},
    transport::{answered, Acknowledgement, Failed, Pending, Transport},
};

pub struct SyslogTransport {
    config: SyslogSink,
    origin: Origin,
    stream: Option<TlsStream<TcpStream>>,
}

impl SyslogTransport {
    pub fn new(config: SyslogSink, origin: Origin) -> Self {
        SyslogTransport {
            config,
            origin,
            stream: None,
        }
    }

    fn tls(&self) -> Result<rustls::ClientConfig, String> {
        let c = &self.config;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&c.ca)
            .map_err(|e| format!("syslog CA {}: {e}", c.ca.display()))?
        {
            let cert = cert.map_err(|e| format!("syslog CA {}: {e}", c.ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("syslog CA {}: {e}", c.ca.display()))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
        match (&c.cert, &c.key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|e| format!("syslog cert {}: {e}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("syslog key {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("syslog client certificate: {e}"))
            }
            _ => Ok(builder.with_no_client_auth()),
        }
    }

    pub async fn connect(&mut self) -> Result<(), String> {
        let c = &self.config;
        let host = c
            .server_name
            .clone()
            .unwrap_or_else(|| host_of(&c.address).to_string());
        let name = ServerName::try_from(host.clone())
            .map_err(|e| format!("syslog server name {host:?}: {e}"))?;
        let connector = TlsConnector::from(Arc::new(self.tls()?));
        let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&c.address))
            .await
            .map_err(|_| format!("connecting to {}: timed out", c.address))?
            .map_err(|e| format!("connecting to {}: {e}", c.address))?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
            .await
            .map_err(|_| format!("TLS with {}: timed out", c.address))?
            .map_err(|e| format!("TLS with {}: {e}", c.address))?;
        self.stream = Some(tls);
        Ok(())
    }

    pub fn disconnect(&mut self) {
        self.stream = None;
    }

    pub async fn deliver(&mut self, events: &[Record]) -> Result<(), Failed> {
        // Appended whole (a flat_map over each frame's bytes pushed them one at a time: a
        // quarter of the sink's CPU).
        let mut frames = Vec::new();
        for e in events {
            let message = message(&self.config, &render(&self.origin, e.event()));
            frames.extend_from_slice(itoa::Buffer::new().format(message.len()).as_bytes());
            frames.push(b' ');
            frames.extend_from_slice(message.as_bytes());
        }
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| Failed::none("not connected"))?;
        // The receiver never sends: anything readable is its close (or garbage).
        let mut probe = [0u8; 256];
        if let Ok(read) = tokio::time::timeout(Duration::ZERO, stream.read(&mut probe)).await {
            return Err(Failed::none(match read {
                Ok(0) => "the receiver closed the connection".to_string(),
                Ok(_) => "the receiver sent data (syslog receivers do not)".to_string(),
                Err(e) => format!("the connection broke: {e}"),
            }));
        }
        stream
            .write_all(&frames)
            .await
            .map_err(|e| Failed::none(format!("writing to {}: {e}", self.config.address)))?;
        stream
            .flush()
            .await
            .map_err(|e| Failed::none(format!("writing to {}: {e}", self.config.address)))?;
        Ok(())
    }
}

fn host_of(address: &str) -> &str {
    match address.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => address,
    }
}

/// A header field: printable US-ASCII without spaces, at most `max` characters; `-` if empty.
fn field(s: &str, max: usize) -> String {
    let f: String = s.chars().filter(char::is_ascii_graphic).take(max).collect();
    if f.is_empty() {
        "-".into()
    } else {
        f
    }
}

/// An SD-PARAM value: `"`, `\` and `]` escaped.
fn param(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(']', "\\]")
}

/// RFC 5424 severity of an event: from the alert's or the verdict's severity.
fn severity(r: &Rendered) -> u8 {
    let name = match r.kind {
        "alert" => r.json["severity"].as_str(),
        "flood" => Some("high"),
        _ => r.json["verdict"]["severity"].as_str(),
    };
    match name {
        Some("critical") => 2,
        Some("high") => 3,
        Some("medium") => 4,
        Some("low") => 5,
        _ => 6,
    }
}

/// The timestamp with at most microseconds (RFC 5424 allows six fractional digits).
fn timestamp(ts: &str) -> String {
    match ts.split_once('.') {
        Some((whole, frac)) => {
            let digits: String = frac
                .chars()
                .take_while(char::is_ascii_digit)
                .take(6)
                .collect();
            let zone = frac.trim_start_matches(|c: char| c.is_ascii_digit());
            format!("{whole}.{digits}{zone}")
        }
        None => ts.to_string(),
    }
}

/// One RFC 5424 message.
pub fn message(config: &SyslogSink, r: &Rendered) -> String {
    let j = &r.json;
    let flow = match r.kind {
        "alert" | "flood" => &j["flow"],
        _ => j,
    };
    let pri = u32::from(config.facility.min(23)) * 8 + u32::from(severity(r));
    let mut sd = format!(
        "[sovereign@32473 id=\"{}\" kind=\"{}\"",
        param(&r.key),
        r.kind
    );
    let verdict = &flow["verdict"];
    for (name, value) in [
        ("rule", j["rule"].as_str().or(verdict["rule"].as_str())),
        ("decision", verdict["decision"].as_str()),
        (
            "severity",
            j["severity"].as_str().or(verdict["severity"].as_str()),
        ),
        ("workload", j["workload"].as_str()),
        ("destination", j["destination"].as_str()),
        ("dst", flow["dst_ip"].as_str()),
    ] {
        if let Some(v) = value {
            sd.push_str(&format!(" {name}=\"{}\"", param(v)));
        }
    }
    sd.push(']');
    let body = match config.format {
        SyslogFormat::Json => serde_json::to_string(j).unwrap_or_default(),
        SyslogFormat::Cef => cef(r),
    };
    format!(
        "<{pri}>1 {} {} {} {} {} {sd} {body}",
        timestamp(j["ts"].as_str().unwrap_or("-")),
        field(r.json["agent_id"].as_str().unwrap_or_default(), 255),
        field(&config.app_name, 48),
        flow["pid"].as_u64().map_or("-".into(), |p| p.to_string()),
        field(r.kind, 32),
    )
}

impl Transport for SyslogTransport {
    fn connect(&mut self) -> Pending<'_, Result<(), String>> {
        Box::pin(SyslogTransport::connect(self))
    }

    fn send<'a>(&'a mut self, events: &'a [Record], _: u64) -> Pending<'a, Acknowledgement> {
        Box::pin(self.deliver(events).map(answered))
    }

    fn disconnect(&mut self) {
        SyslogTransport::disconnect(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::Event,
        journal::{convert::to_proto, tests::sample_flow},
    };

    #[test]
    fn a_message_has_the_rfc5424_header_and_the_verdict_in_structured_data() {
        let config: SyslogSink =
            toml::from_str("address = \"127.0.0.1:6514\"\nca = \"ca.pem\"\nformat = \"json\"\n")
                .unwrap();
        let origin = Origin {
            agent_id: "node 1".into(),
            journal_id: "ab".repeat(16),
        };
        // sample_flow(4): a connect at a time with nanoseconds.
        let e = to_proto(&Event::Flow(Box::new(sample_flow(4))), 5);
        let m = message(&config, &render(&origin, e));
        // facility 13 (log audit) * 8 + severity 3 (high violation: err).
        assert!(m.starts_with("<107>1 2026-"), "{m}");
        let header: Vec<&str> = m.splitn(7, ' ').collect();
        assert_eq!(header[2], "node1", "HOSTNAME without its space: {m}");
        assert_eq!(header[3], "sovereign-agent");
        assert_eq!(header[4], "1004");
        assert_eq!(header[5], "connect");
        let fraction = header[1].split_once('.').unwrap().1;
        assert_eq!(fraction.len(), 7, "six digits and Z: {m}");
        assert!(m.contains("[sovereign@32473 id=\"node 1:"), "{m}");
        assert!(m.contains("decision=\"violation\""), "{m}");
        let body = m.split_once("] ").unwrap().1;
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["seq"], 5);
    }
}
