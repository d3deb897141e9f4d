use crate::*;

fn record(kind: u32) -> FlowRecord {
    let mut r = FlowRecord {
        kind,
        family: AF_INET,
        protocol: IPPROTO_TCP,
        ts_ns: 42,
        pid: 7,
        tgid: 7,
        cookie: 99,
        dst_port: 443,
        ..FlowRecord::default()
    };
    r.dst_addr[..4].copy_from_slice(&[192, 0, 2, 1]);
    r
}

#[test]
fn decodes_every_known_kind() {
    for (raw, kind) in [
        (1, RecordKind::Connect),
        (2, RecordKind::Send),
        (3, RecordKind::Established),
        (4, RecordKind::Close),
        (5, RecordKind::UdpRelease),
    ] {
        let r = record(raw);
        let d = Decoded::try_from(r.as_bytes()).unwrap();
        assert_eq!(d.kind, kind);
        assert_eq!(d.record, r);
    }
}

#[test]
fn packet_records_decode_with_their_payload() {
    let mut bytes = [0u8; PACKET_HEADER_SIZE + 300];
    bytes[..4].copy_from_slice(&6u32.to_ne_bytes());
    bytes[4..6].copy_from_slice(&AF_INET.to_ne_bytes());
    bytes[6] = IPPROTO_UDP;
    bytes[16..24].copy_from_slice(&77u64.to_ne_bytes());
    bytes[32..36].copy_from_slice(&[192, 0, 2, 53]);
    bytes[48..50].copy_from_slice(&53u16.to_ne_bytes());
    bytes[52..56].copy_from_slice(&3u32.to_ne_bytes());
    bytes[56..60].copy_from_slice(&3u32.to_ne_bytes());
    bytes[64..67].copy_from_slice(b"abc");
    let Record::Packet(p) = Record::try_from(&bytes[..]).unwrap() else {
        panic!()
    };
    assert_eq!(
        (p.kind, p.cgroup_id, p.peer_port, p.data),
        (RecordKind::DnsResponse, 77, 53, &b"abc"[..])
    );
    // A data_len beyond what the record holds is truncation, not an overread.
    bytes[52..56].copy_from_slice(&1000u32.to_ne_bytes());
    assert_eq!(
        Record::try_from(&bytes[..]),
        Err(DecodeError::Truncated { len: bytes.len() })
    );
    assert_eq!(
        Record::try_from(&bytes[..10]),
        Err(DecodeError::Truncated { len: 10 })
    );
    // Flow kinds still decode as flows.
    let flow = record(1);
    assert!(matches!(
        Record::try_from(flow.as_bytes()),
        Ok(Record::Flow(_))
    ));
}

#[test]
fn unknown_kinds_are_rejected_not_transmuted() {
    for raw in [0, 17, 0xdead_beef] {
        assert_eq!(
            Decoded::try_from(record(raw).as_bytes()),
            Err(DecodeError::UnknownKind(raw))
        );
    }
}

#[test]
fn truncated_records_are_rejected() {
    let r = record(1);
    for len in [0, 4, FLOW_RECORD_SIZE - 1] {
        assert_eq!(
            Decoded::try_from(&r.as_bytes()[..len]),
            Err(DecodeError::Truncated { len })
        );
    }
}

#[test]
fn decodes_from_an_unaligned_buffer() {
    let r = record(3);
    let mut buf = [0u8; FLOW_RECORD_SIZE + 1];
    buf[1..].copy_from_slice(r.as_bytes());
    assert_eq!(Decoded::try_from(&buf[1..]).unwrap().record, r);
}

#[test]
fn layout_is_the_wire_contract() {
    assert_eq!(core::mem::offset_of!(FlowRecord, ts_ns), 8);
    assert_eq!(core::mem::offset_of!(FlowRecord, cgroup_id), 32);
    assert_eq!(core::mem::offset_of!(FlowRecord, dst_addr), 48);
    assert_eq!(core::mem::offset_of!(FlowRecord, comm), 88);
    assert_eq!(size_of::<SendKey>(), 32);
    assert_eq!(core::mem::offset_of!(ProcessRecord, cgroup_id), 32);
    assert_eq!(core::mem::offset_of!(ProcessRecord, comm), 40);
    assert_eq!(core::mem::offset_of!(ProcessRecord, path_len), 56);
    assert_eq!(core::mem::offset_of!(ProcessRecord, path), 64);
}

#[test]
fn process_records_decode_with_their_path() {
    let mut bytes = [0u8; PROCESS_RECORD_SIZE];
    bytes[..4].copy_from_slice(&11u32.to_ne_bytes());
    bytes[16..20].copy_from_slice(&4242u32.to_ne_bytes());
    bytes[32..40].copy_from_slice(&77u64.to_ne_bytes());
    bytes[40..44].copy_from_slice(b"curl");
    bytes[56..60].copy_from_slice(&13u32.to_ne_bytes());
    bytes[64..77].copy_from_slice(b"/usr/bin/curl");
    let Record::Process(p) = Record::try_from(&bytes[..]).unwrap() else {
        panic!()
    };
    assert_eq!(
        (p.kind, p.tgid, p.cgroup_id, p.path, p.path_truncated),
        (RecordKind::Exec, 4242, 77, &b"/usr/bin/curl"[..], false)
    );
    // A path length beyond the record is clamped, never an overread.
    bytes[56..60].copy_from_slice(&100_000u32.to_ne_bytes());
    let Record::Process(p) = Record::try_from(&bytes[..]).unwrap() else {
        panic!()
    };
    assert_eq!(p.path.len(), PROCESS_PATH_LEN);
    assert_eq!(
        Record::try_from(&bytes[..100]),
        Err(DecodeError::Truncated { len: 100 })
    );
}
