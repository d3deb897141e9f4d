//! Speed of naming, on packets recorded from real tools (tests/fixtures): DNS responses from
//! dnsmasq, ClientHellos from curl and openssl; and the whole verification path of one DNS
//! exchange (query recorded, answer matched, names stored, flow named) with 10,000 other
//! queries outstanding.
//!
//!     cargo bench -p sovereign-agent --bench names
use std::{hint::black_box, net::IpAddr, path::Path, time::Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use simple_dns::{rdata, Name, Packet, Question, ResourceRecord, CLASS, TYPE};
use sovereign_agent::names::{dns, sni, Namer, NamesOptions};
use sovereign_agent_common::{PacketView, RecordKind, AF_INET, IPPROTO_UDP};

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
        });
    });
    g.finish();

    let mut g = c.benchmark_group("tls");
    g.throughput(Throughput::Elements(2));
    g.bench_function("server_name", |b| {
        b.iter(|| {
            for h in &hellos {
                black_box(sni::server_name(black_box(h)).unwrap());
            }
        });
    });
    g.finish();
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut p = Packet::new_query(id);
    p.questions.push(Question::new(
        Name::new_unchecked(name),
        TYPE::A.into(),
        CLASS::IN.into(),
        false,
    ));
    p.build_bytes_vec().unwrap()
}

fn answer(id: u16, name: &str, ip: [u8; 4]) -> Vec<u8> {
    let mut p = Packet::new_reply(id);
    p.questions.push(Question::new(
        Name::new_unchecked(name),
        TYPE::A.into(),
        CLASS::IN.into(),
        false,
    ));
    p.answers.push(ResourceRecord::new(
        Name::new_unchecked(name),
        CLASS::IN,
        300,
        rdata::RData::A(rdata::A {
            address: u32::from_be_bytes(ip),
        }),
    ));
    p.build_bytes_vec_compressed().unwrap()
}

fn packet<'a>(
    kind: RecordKind,
    cgroup: u64,
    cookie: u64,
    port: u16,
    data: &'a [u8],
) -> PacketView<'a> {
    let mut resolver = [0u8; 16];
    resolver[..4].copy_from_slice(&[127, 0, 0, 53]);
    PacketView {
        kind,
        family: AF_INET,
        protocol: IPPROTO_UDP,
        ts_ns: 0,
        cgroup_id: cgroup,
        cookie,
        peer_addr: resolver,
        peer_port: 53,
        local_port: port,
        packet_len: data.len() as u32,
        tcp_seq: 0,
        data,
    }
}

/// One query and its answer through the naming stage, then the flow's name lookup, with
/// 10,000 queries of 4 cgroups outstanding (the table's default size).
fn verification(c: &mut Criterion) {
    let options = NamesOptions {
        trusted_resolvers: vec!["127.0.0.53".parse().unwrap()],
        ..NamesOptions::default()
    };
    let mut namer = Namer::new(&options);
    let now = Instant::now();
    let backlog: Vec<Vec<u8>> = (0..9_990u16).map(|i| query(i, "pending.example")).collect();
    for (i, q) in backlog.iter().enumerate() {
        namer.on_packet(
            &packet(
                RecordKind::DnsQuery,
                100 + (i % 4) as u64,
                i as u64,
                40000,
                q,
            ),
            now,
        );
    }
    let q = query(0x4242, "llm.sovereign.example");
    let a = answer(0x4242, "llm.sovereign.example", [203, 0, 113, 20]);
    let ip: IpAddr = [203, 0, 113, 20].into();
    let mut g = c.benchmark_group("names");
    g.throughput(Throughput::Elements(1));
    let mut cookie = 1_000_000u64;
    g.bench_function("query_answer_lookup", |b| {
        b.iter_batched(
            || {
                cookie += 1;
                cookie
            },
            |cookie| {
                namer.on_packet(&packet(RecordKind::DnsQuery, 7, cookie, 41000, &q), now);
                namer.on_packet(&packet(RecordKind::DnsResponse, 7, cookie, 41000, &a), now);
                let n = namer.lookup(7, ip, 443, cookie + 1, now);
                assert_eq!(n.source, "dns");
                black_box(n)
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

criterion_group!(benches, bench, verification);
criterion_main!(benches);
