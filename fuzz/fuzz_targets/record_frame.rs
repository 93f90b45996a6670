//! The recording protocol (`codext-record/src/proto.rs`) on an arbitrary
//! byte stream, as the helper reads it from a recorder: frame after frame
//! into one buffer, each decoded as a recorder's message and as a helper's.
//! Checks that nothing panics, that the buffer never grows past MAX_FRAME,
//! that a frame is exactly the announced slice, and that every message
//! decoded encodes back to the same bytes (what the helper writes into a
//! record's tail segments and reads back).
#![no_main]

use codext_record::proto::{read_frame, ProtoError, ToHelper, ToRecorder, MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut stream: &[u8] = data;
    let mut buf = Vec::with_capacity(MAX_FRAME);
    loop {
        let before = stream;
        match read_frame(&mut stream, &mut buf) {
            Ok(body) => {
                let n = u32::from_be_bytes([before[0], before[1], before[2], before[3]]) as usize;
                assert!((1..=MAX_FRAME).contains(&n));
                assert_eq!(body, &before[4..4 + n]);
                let body = body.to_vec();
                if let Ok(msg) = ToHelper::decode(&body) {
                    let mut again = Vec::new();
                    msg.encode(&mut again);
                    assert_eq!(ToHelper::decode(&again).ok(), Some(msg));
                }
                if let Ok(msg) = ToRecorder::decode(&body) {
                    assert_eq!(ToRecorder::decode(&msg.encode()).ok(), Some(msg));
                }
            }
            Err(ProtoError::Io(e)) => panic!("a byte slice gave an I/O error: {e}"),
            Err(_) => break,
        }
        assert!(buf.capacity() <= MAX_FRAME, "the frame buffer grew to {}", buf.capacity());
    }
});
