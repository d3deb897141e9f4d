//! Any bytes as a journal record payload and as a segment: decoding gives an event or an
//! error, never a panic; a record that decodes re-encodes to a record that decodes to the same
//! event; the zero-copy view agrees with the full decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sovereign_agent::{
    event::Event,
    journal::{convert, format},
};

fuzz_target!(|data: &[u8]| {
    let decoded = convert::decode(data);
    let view = convert::flow_view(data);
    if let Ok(event) = &decoded {
        let mut again = Vec::new();
        convert::encode(event, &mut again);
        let back = convert::decode(&again).expect("what we encode decodes");
        assert_eq!(&back, event);
        // What replay judges is what export shows.
        match (event, &view) {
            (Event::Flow(f), Ok(Some(v))) => {
                assert_eq!(
                    (v.ts_unix_ns, v.pid, v.uid, v.cookie),
                    (f.ts_unix_ns, f.pid, f.uid, f.cookie)
                );
                assert_eq!((v.dst_ip, v.dst_port), (Some(f.dst_ip), f.dst_port));
                assert_eq!((v.comm, v.exe), (f.comm.as_str(), f.exe.as_deref()));
                assert_eq!(v.names, f.names);
                assert_eq!(
                    v.verdict.as_ref().map(|x| (x.rule, x.policy_hash)),
                    f.verdict
                        .as_ref()
                        .map(|x| (x.rule.as_str(), x.policy.hash.as_str()))
                );
            }
            (Event::Flow(_), _) => panic!("a flow the view cannot read: {view:?}"),
            (_, Ok(Some(_))) => panic!("the view sees a flow in {event:?}"),
            _ => {}
        }
    }
    // As a segment file: header, then frames until the first error.
    if format::SegmentHeader::decode(data).is_ok() {
        let mut off = format::HEADER_LEN;
        while off < data.len() {
            match format::decode_frame(&data[off..]) {
                Ok(f) => off += f.bytes.len(),
                Err(_) => break,
            }
        }
    }
});
