//! `Request::decode_any` on arbitrary bytes (what the helper reads from the
//! PAM module's socket: protocol version 2, or version 1 from a module of
//! the previous release). Decoding is strict, so a request that decodes
//! must encode back, in its version and with its claimed pid, to exactly
//! the input, and decode again to an equal request (compared by `Debug`,
//! which hides the password; the byte comparison covers the password). The
//! current-version decoder must agree with it.
#![no_main]

use codext_wire::{Request, PROTOCOL_VERSION, PROTOCOL_VERSION_1};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let strict = Request::decode(data);
    let Ok(got) = Request::decode_any(data) else {
        assert!(strict.is_err(), "decode accepts what decode_any refuses");
        return;
    };
    assert_eq!(strict.is_ok(), got.version == PROTOCOL_VERSION);
    let req = &got.request;
    let _ = req.kind_name();
    let encoded = if got.version == PROTOCOL_VERSION_1 {
        req.encode_v1(got.claimed_pid.unwrap_or(0))
    } else {
        assert_eq!(got.claimed_pid, None, "a version-2 request carried a pid");
        req.encode()
    }
    .expect("a decoded request must encode");
    let back = Request::decode_any(&encoded).expect("an encoded request must decode");
    assert_eq!(format!("{:?}", back.request), format!("{req:?}"));
    assert_eq!(back.claimed_pid, got.claimed_pid);
    assert_eq!(encoded.as_slice(), data, "encode() does not round-trip");
});
