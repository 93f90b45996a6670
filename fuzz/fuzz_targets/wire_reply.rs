//! `Reply::decode` on arbitrary bytes (what the PAM module reads from the
//! helper). A reply that decodes must encode back to exactly the input and
//! decode again to an equal reply.
#![no_main]

use codext_wire::Reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(reply) = Reply::decode(data) else {
        return;
    };
    let encoded = reply.encode();
    let back = Reply::decode(&encoded).expect("an encoded reply must decode");
    assert_eq!(format!("{back:?}"), format!("{reply:?}"));
    assert_eq!(back, reply);
    assert_eq!(encoded.as_slice(), data, "encode() does not round-trip");
});
