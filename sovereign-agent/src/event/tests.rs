use std::{net::Ipv6Addr, sync::Arc};

use sovereign_agent_common::{
    comm_string, FlowRecord, RecordKind, AF_INET, AF_INET6, CLOSE_FLAG_WAS_ESTABLISHED,
    IPPROTO_TCP, IPPROTO_UDP,
};

use super::*;
use crate::{clock::WallClock, enrich::processes::Identity};

fn clock() -> WallClock {
    WallClock::from_offset(1_795_824_000_000_000_000)
}

#[test]
fn tcp_close_json_has_bytes_and_names() {
    let mut rec = FlowRecord {
        kind: RecordKind::Close as u32,
        family: AF_INET,
        protocol: IPPROTO_TCP,
        flags: CLOSE_FLAG_WAS_ESTABLISHED,
        ts_ns: 5_000_000_000,
        pid: 101,
        tgid: 100,
        uid: 1000,
        gid: 1000,
        cgroup_id: 77,
        cookie: 9,
        dst_port: 443,
        src_port: 50000,
        bytes_sent: 1200,
        bytes_received: 3400,
        ..FlowRecord::default()
    };
    rec.dst_addr[..4].copy_from_slice(&[203, 0, 113, 7]);
    rec.comm[..4].copy_from_slice(b"curl");
    let info = crate::enrich::ProcessInfo {
        ppid: Some(99),
        exe: Some("/usr/bin/curl".into()),
        cmdline: Some("curl https://x".into()),
        ..Default::default()
    };
    let id = Identity {
        info: Arc::new(info),
        parent_exe: Some("/usr/bin/bash".into()),
        ancestors: vec!["/usr/bin/bash".into(), "/usr/lib/systemd/systemd".into()],
        unknown: None,
        workload: None,
    };
    let ev = FlowEvent::from_record(EventKind::Close, &rec, &id, &clock());
    let json: serde_json::Value = serde_json::to_value(&ev).unwrap();
    assert_eq!(json["ts"], "2026-11-28T00:00:05Z");
    assert_eq!(json["kind"], "close");
    assert_eq!(json["pid"], 100);
    assert_eq!(json["tgid"], 100);
    assert_eq!(json["tid"], 101);
    assert_eq!(json["comm"], "curl");
    assert_eq!(json["exe"], "/usr/bin/curl");
    assert_eq!(json["ppid"], 99);
    assert_eq!(json["parent_exe"], "/usr/bin/bash");
    assert_eq!(json["ancestors"][1], "/usr/lib/systemd/systemd");
    assert_eq!(json["proto"], "tcp");
    assert_eq!(json["family"], "ipv4");
    assert_eq!(json["dst_ip"], "203.0.113.7");
    assert_eq!(json["dst_port"], 443);
    assert_eq!(json["src_port"], 50000);
    assert_eq!(json["bytes_sent"], 1200);
    assert_eq!(json["bytes_received"], 3400);
    assert_eq!(json["was_established"], true);
    assert!(json.get("count").is_none());
    assert_eq!(json["container_id"], serde_json::Value::Null);
}

#[test]
fn udp_send_ipv6_and_mapped_addresses() {
    let mut rec = FlowRecord {
        kind: RecordKind::Send as u32,
        family: AF_INET6,
        protocol: IPPROTO_UDP,
        count: 1,
        dst_port: 53,
        ..FlowRecord::default()
    };
    rec.dst_addr = "2001:db8::53".parse::<Ipv6Addr>().unwrap().octets();
    let ev = FlowEvent::from_record(EventKind::Send, &rec, &Identity::default(), &clock());
    assert_eq!(ev.dst_ip.to_string(), "2001:db8::53");
    assert_eq!(ev.family, Family::Ipv6);
    assert_eq!(ev.proto, Proto::Udp);
    assert_eq!(ev.count, Some(1));
    assert_eq!(ev.src_port, None);
    assert_eq!(ev.bytes_sent, None);

    rec.dst_addr = "::ffff:192.0.2.1".parse::<Ipv6Addr>().unwrap().octets();
    assert_eq!(dst_ip(&rec).to_string(), "192.0.2.1");
}

#[test]
fn loss_event_json() {
    let ev = Event::Loss(LossEvent {
        ts: "2026-11-28T00:00:00Z".into(),
        ts_unix_ns: 1_795_824_000_000_000_000,
        kind: EventKind::Loss,
        lost: 12,
    });
    assert_eq!(
        serde_json::to_string(&ev).unwrap(),
        r#"{"ts":"2026-11-28T00:00:00Z","kind":"loss","lost":12}"#
    );
}

#[test]
fn comm_stops_at_nul() {
    let mut c = [0u8; 16];
    c[..7].copy_from_slice(b"python3");
    assert_eq!(comm_string(&c), "python3");
    assert_eq!(comm_string(&[b'a'; 16]), "a".repeat(16));
}
