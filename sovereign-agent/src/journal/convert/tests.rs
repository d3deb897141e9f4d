use super::*;
use crate::journal::tests::sample_event;
use crate::{
    event::{Event, FlowEvent},
    policy::Decision,
};

#[test]
fn hand_encoding_is_byte_identical_to_prost() {
    for i in 0..200 {
        let e = sample_event(i);
        let mut ours = Vec::new();
        encode(&e, &mut ours);
        let theirs = to_proto(&e, 0).encode_to_vec();
        assert_eq!(ours, theirs, "event {i}: {e:?}");
    }
}

#[test]
fn flow_view_reads_what_was_written() {
    for i in 0..60 {
        let e = sample_event(i);
        let mut b = Vec::new();
        encode(&e, &mut b);
        let view = flow_view(&b).unwrap();
        match &e {
            Event::Flow(f) => assert_view_matches(view.expect("a flow"), f),
            _ => assert!(view.is_none()),
        }
    }
    assert!(flow_view(&[0x52, 0x7f]).is_err(), "length past the end");
}

fn assert_view_matches(v: FlowView<'_>, f: &FlowEvent) {
    assert_eq!(v.ts_unix_ns, f.ts_unix_ns);
    assert_eq!((v.pid, v.uid, v.cookie), (f.pid, f.uid, f.cookie));
    assert_eq!(v.comm, f.comm);
    assert_eq!(v.exe, f.exe.as_deref());
    assert_eq!(v.cgroup, f.cgroup.as_deref());
    assert_eq!(v.container_runtime, f.container_runtime);
    assert_eq!(v.systemd_unit, f.systemd_unit.as_deref());
    assert_eq!((v.dst_ip, v.dst_port), (Some(f.dst_ip), f.dst_port));
    assert_eq!(v.names, f.names);
    assert_eq!(v.dns, f.dns);
    assert_eq!(v.sni(), f.sni.as_deref());
    assert_eq!(v.sni_unreadable, f.sni_unreadable.is_some());
    assert_eq!(v.ancestors, f.ancestors);
    assert_eq!(
        v.verdict
            .map(|x| (x.violation, x.rule.to_string(), x.policy_hash.to_string())),
        f.verdict.as_ref().map(|x| (
            x.decision == Decision::Violation,
            x.rule.clone(),
            x.policy.hash.clone()
        ))
    );
}

/// A sample flow with a destination port and a verdict (every field the view reads).
fn judged_flow() -> Event {
    (0..)
        .map(sample_event)
        .find(|e| matches!(e, Event::Flow(f) if f.dst_port != 0 && f.verdict.is_some()))
        .unwrap()
}

/// Found by the journal_record fuzz target: a record whose `flow` field occurs twice is,
/// to protobuf (and so to `journal export`), the merge of both; replay must judge the same
/// flow. Likewise the last member of the oneof wins.
#[test]
fn flow_view_merges_repeated_fields_as_protobuf_does() {
    let flow = judged_flow();
    let mut b = Vec::new();
    encode(&flow, &mut b);
    // A second `flow` (field 10) that only sets pid = 7 (field 2).
    let mut merged = b.clone();
    merged.extend_from_slice(&[0x52, 0x02, 0x10, 0x07]);
    let Event::Flow(f) = decode(&merged).unwrap() else {
        panic!("a flow")
    };
    assert_eq!(f.pid, 7);
    assert_view_matches(flow_view(&merged).unwrap().expect("a flow"), &f);
    // A `loss` (field 11) after the flow replaces it ...
    let mut loss = b.clone();
    loss.extend_from_slice(&[0x5a, 0x00]);
    assert!(matches!(decode(&loss).unwrap(), Event::Loss(_)));
    assert_eq!(flow_view(&loss).unwrap(), None);
    // ... and a flow after a loss replaces that.
    let mut back = vec![0x5a, 0x00];
    back.extend_from_slice(&b);
    let Event::Flow(f) = decode(&back).unwrap() else {
        panic!("a flow")
    };
    assert_view_matches(flow_view(&back).unwrap().expect("a flow"), &f);
}

/// Records an earlier build wrote.
mod recorded {
    use super::*;

    /// Records written by an earlier build of the agent still decode, to the same bytes.
    #[test]
    fn records_written_by_the_agent_decode_and_round_trip() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut kinds = Vec::new();
        for name in [
            "agent-start",
            "policy",
            "connect-verdict",
            "close",
            "agent-stop",
        ] {
            let bytes = std::fs::read(dir.join(format!("journal-record-{name}.bin"))).unwrap();
            let event = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut again = Vec::new();
            encode(&event, &mut again);
            assert_eq!(again, bytes, "{name} re-encodes identically");
            kinds.push(serde_json::to_value(&event).unwrap()["kind"].clone());
        }
        assert_eq!(
            kinds,
            ["agent_start", "policy", "connect", "close", "agent_stop"]
        );
    }
}

/// A start with a refused hook keeps what its flows lack through the journal.
#[test]
fn agent_start_with_a_refused_hook_round_trips_with_what_it_lacks() {
    use crate::event::{Lifecycle, LifecycleEvent};
    let start = Event::Lifecycle(Box::new(LifecycleEvent::now(Lifecycle::AgentStart {
        version: "0.1.0".into(),
        binary_hash: "sha256:00".into(),
        config_hash: "sha256:11".into(),
        config_path: None,
        hostname: "h".into(),
        cgroup: "/sys/fs/cgroup/x".into(),
        hooks: vec!["cgroup/connect4".into()],
        hooks_failed: vec!["sockops".into()],
        pid: 7,
        not_reported: vec!["sockops: TCP established/close events and byte counts".into()],
    })));
    let mut bytes = Vec::new();
    encode(&start, &mut bytes);
    let back = decode(&bytes).unwrap();
    assert_eq!(
        serde_json::to_value(&back).unwrap()["not_reported"],
        serde_json::json!(["sockops: TCP established/close events and byte counts"])
    );
    assert_eq!(back, start);
}

#[test]
fn flow_view_skips_groups_as_protobuf_does() {
    // Found by fuzzing (journal_record): empty groups of an unknown field 6 (start 0x33,
    // end 0x34) before a flow; the full decoder skips them, the view refused the record.
    let flow = judged_flow();
    let mut b = vec![0x33, 0x34, 0x33, 0x34];
    // And a group holding a varint, a nested group and a string.
    b.extend_from_slice(&[0x3b, 0x08, 0x01, 0x43, 0x44, 0x12, 0x01, b'x', 0x3c]);
    encode(&flow, &mut b);
    let Event::Flow(f) = decode(&b).unwrap() else {
        panic!("a flow")
    };
    assert_view_matches(flow_view(&b).unwrap().expect("a flow"), &f);
    // A group that does not end, or ends with another field's tag, is refused.
    assert!(flow_view(&[0x33, 0x08, 0x01]).is_err());
    assert!(flow_view(&[0x33, 0x3c]).is_err());
}
