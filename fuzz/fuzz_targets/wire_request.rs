//! `Request::decode` on arbitrary bytes (what the helper reads from the PAM
//! module's socket). Decoding is strict, so a request that decodes must
//! encode back to exactly the input, and decode again to an equal request
//! (compared by `Debug`, which hides the password; the byte comparison
//! covers the password).
#![no_main]

use codext_wire::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = Request::decode(data) else {
        return;
    };
    let _ = req.kind_name();
    let encoded = req.encode().expect("a decoded request must encode");
    let back = Request::decode(&encoded).expect("an encoded request must decode");
    assert_eq!(format!("{back:?}"), format!("{req:?}"));
    assert_eq!(encoded.as_slice(), data, "encode() does not round-trip");
});
