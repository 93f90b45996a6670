//! Frames the channel process sends the root helper on the channel socket
//! (the channel is internet-facing: treat it as compromised): decoding
//! never panics, a decoded request encodes back to itself, and a refusal
//! is always "malformed" or "unknown verb".
#![no_main]

use codext_core::channel_wire::{ChannelRequest, Refusal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ChannelRequest::decode(data) {
        Ok(req) => assert_eq!(ChannelRequest::decode(&req.encode()).ok(), Some(req)),
        Err((code, _)) => assert!(matches!(code, Refusal::Malformed | Refusal::UnknownVerb)),
    }
});
