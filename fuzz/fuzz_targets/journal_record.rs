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
        if let (Event::Flow(f), Ok(Some(v))) = (event, &view) {
            assert_eq!((v.pid, v.cookie, v.dst_port), (f.pid, f.cookie, f.dst_port));
            assert_eq!(v.names, f.names);
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
