//! A real `rsyslog` receiving RFC 5425 (syslog over TLS, mutual certificates) and writing what
//! it parsed from each message (`%jsonmesg%`) as a JSON line: the syslog sink's test and
//! benchmark receiver.
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{free_port, openssl_cert};

/// Writes into `dir` a CA, rsyslog's certificate (for 127.0.0.1), the agent's (`agent.pem`,
/// `agent.key`) and rsyslog's configuration; returns the port it will listen on.
pub fn configure(dir: &Path) -> u16 {
    std::fs::create_dir_all(dir.join("work")).expect("rsyslog work directory");
    openssl_cert(dir, "ca", None, "2", "");
    openssl_cert(
        dir,
        "rsyslog",
        Some("ca"),
        "2",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    openssl_cert(
        dir,
        "agent",
        Some("ca"),
        "2",
        "extendedKeyUsage=clientAuth\n",
    );
    let port = free_port();
    std::fs::write(dir.join("port"), port.to_string()).expect("port file");
    let d = dir.display();
    // RFC 5425 with mutual authentication: rsyslog accepts only clients with a certificate
    // from the CA.
    std::fs::write(
        dir.join("rsyslog.conf"),
        format!(
            "global(workDirectory=\"{d}/work\"\n\
             \x20 DefaultNetstreamDriver=\"ossl\"\n\
             \x20 DefaultNetstreamDriverCAFile=\"{d}/ca.pem\"\n\
             \x20 DefaultNetstreamDriverCertFile=\"{d}/rsyslog.pem\"\n\
             \x20 DefaultNetstreamDriverKeyFile=\"{d}/rsyslog.key\")\n\
             module(load=\"imtcp\" StreamDriver.Name=\"ossl\" StreamDriver.Mode=\"1\" \
             StreamDriver.AuthMode=\"x509/certvalid\")\n\
             input(type=\"imtcp\" port=\"{port}\")\n\
             template(name=\"parsed\" type=\"string\" string=\"%jsonmesg%\\n\")\n\
             *.* action(type=\"omfile\" file=\"{d}/received.jsonl\" template=\"parsed\")\n"
        ),
    )
    .expect("rsyslog.conf");
    port
}

/// Starts rsyslogd on the configuration [`configure`] wrote; returns once it accepts
/// connections.
pub fn start(dir: &Path) -> Child {
    let child = Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(dir.join("rsyslog.conf"))
        .arg("-i")
        .arg(dir.join("rsyslog.pid"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("rsyslog.err")).expect("rsyslog.err"))
        .spawn()
        .expect("rsyslogd (installed by `cargo xtask setup`)");
    let port: u16 = std::fs::read_to_string(dir.join("port"))
        .expect("port file")
        .parse()
        .expect("a port");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "rsyslogd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// What rsyslog parsed from each message, in arrival order.
pub fn received(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("received.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("rsyslog's %jsonmesg% is JSON"))
        .collect()
}

/// How many messages rsyslog has written (lines, not parsed: cheap to poll).
pub fn received_count(dir: &Path) -> usize {
    std::fs::read(dir.join("received.jsonl"))
        .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}
