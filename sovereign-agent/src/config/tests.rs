use std::time::Duration;

use super::*;
use crate::{agent::options, journal::FsyncPolicy};

fn parse(text: &str) -> Result<Config, ConfigError> {
    let dir = std::env::temp_dir().join(format!("sa-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "{:x}.toml",
        text.len() * 31 + text.bytes().map(u64::from).sum::<u64>() as usize
    ));
    std::fs::write(&path, text).unwrap();
    Config::load(&path)
}

#[test]
fn empty_file_is_the_defaults() {
    let c = parse("").unwrap();
    assert_eq!(Config { source: None, ..c }, Config::default());
}

#[test]
fn full_file() {
    let c = parse(
        "cgroup = \"system.slice/llm.service\"\noutput = \"/var/log/flows.jsonl\"\n\
         ring_buffer_bytes = 8388608\nprocess_cache_entries = 100\nloss_poll_interval_ms = 250\n\
         [log]\nlevel = \"debug\"\nformat = \"json\"\n",
    )
    .unwrap();
    assert_eq!(
        c.cgroup.as_deref(),
        Some(Path::new("system.slice/llm.service"))
    );
    assert_eq!(c.ring_buffer_bytes, 8 << 20);
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn unknown_key_names_the_key_and_file() {
    let err = parse("ring_bufer_bytes = 4096\n").unwrap_err().to_string();
    assert!(err.contains("ring_bufer_bytes"), "{err}");
    assert!(err.contains("config file"), "{err}");
    assert!(err.contains(".toml"), "{err}");
}

#[test]
fn bad_values_name_the_key() {
    let err = parse("ring_buffer_bytes = 5000\n").unwrap_err().to_string();
    assert!(
        err.contains("`ring_buffer_bytes`") && err.contains("5000"),
        "{err}"
    );
    let err = parse("[log]\nformat = \"xml\"\n").unwrap_err().to_string();
    assert!(err.contains("xml"), "{err}");
    let err = parse("process_cache_entries = 0\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("process_cache_entries"), "{err}");
}

#[test]
fn names_section() {
    let c = parse(
        "[names]\ntrusted_resolvers = [\"10.96.0.10\", \"[fd00::a]:5353\"]\nmax_ttl_secs = 300\n",
    )
    .unwrap();
    let o = options::pipeline_options(&c).names;
    let rs: Vec<String> = o
        .trusted_resolvers
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(rs, ["10.96.0.10:53", "[fd00::a]:5353"]);
    assert_eq!(o.ttl_cap, Duration::from_secs(300));
    // "host" brings the systemd-resolved stub (and resolv.conf's nameservers).
    let o = options::pipeline_options(&Config::default()).names;
    assert!(o
        .trusted_resolvers
        .iter()
        .any(|r| r.to_string() == "127.0.0.53:53"));
    let err = parse("[names]\ntrusted_resolvers = [\"dns.example\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("names.trusted_resolvers") && err.contains("dns.example"),
        "{err}"
    );
    let err = parse("[names]\nquery_table_entries = 0\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("names.query_table_entries"), "{err}");
}

#[test]
fn journal_section() {
    let c = parse(
        "[journal]\ndir = \"/srv/journal\"\nfsync = \"interval\"\nfsync_interval_ms = 250\n\
         retention_max_bytes = 0\n",
    )
    .unwrap();
    let o = options::journal_options(&c).unwrap().unwrap();
    assert_eq!(o.dir, Path::new("/srv/journal"));
    assert_eq!(o.fsync, FsyncPolicy::Interval(Duration::from_millis(250)));
    assert_eq!(o.retention_max_bytes, None);
    assert_eq!(o.retention_max_age, Some(Duration::from_secs(90 * 86_400)));
    let err = parse("[journal]\nsegment_max_bytes = 10\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("journal.segment_max_bytes"), "{err}");
    let err = parse("[journal]\nfsync = \"sometimes\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("sometimes"), "{err}");
    let c = parse("[journal]\nsigning_key = \"/nonexistent/key.pem\"\n").unwrap();
    let err = options::journal_options(&c).unwrap_err().to_string();
    assert!(
        err.contains("journal.signing_key") && err.contains("/nonexistent/key.pem"),
        "{err}"
    );
    let off = parse("[journal]\nenabled = false\n").unwrap();
    assert!(options::journal_options(&off).unwrap().is_none());
}

#[test]
fn output_none_needs_the_journal() {
    let c = parse("output = \"none\"\n").unwrap();
    assert_eq!(c.output, Path::new("none"));
    let err = parse("output = \"none\"\n[journal]\nenabled = false\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`output`") && err.contains("nothing would record"),
        "{err}"
    );
    // A file of that name is still possible.
    parse("output = \"./none\"\n[journal]\nenabled = false\n").unwrap();
}

#[test]
fn tcp_api_needs_its_tls_files() {
    let err = parse("[api]\ntcp_listen = \"127.0.0.1:7443\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("api.tls_cert") && err.contains("client certificates"),
        "{err}"
    );
    let c = parse(
        "[api]\ntcp_listen = \"127.0.0.1:7443\"\ntls_cert = \"s.pem\"\ntls_key = \"s.key\"\nclient_ca = \"ca.pem\"\n",
    )
    .unwrap();
    assert_eq!(options::api_tcp(&c).unwrap().listen.port(), 7443);
    let err = parse("[api]\ntcp_listen = \"nowhere\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nowhere") || err.contains("tcp_listen"),
        "{err}"
    );
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// The environment table lists every key of the file (and nothing else): a new setting
/// cannot be added without its variable.
#[test]
fn every_key_has_an_environment_variable() {
    let mut full = Config {
        cgroup: Some("x".into()),
        policy: Some("x".into()),
        datasets: Some("x".into()),
        push: Some(PushConfig {
            collector: "https://c:1".into(),
            ca: "a".into(),
            cert: "b".into(),
            key: "c".into(),
            batch: 1,
        }),
        ..Config::default()
    };
    full.journal.signing_key = Some("k".into());
    full.api.tcp_listen = Some("127.0.0.1:1".parse().unwrap());
    full.api.tls_cert = Some("a".into());
    full.api.tls_key = Some("b".into());
    full.api.client_ca = Some("c".into());
    full.agent_id = Some("a".into());
    let mut keys = Vec::new();
    flatten("", &toml::Value::try_from(&full).unwrap(), &mut keys);
    // `[[sink]]` entries are a list of tables: only the file has them.
    keys.retain(|k| k != "sink");
    keys.sort();
    let mut listed: Vec<String> = env::KEYS.iter().map(|(k, _)| k.to_string()).collect();
    listed.sort();
    assert_eq!(keys, listed);
    let mut names: Vec<String> = env::KEYS.iter().map(|(k, _)| env::variable(k)).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), env::KEYS.len(), "two keys share a variable");
}

#[test]
fn environment_overrides_the_file_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        "output = \"/var/log/f.jsonl\"\n[journal]\ndir = \"/srv/j\"\nsegment_max_bytes = 8192\n",
    )
    .unwrap();
    let (c, unknown) = Config::load_layered(
        Some(&file),
        vars(&[
            ("SOVEREIGN_JOURNAL_SEGMENT_MAX_BYTES", "65536"),
            ("SOVEREIGN_METRICS_LISTEN", "0.0.0.0:9999"),
            ("SOVEREIGN_API_ENABLED", "false"),
            ("SOVEREIGN_LOG_LEVEL", "debug"),
            ("SOVEREIGN_POLICY", ""),
            ("SOVEREIGN_JOURNAL_DIRR", "/typo"),
            ("SOVEREIGN_CONFIG", "ignored: read by the command line"),
            ("HOME", "/root"),
        ]),
    )
    .unwrap();
    assert_eq!(c.output, Path::new("/var/log/f.jsonl"), "from the file");
    assert_eq!(c.journal.dir, Path::new("/srv/j"), "from the file");
    assert_eq!(c.journal.segment_max_bytes, 65536, "the environment wins");
    assert_eq!(c.metrics.listen.port(), 9999);
    assert!(!c.api.enabled);
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.policy, None, "empty is unset");
    assert_eq!(c.source.as_deref(), Some(file.as_path()));
    assert_eq!(unknown, vec!["SOVEREIGN_JOURNAL_DIRR".to_string()]);
    // No file: defaults plus the environment.
    let (c, _) = Config::load_layered(None, vars(&[("SOVEREIGN_CGROUP", "system.slice")])).unwrap();
    assert_eq!(c.cgroup.as_deref(), Some(Path::new("system.slice")));
    assert_eq!(c.journal, JournalConfig::default());
}

#[test]
fn bad_environment_values_name_the_variable() {
    let err = |pairs: &[(&str, &str)]| {
        Config::load_layered(None, vars(pairs))
            .unwrap_err()
            .to_string()
    };
    let e = err(&[("SOVEREIGN_RING_BUFFER_BYTES", "lots")]);
    assert!(
        e.contains("SOVEREIGN_RING_BUFFER_BYTES") && e.contains("lots"),
        "{e}"
    );
    let e = err(&[("SOVEREIGN_JOURNAL_FSYNC", "sometimes")]);
    assert!(
        e.contains("SOVEREIGN_JOURNAL_FSYNC") && e.contains("journal.fsync"),
        "{e}"
    );
    let e = err(&[("SOVEREIGN_METRICS_LISTEN", "localhost")]);
    assert!(e.contains("SOVEREIGN_METRICS_LISTEN"), "{e}");
    let e = err(&[("SOVEREIGN_RING_BUFFER_BYTES", "5000")]);
    assert!(
        e.contains("ring_buffer_bytes") && e.contains("environment"),
        "{e}"
    );
    let e = err(&[("SOVEREIGN_PUSH_COLLECTOR", "https://c:1")]);
    assert!(e.contains("SOVEREIGN_PUSH_COLLECTOR"), "{e}");
}

#[test]
fn named_files_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("c.pem");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let mut c = Config {
        push: Some(PushConfig {
            collector: "https://c:1".into(),
            ca: cert.clone(),
            cert: cert.clone(),
            key: dir.path().join("missing.key"),
            batch: 1,
        }),
        ..Config::default()
    };
    let e = c.check_files().unwrap_err().to_string();
    assert!(e.contains("push.key") && e.contains("missing.key"), "{e}");
    c.push.as_mut().unwrap().key = cert.clone();
    let e = c.check_files().unwrap_err().to_string();
    assert!(e.contains("push.key") && e.contains("PRIVATE KEY"), "{e}");
    c.push = None;
    c.datasets = Some(dir.path().join("nope"));
    let e = c.check_files().unwrap_err().to_string();
    assert!(e.contains("`datasets`"), "{e}");
}

#[test]
fn missing_file_names_it() {
    let err = Config::load(Path::new("/nonexistent/agent.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("config file /nonexistent/agent.toml:"),
        "{err}"
    );
}

#[test]
fn sinks_of_every_type_parse_with_their_defaults() {
    let c = parse(
        "agent_id = \"node-17\"\n\
         [[sink]]\nname = \"fleet\"\ntype = \"nats\"\nservers = [\"nats://127.0.0.1:4222\"]\n\
         filter = { kinds = [\"alert\", \"connect\"], min_severity = \"high\" }\n\
         [[sink]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"127.0.0.1:6514\"\nca = \"ca.pem\"\nformat = \"cef\"\n\
         [[sink]]\nname = \"chat\"\ntype = \"webhook\"\nurl = \"https://hooks.example/x\"\nformat = \"slack\"\n\
         [[sink]]\nname = \"c2\"\ntype = \"collector\"\nurl = \"https://c:7444\"\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n",
    )
    .unwrap();
    assert_eq!(c.agent_id.as_deref(), Some("node-17"));
    let names: Vec<(&str, &str)> = c
        .sink
        .iter()
        .map(|s| (s.name.as_str(), s.kind.type_name()))
        .collect();
    assert_eq!(
        names,
        [
            ("fleet", "nats"),
            ("siem", "syslog"),
            ("chat", "webhook"),
            ("c2", "collector")
        ]
    );
    match &c.sink[0].kind {
        crate::serve::sinks::SinkKind::Nats(n) => {
            assert_eq!(
                (
                    n.subject_prefix.as_str(),
                    n.ack_timeout_ms,
                    n.in_flight_batches
                ),
                ("sovereign", 5000, 4)
            );
        }
        other => panic!("{other:?}"),
    }
    // Alerts only unless the filter says otherwise.
    assert_eq!(c.sink[1].filter.kinds, ["alert"]);
    assert_eq!(c.sink[0].batch, 500);
}

#[test]
fn plain_http_webhooks_are_accepted_to_loopback_only() {
    for url in [
        "http://127.0.0.1:8080/x",
        "http://localhost/x",
        "http://[::1]:9/",
        "http://127.0.0.2/",
    ] {
        let text = format!("[[sink]]\nname = \"x\"\ntype = \"webhook\"\nurl = \"{url}\"\n");
        assert!(parse(&text).is_ok(), "{url}");
    }
}

#[test]
fn bad_sinks_name_the_sink_and_what_is_wrong() {
    for (text, wanted) in [
        (
            "[[sink]]\nname = \"x\"\ntype = \"nats\"\nservers = [\"nats://a:1\"]\nsubjects = \"y\"\n",
            "subjects",
        ),
        (
            "[[sink]]\nname = \"x\"\ntype = \"nats\"\nservers = [\"nats://a:1\"]\nin_flight_batches = 0\n",
            "\"x\": in_flight_batches 0",
        ),
        ("[[sink]]\nname = \"x\"\ntype = \"kafka\"\n", "kafka"),
        (
            "[[sink]]\nname = \"x\"\ntype = \"webhook\"\nurl = \"http://hooks.example/\"\n",
            "\"x\": url",
        ),
        // Issue 31, finding 11: loopback judged by the parsed host, not by a prefix.
        (
            "[[sink]]\nname = \"x\"\ntype = \"webhook\"\nurl = \"http://localhost.evil.example/hook\"\n",
            "\"x\": url",
        ),
        (
            "[[sink]]\nname = \"x\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1.evil.example/\"\n",
            "\"x\": url",
        ),
        (
            "[[sink]]\nname = \"x\"\ntype = \"webhook\"\nurl = \"http://[::1]@evil.example/\"\n",
            "\"x\": url",
        ),
        (
            "[[sink]]\nname = \"x\"\ntype = \"webhook\"\nurl = \"https://a/\"\n[[sink]]\nname = \"x\"\ntype = \"webhook\"\nurl = \"https://b/\"\n",
            "a second sink",
        ),
        (
            "[[sink]]\nname = \"x\"\ntype = \"syslog\"\naddress = \"siem\"\nca = \"c\"\n",
            "HOST:PORT",
        ),
        (
            "[[sink]]\nname = \"x\"\ntype = \"webhook\"\nurl = \"https://a/\"\nfilter = { kinds = [\"alrt\"] }\n",
            "alrt",
        ),
        (
            "[[sink]]\nname = \"a/b\"\ntype = \"webhook\"\nurl = \"https://a/\"\n",
            "cursor file",
        ),
    ] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(wanted), "{text}: {err}");
    }
}
