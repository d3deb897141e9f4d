//! Round trips, tamper detection and crash recovery of the journal (no root needed).
use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::{
    format::{self, HEADER_LEN},
    reader, verify, FsyncPolicy, JournalOptions, JournalWriter,
};
use crate::{
    clock::rfc3339_from_unix_ns,
    event::{Event, EventKind, Family, FlowEvent, Lifecycle, LifecycleEvent, LossEvent, Proto},
    policy::{Decision, Evidence, Explanation, PolicyRef, Severity},
};

pub fn sample_flow(i: u64) -> FlowEvent {
    let ts_unix_ns = 1_795_824_000_000_000_000 + i as i64 * 1_000_003;
    FlowEvent {
        ts: rfc3339_from_unix_ns(i128::from(ts_unix_ns)),
        ts_unix_ns,
        kind: [
            EventKind::Connect,
            EventKind::Send,
            EventKind::Established,
            EventKind::Close,
        ][i as usize % 4],
        pid: 1000 + (i % 7) as u32,
        tgid: 1000 + (i % 7) as u32,
        tid: 2000,
        uid: 0,
        gid: 0,
        comm: "python3".into(),
        exe: (!i.is_multiple_of(5)).then(|| "/usr/bin/python3.11".into()),
        cmdline: Some(format!("python3 crm_sync.py --batch {i}").into()),
        exec_path: (i.is_multiple_of(3)).then(|| "./crm_sync.py".into()),
        interpreter: (i.is_multiple_of(3)).then(|| "/usr/bin/python3.11".into()),
        ppid: (!i.is_multiple_of(5)).then_some(1),
        parent_exe: (i.is_multiple_of(2)).then(|| "/usr/lib/systemd/systemd".into()),
        ancestors: if i.is_multiple_of(2) {
            vec!["/usr/lib/systemd/systemd".into()]
        } else {
            Vec::new()
        },
        identity: i.is_multiple_of(5).then_some("exited_before_read"),
        cgroup_id: 4242,
        cgroup: Some("/system.slice/crm-sync.service".into()),
        container_id: None,
        container_runtime: (i.is_multiple_of(3)).then_some("containerd"),
        pod_uid: None,
        systemd_unit: Some("crm-sync.service".into()),
        cookie: 77 + i,
        proto: if i % 4 == 1 { Proto::Udp } else { Proto::Tcp },
        family: if i.is_multiple_of(2) {
            Family::Ipv4
        } else {
            Family::Ipv6
        },
        dst_ip: if i.is_multiple_of(2) {
            IpAddr::from([203, 0, 113, (i % 250) as u8])
        } else {
            "2001:db8::17".parse().unwrap()
        },
        dst_port: 443,
        src_port: (i % 4 == 3).then_some(50_000),
        bytes_sent: (i % 4 == 3).then_some(1234 * i),
        bytes_received: (i % 4 == 3).then_some(99),
        count: (i % 4 == 1).then_some(1),
        was_established: (i % 4 == 3).then_some(true),
        owner_evicted: i % 8 == 7,
        names: vec!["api.openai.com".into()],
        name_source: if i.is_multiple_of(3) {
            "dns+sni"
        } else {
            "dns"
        },
        name_conflict: i.is_multiple_of(11),
        dns: vec![crate::names::DnsChain {
            names: vec!["api.openai.com".into()],
            resolver: "127.0.0.53:53".into(),
            verified: !i.is_multiple_of(7),
        }],
        sni: i.is_multiple_of(3).then(|| "api.openai.com".into()),
        sni_unreadable: i
            .is_multiple_of(13)
            .then_some("split into more segments than are copied"),
        verdict: (i.is_multiple_of(2)).then(|| Explanation {
            decision: Decision::Violation,
            severity: Some(Severity::High),
            rule: "llm-hosts".into(),
            zones: vec!["external-ai".into()],
            matched_zones: vec!["external-ai".into()],
            evidence: vec![Evidence {
                zone: "external-ai".into(),
                decisive: true,
                source: "ai",
                via: "dns",
                name: Some("api.openai.com".into()),
                detail:
                    "AI endpoint api.openai.com of openai (region global) [catalogue 2026.11.28]"
                        .into(),
            }],
            destination: vec!["country US".into()],
            weak: vec!["shared_range"],
            policy: PolicyRef {
                name: "eu-only".into(),
                version: "3".into(),
                hash: "sha256:00ff".into(),
            },
        }),
        aggregated: i.is_multiple_of(17).then(|| crate::event::Aggregated {
            flows: i + 2,
            first: rfc3339_from_unix_ns(i128::from(ts_unix_ns) - 5_000_000),
            first_unix_ns: ts_unix_ns - 5_000_000,
        }),
    }
}

pub fn sample_event(i: u64) -> Event {
    match i % 50 {
        7 => Event::Loss(LossEvent {
            ts: rfc3339_from_unix_ns(1_795_824_000_000_000_000),
            ts_unix_ns: 1_795_824_000_000_000_000,
            kind: EventKind::Loss,
            lost: i,
        }),
        13 => Event::Lifecycle(Box::new(LifecycleEvent {
            ts: rfc3339_from_unix_ns(1_795_824_000_000_000_001),
            ts_unix_ns: 1_795_824_000_000_000_001,
            body: Lifecycle::Policy {
                name: "eu-only".into(),
                version: "3".into(),
                hash: "sha256:00ff".into(),
                path: "/etc/sovereign-agent/policy.toml".into(),
                datasets: vec![crate::event::DatasetVersion {
                    kind: "aws".into(),
                    version: "1795000000".into(),
                    path: "/var/lib/sovereign-agent/datasets/ip-ranges.json".into(),
                }],
                catalogue_version: Some("2026.11.28".into()),
            },
        })),
        43 => Event::DnsRefused(Box::new(crate::event::DnsRefusedEvent {
            ts: rfc3339_from_unix_ns(1_795_824_000_000_000_002),
            ts_unix_ns: 1_795_824_000_000_000_002,
            kind: "dns_refused",
            reason: "no_query",
            cgroup_id: 4242,
            cgroup: Some("/system.slice/crm-sync.service".into()),
            pid: 1000,
            comm: "python3".into(),
            exe: None,
            cookie: 9,
            resolver: "127.0.0.53:53".into(),
            client_port: 40000,
            question: Some("llm.sovereign.example".into()),
            names: vec!["llm.sovereign.example".into()],
            addresses: vec![IpAddr::from([203, 0, 113, 99])],
            count: i,
        })),
        29 => {
            let flow = sample_flow(i);
            Event::Flood(Box::new(crate::event::FloodEvent {
                ts: flow.ts.clone(),
                ts_unix_ns: flow.ts_unix_ns,
                kind: "flood",
                scope: "process",
                suppressed: crate::event::Suppressed {
                    tcp_connects: 1,
                    udp: i,
                    dns_packets: 3,
                    tls_segments: 4,
                    process_records: 5,
                },
                first: rfc3339_from_unix_ns(i128::from(flow.ts_unix_ns) - 1_000_000_000),
                last: flow.ts.clone(),
                first_unix_ns: flow.ts_unix_ns - 1_000_000_000,
                last_unix_ns: flow.ts_unix_ns,
                flow: Box::new(flow),
            }))
        }
        _ => Event::Flow(Box::new(sample_flow(i))),
    }
}

pub fn options(dir: &Path) -> JournalOptions {
    JournalOptions {
        segment_max_bytes: 8 * 1024,
        retention_max_age: None,
        retention_max_bytes: None,
        // Fast tests: syncs only where the format needs them (rotation, checkpoint, close).
        fsync: FsyncPolicy::Never,
        checkpoint_interval: Duration::from_secs(3600),
        ..JournalOptions::new(dir)
    }
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// Writes `n` sample events in batches of varied sizes; returns them.
fn write(opts: JournalOptions, from: u64, n: u64) -> Vec<Event> {
    let (mut w, _) = JournalWriter::open(opts).unwrap();
    let events: Vec<Event> = (from..from + n).map(sample_event).collect();
    let mut i = 0;
    let mut size = 1;
    while i < events.len() {
        let end = (i + size).min(events.len());
        w.append(&events[i..end]).unwrap();
        i = end;
        size = size % 37 + 3;
    }
    w.close().unwrap();
    events
}

fn read_all(dir: &Path) -> Vec<(u64, Event)> {
    let mut out = Vec::new();
    reader::for_each_event(
        dir,
        |_| {},
        |seq, e| {
            out.push((seq, e));
            Ok(())
        },
    )
    .unwrap();
    out
}

fn problem(dir: &Path, key: Option<&SigningKey>) -> Option<String> {
    let vk = key.map(SigningKey::verifying_key);
    match verify::verify(dir, vk.as_ref()) {
        Ok(r) => r
            .problem
            .map(|p| format!("{}@{}: {}", p.file.display(), p.offset, p.message)),
        Err(e) => Some(e.to_string()),
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    super::writer::list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// Byte ranges of the frames of a segment file.
fn frames(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut off = HEADER_LEN;
    while off < bytes.len() {
        let f = format::decode_frame(&bytes[off..]).unwrap();
        out.push(off..off + f.bytes.len());
        off += f.bytes.len();
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "LOCK" {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn round_trip_across_rotations_and_reopen() {
    let t = tmp();
    let dir = t.path().join("j");
    let mut expected = write(options(&dir), 0, 700);
    assert!(segment_files(&dir).len() >= 5, "small segments rotate");
    expected.extend(write(options(&dir), 700, 300));
    let got = read_all(&dir);
    assert_eq!(got.len(), 1000);
    for (i, (seq, event)) in got.iter().enumerate() {
        assert_eq!(*seq, i as u64);
        assert_eq!(event, &expected[i], "record {i}");
    }
    let report = verify::verify(&dir, None).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!((report.records, report.next_seq), (1000, 1000));
}

#[test]
fn export_json_equals_live_json() {
    for i in 0..8 {
        let e = sample_event(i);
        let mut buf = Vec::new();
        super::convert::encode(&e, &mut buf);
        let back = super::convert::decode(&buf).unwrap();
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            serde_json::to_string(&e).unwrap()
        );
    }
}

/// A signed journal of several segments, for the tamper tests.
fn signed_journal(dir: &Path) {
    let opts = JournalOptions {
        signing_key: Some(key(1)),
        ..options(dir)
    };
    write(opts, 0, 400);
}

#[test]
fn every_kind_of_tampering_is_detected() {
    let t = tmp();
    let base = t.path().join("base");
    signed_journal(&base);
    assert_eq!(problem(&base, Some(&key(1))), None);
    let segs = segment_files(&base);
    assert!(segs.len() >= 4);
    let names: Vec<_> = segs
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    let middle = names[1].clone();
    let last = names[names.len() - 1].clone();

    type Mutation = Box<dyn Fn(&Path)>;
    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let edit = |name: std::ffi::OsString, f: Edit| -> Mutation {
        Box::new(move |d: &Path| {
            let p = d.join(&name);
            let mut b = fs::read(&p).unwrap();
            f(&mut b);
            fs::write(&p, b).unwrap();
        })
    };
    let mut cases: Vec<(&str, Mutation)> = vec![
        (
            "drop a record of a sealed segment",
            edit(
                middle.clone(),
                Box::new(|b| {
                    let r = frames(b)[3].clone();
                    b.drain(r);
                }),
            ),
        ),
        (
            "drop the last record of a sealed segment",
            edit(
                middle.clone(),
                Box::new(|b| {
                    let r = frames(b).last().unwrap().clone();
                    b.drain(r);
                }),
            ),
        ),
        (
            "swap two records",
            edit(
                middle.clone(),
                Box::new(|b| {
                    let f = frames(b);
                    let (a, c) = (b[f[2].clone()].to_vec(), b[f[3].clone()].to_vec());
                    let mut out = b[..f[2].start].to_vec();
                    out.extend(&c);
                    out.extend(&a);
                    out.extend(&b[f[3].end..]);
                    *b = out;
                }),
            ),
        ),
        (
            "edit a record and fix its CRC (sealed segment)",
            edit(
                middle.clone(),
                Box::new(|b| {
                    let r = frames(b)[4].clone();
                    let seq = u64::from_le_bytes(b[r.start + 8..r.start + 16].try_into().unwrap());
                    let mut payload = b[r.start + 16..r.end].to_vec();
                    let n = payload.len();
                    payload[n / 2] ^= 0x01;
                    let mut f = Vec::new();
                    format::encode_frame(&mut f, seq, &payload);
                    b.splice(r, f);
                }),
            ),
        ),
        (
            "edit a record and fix its CRC (open segment)",
            edit(
                last.clone(),
                Box::new(|b| {
                    let r = frames(b)[0].clone();
                    let seq = u64::from_le_bytes(b[r.start + 8..r.start + 16].try_into().unwrap());
                    let mut payload = b[r.start + 16..r.end].to_vec();
                    payload[2] ^= 0x01;
                    let mut f = Vec::new();
                    format::encode_frame(&mut f, seq, &payload);
                    b.splice(r, f);
                }),
            ),
        ),
        (
            "truncate the open segment at a record boundary",
            edit(
                last.clone(),
                Box::new(|b| {
                    let r = frames(b).last().unwrap().clone();
                    b.truncate(r.start);
                }),
            ),
        ),
        (
            "truncate the open segment mid-record",
            edit(
                last.clone(),
                Box::new(|b| {
                    let n = b.len();
                    b.truncate(n - 5);
                }),
            ),
        ),
        (
            "truncate a sealed segment at a record boundary",
            edit(
                middle.clone(),
                Box::new(|b| {
                    let r = frames(b)[5].clone();
                    b.truncate(r.start);
                }),
            ),
        ),
        (
            "empty the open segment",
            edit(last.clone(), Box::new(|b| b.truncate(HEADER_LEN))),
        ),
        ("delete a middle segment", {
            let m = middle.clone();
            Box::new(move |d: &Path| fs::remove_file(d.join(&m)).unwrap())
        }),
        ("delete the first segment", {
            let m = names[0].clone();
            Box::new(move |d: &Path| fs::remove_file(d.join(&m)).unwrap())
        }),
        ("delete the last segment", {
            let m = last.clone();
            Box::new(move |d: &Path| fs::remove_file(d.join(&m)).unwrap())
        }),
        (
            "delete HEAD",
            Box::new(|d: &Path| fs::remove_file(d.join("HEAD")).unwrap()),
        ),
        (
            "re-sign with another key",
            Box::new(|d: &Path| {
                for p in segment_files(d) {
                    let mut b = fs::read(&p).unwrap();
                    let mut h = format::SegmentHeader::decode(&b).unwrap();
                    if h.segment > 0 {
                        let m = format::seal_message(h.segment - 1, h.first_seq, &h.prev_head);
                        use ed25519_dalek::Signer;
                        h.prev_signature = Some(key(2).sign(&m).to_bytes());
                        b[..HEADER_LEN].copy_from_slice(&h.encode());
                        fs::write(&p, b).unwrap();
                    }
                }
            }),
        ),
    ];
    // A segment with the same index from another journal (same key, same events).
    let other = t.path().join("other");
    write(
        JournalOptions {
            signing_key: Some(key(1)),
            ..options(&other)
        },
        5,
        400,
    );
    {
        let m = middle.clone();
        let other = other.clone();
        cases.push((
            "replace a middle segment",
            Box::new(move |d: &Path| {
                fs::copy(other.join(&m), d.join(&m)).unwrap();
            }),
        ));
    }
    for (i, (what, mutate)) in cases.iter().enumerate() {
        let d = t.path().join(format!("case{i}"));
        copy_dir(&base, &d);
        mutate(&d);
        let found = problem(&d, Some(&key(1)));
        assert!(found.is_some(), "not detected: {what}");
        if *what != "re-sign with another key" {
            assert!(
                problem(&d, None).is_some(),
                "not detected without a key: {what}"
            );
        }
    }
}

#[test]
fn every_single_byte_flip_is_detected() {
    let t = tmp();
    let base = t.path().join("base");
    let opts = JournalOptions {
        signing_key: Some(key(1)),
        segment_max_bytes: 2048,
        ..options(&base)
    };
    write(opts, 0, 40);
    let mut files = segment_files(&base);
    files.push(base.join("HEAD"));
    let d = t.path().join("flip");
    copy_dir(&base, &d);
    let mut checked = 0;
    for f in &files {
        let name = f.file_name().unwrap();
        let original = fs::read(f).unwrap();
        for i in 0..original.len() {
            let mut b = original.clone();
            b[i] ^= 0x20;
            fs::write(d.join(name), &b).unwrap();
            assert!(
                problem(&d, Some(&key(1))).is_some(),
                "flip of byte {i} of {name:?} not detected"
            );
            checked += 1;
        }
        fs::write(d.join(name), &original).unwrap();
    }
    assert!(checked > 4000, "{checked}");
    assert_eq!(problem(&d, Some(&key(1))), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn random_flips_are_detected(file in 0usize..8, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let t = tmp();
        let d = t.path().join("j");
        write(options(&d), 0, 120);
        let mut files = segment_files(&d);
        files.push(d.join("HEAD"));
        let f = &files[file % files.len()];
        let mut b = fs::read(f).unwrap();
        let i = pos.index(b.len());
        b[i] ^= 1 << bit;
        fs::write(f, &b).unwrap();
        prop_assert!(problem(&d, None).is_some(), "flip {i}/{bit} of {f:?}");
    }
}

#[test]
fn torn_tail_is_cut_reported_and_appending_continues() {
    let t = tmp();
    for cut in [1usize, 5, 16, 17, 40, 200] {
        let d = t.path().join(format!("cut{cut}"));
        write(options(&d), 0, 30);
        let last = segment_files(&d).pop().unwrap();
        let mut b = fs::read(&last).unwrap();
        let f = frames(&b);
        let last_frame = f.last().unwrap().clone();
        let keep = (last_frame.end - cut).max(last_frame.start);
        b.truncate(keep.max(HEADER_LEN));
        fs::write(&last, &b).unwrap();
        let records_before = f.len() - 1;
        let (mut w, rec) = JournalWriter::open(options(&d)).unwrap();
        let rec = rec.expect("torn tail reported");
        assert_eq!(rec.offset, last_frame.start as u64);
        assert_eq!(rec.bytes_cut, (keep - last_frame.start) as u64);
        w.append(&[sample_event(1000)]).unwrap();
        w.close().unwrap();
        assert_eq!(problem(&d, None), None, "cut {cut}");
        let all = read_all(&d);
        assert!(all.iter().any(|(_, e)| matches!(e, Event::Lifecycle(l) if matches!(l.body, Lifecycle::JournalRecovered { .. }))));
        assert_eq!(all.last().unwrap().1, sample_event(1000));
        let _ = records_before;
    }
}

#[test]
fn a_tail_torn_after_the_checkpoint_is_a_crash_and_keeps_the_journal_id() {
    let t = tmp();
    let d = t.path().join("j");
    write(options(&d), 0, 30);
    let id = fs::read_to_string(d.join("journal.id")).unwrap();
    // Appended after the last checkpoint, then the process dies (no close, no checkpoint).
    let (mut w, _) = JournalWriter::open(options(&d)).unwrap();
    w.append(&[sample_event(100), sample_event(101)]).unwrap();
    w.sync().unwrap();
    drop(w);
    let last = segment_files(&d).pop().unwrap();
    let mut b = fs::read(&last).unwrap();
    let torn = b.len() - 5;
    b.truncate(torn);
    fs::write(&last, &b).unwrap();
    let (w, rec) = JournalWriter::open(options(&d)).unwrap();
    let rec = rec.expect("torn tail reported");
    assert!(!rec.below_checkpoint, "{rec:?}");
    assert_eq!((rec.records_removed, rec.set_aside), (0, None));
    w.close().unwrap();
    assert_eq!(fs::read_to_string(d.join("journal.id")).unwrap(), id);
    assert!(!d.join("damaged").exists());
    assert_eq!(problem(&d, None), None);
}

#[test]
fn torn_segment_header_is_rewritten() {
    let t = tmp();
    let d = t.path().join("j");
    write(options(&d), 0, 100);
    let segs = segment_files(&d);
    let n = segs.len() as u64;
    // A crash right after creating the next segment: only part of its header is there.
    let header = fs::read(&segs[0]).unwrap()[..HEADER_LEN].to_vec();
    fs::write(format::segment_path(&d, n), &header[..20]).unwrap();
    let (mut w, rec) = JournalWriter::open(options(&d)).unwrap();
    assert_eq!(rec.unwrap().segment, n);
    w.append(&[sample_event(5)]).unwrap();
    w.close().unwrap();
    assert_eq!(problem(&d, None), None);
}

#[test]
fn retention_deletes_oldest_segments_on_record() {
    let t = tmp();
    let d = t.path().join("j");
    let opts = JournalOptions {
        retention_max_bytes: Some(24 * 1024),
        signing_key: Some(key(1)),
        ..options(&d)
    };
    write(opts, 0, 1500);
    let segs = super::writer::list_segments(&d).unwrap();
    assert!(segs[0].0 > 0, "old segments deleted");
    let total: u64 = segs
        .iter()
        .map(|(_, p)| fs::metadata(p).unwrap().len())
        .sum();
    assert!(total <= 24 * 1024 + 9 * 1024, "{total}");
    let report = verify::verify(&d, Some(&key(1).verifying_key())).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.next_seq, read_all(&d).last().unwrap().0 + 1);
    // Deleting one more segment by hand is not accounted for by any record.
    fs::remove_file(&segs[0].1).unwrap();
    assert!(problem(&d, None).unwrap().contains("no retention record"));
}

#[test]
fn a_directory_that_is_not_a_journal() {
    let t = tmp();
    fs::write(t.path().join("notes.txt"), "hello").unwrap();
    let err = JournalWriter::open(options(t.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("not a journal directory") && err.contains("notes.txt"),
        "{err}"
    );
    let err = verify::verify(t.path(), None).err().unwrap().to_string();
    assert!(err.contains("notes.txt"), "{err}");
    let empty = t.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let err = verify::verify(&empty, None).err().unwrap().to_string();
    assert!(err.contains("no segment files"), "{err}");
}

#[test]
fn a_segment_from_a_newer_format_is_refused_by_name() {
    let t = tmp();
    let d = t.path().join("j");
    write(options(&d), 0, 10);
    let seg = segment_files(&d).pop().unwrap();
    let mut b = fs::read(&seg).unwrap();
    b[8..10].copy_from_slice(&2u16.to_le_bytes());
    fs::write(&seg, &b).unwrap();
    let err = JournalWriter::open(options(&d)).err().unwrap().to_string();
    assert!(
        err.contains("format version 2") && err.contains(&seg.display().to_string()),
        "{err}"
    );
    assert!(problem(&d, None).unwrap().contains("format version 2"));
}

#[test]
fn one_writer_at_a_time() {
    let t = tmp();
    let (w, _) = JournalWriter::open(options(t.path())).unwrap();
    let err = JournalWriter::open(options(t.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("in use by another process"), "{err}");
    drop(w);
    assert!(JournalWriter::open(options(t.path())).is_ok());
}

#[test]
fn fsync_policies_all_produce_valid_journals() {
    for fsync in [
        FsyncPolicy::Batch,
        FsyncPolicy::Interval(Duration::from_millis(5)),
        FsyncPolicy::Never,
    ] {
        let t = tmp();
        write(
            JournalOptions {
                fsync,
                ..options(t.path())
            },
            0,
            200,
        );
        assert_eq!(problem(t.path(), None), None);
    }
}

#[test]
fn the_head_moves_before_a_batch_goes_to_the_live_feed() {
    // A live reader takes the head as the journal's end (a sink's head check, a catch-up's
    // bound): a batch on the feed beyond the head looked like a forged claim to the collector.
    let d = tmp();
    let (mut w, _) = JournalWriter::open(options(d.path())).unwrap();
    let shared = super::recorder::JournalShared::of(&mut w);
    let mut live = shared.live.subscribe();
    for n in [1, 5, 2] {
        let before = shared.next_seq.load(std::sync::atomic::Ordering::Relaxed);
        let events: Vec<Event> = (0..n).map(sample_event).collect();
        w.append(&events).unwrap();
        let frames = live.try_recv().expect("published");
        assert_eq!(frames.first_seq, before);
        assert_eq!(
            shared.next_seq.load(std::sync::atomic::Ordering::Relaxed),
            before + n,
            "the head covers the batch once it is on the feed"
        );
    }
}
