//! Residency classification speed with all four provider files and the GeoIP databases
//! loaded (about 105,000 prefixes), and how long loading them takes.
//!
//!     cargo bench -p sovereign-agent --bench classify
//!
//! Figures are recorded in docs/performance.md.
use std::{hint::black_box, net::IpAddr, time::Duration};

#[path = "support/rss.rs"]
mod rss;
#[path = "support/testdata.rs"]
mod testdata;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipnet::IpNet;
use sovereign_agent::policy::{DnsChain, Flow, Policy};

fn policy_text() -> String {
    testdata::policy_text(
        "bench",
        r#"
[[rule]]
name = "crm"
workload = { comm = ["crm-sync*"] }
allow = ["company"]

[[rule]]
name = "llm"
workload = { exe = ["/opt/llm/**"] }
allow = ["eu-cloud", "eu-countries", "company"]
deny = ["external-ai"]
severity = "critical"
"#,
    )
}

/// A connection of the LLM server (the policy's `llm` rule) to `ip`:443.
fn llm_flow<'a>(ip: IpAddr, dns: &'a [DnsChain], sni: Option<&'a str>) -> Flow<'a> {
    Flow {
        ip,
        port: 443,
        dns,
        sni,
        sni_unreadable: false,
        exe: Some("/opt/llm/bin/server"),
        interpreter: None,
        ancestors: &[],
        comm: "server",
        cgroup: None,
        container_id: None,
        uid: 1000,
    }
}

fn load() -> Policy {
    let path = std::env::temp_dir().join("sovereign-bench-policy.toml");
    std::fs::write(&path, policy_text()).unwrap();
    Policy::load(&path, Some(&testdata::testdata().join("cloud-ranges")))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Addresses spread over the provider files' prefixes (one per prefix, in file order), so
/// lookups hit every part of the table, plus addresses in no dataset.
fn addresses() -> Vec<IpAddr> {
    let text =
        std::fs::read_to_string(testdata::testdata().join("cloud-ranges/aws-ip-ranges.json"))
            .unwrap();
    let mut out = Vec::new();
    for part in text.split('"') {
        if let Ok(net) = part.parse::<IpNet>() {
            out.push(net.hosts().next().unwrap_or(net.network()));
        }
    }
    let azure = std::fs::read_to_string(
        testdata::testdata().join("cloud-ranges/microsoft-azure-ip-ranges.json"),
    )
    .unwrap();
    for part in azure.split('"').step_by(7) {
        if let Ok(net) = part.parse::<IpNet>() {
            out.push(net.network());
        }
    }
    for i in 0..2000u32 {
        out.push(IpAddr::V4(std::net::Ipv4Addr::from(
            0xC633_6400u32.wrapping_add(i.wrapping_mul(2_654_435_761)),
        )));
    }
    out
}

fn bench(c: &mut Criterion) {
    let before = rss::rss_kib();
    let policy = load();
    let after = rss::rss_kib();
    let prefixes: usize = policy.datasets.iter().map(|d| d.prefixes).sum();
    eprintln!(
        "loaded {prefixes} prefixes; tables {:.1} MiB; resident memory grew by {:.1} MiB",
        policy.heap_bytes() as f64 / 1048576.0,
        (after.saturating_sub(before)) as f64 / 1024.0
    );
    let ips = addresses();
    // Verified DNS answers (a chain of one name) with, every other flow, the SNI too.
    let names_pool: Vec<Vec<DnsChain>> = [
        "api.openai.com",
        "eu12.crm4.dynamics.com",
        "db.corp.example",
        "bedrock-runtime.eu-central-1.amazonaws.com",
        "www.example.org",
        "mycompany.openai.azure.com",
    ]
    .iter()
    .map(|n| {
        vec![DnsChain {
            names: vec![n.to_string()],
            resolver: "127.0.0.53:53".into(),
            verified: true,
        }]
    })
    .collect();

    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(ips.len() as u64));
    g.bench_function("ip_only", |b| {
        b.iter(|| {
            for ip in &ips {
                black_box(policy.classify(black_box(&llm_flow(*ip, &[], None))));
            }
        });
    });
    g.bench_function("with_name", |b| {
        b.iter(|| {
            for (i, ip) in ips.iter().enumerate() {
                let dns = &names_pool[i % names_pool.len()];
                let sni = (i % 2 == 0).then(|| dns[0].names[0].as_str());
                black_box(policy.classify(black_box(&llm_flow(*ip, dns, sni))));
            }
        });
    });
    g.finish();

    // What /metrics costs the pipeline per judged flow: one kind counter and one verdict
    // counter (decision, severity, rule) under a mutex nobody else holds.
    let flow = llm_flow(ips[0], &names_pool[0], None);
    let explanation = policy.explain(&flow, &policy.classify(&flow));
    let counters = sovereign_agent::serve::metrics::Counters::default();
    let mut g = c.benchmark_group("metrics");
    g.throughput(Throughput::Elements(1));
    g.bench_function("count_judged_flow", |b| {
        b.iter(|| {
            counters.count_event(
                sovereign_agent::event::EventKind::Connect,
                black_box(Some(&explanation)),
            );
        });
    });
    g.finish();

    let mut g = c.benchmark_group("load");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("four_provider_files_and_geoip", |b| {
        b.iter(|| black_box(load()));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
