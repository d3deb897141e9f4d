//! Parsing speed of the naming inputs, on packets recorded from real tools
//! (tests/fixtures): DNS responses from dnsmasq, ClientHellos from curl and openssl.
//!
//!     cargo bench -p sovereign-agent --bench names
use std::{hint::black_box, path::Path};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sovereign_agent::names::{dns, sni};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let responses = [fixture("dns-cname-chain.bin"), fixture("dns-aaaa.bin")];
    let tcp = fixture("dns-tcp.bin");
    let hellos = [
        fixture("clienthello-curl.bin"),
        fixture("clienthello-openssl.bin"),
    ];

    let mut g = c.benchmark_group("dns");
    g.throughput(Throughput::Elements(3));
    g.bench_function("parse_response", |b| {
        b.iter(|| {
            for r in &responses {
                black_box(dns::parse_response(black_box(r), false).unwrap());
            }
            black_box(dns::parse_response(black_box(&tcp), true).unwrap());
        })
    });
    g.finish();

    let mut g = c.benchmark_group("tls");
    g.throughput(Throughput::Elements(2));
    g.bench_function("server_name", |b| {
        b.iter(|| {
            for h in &hellos {
                black_box(sni::server_name(black_box(h)).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
