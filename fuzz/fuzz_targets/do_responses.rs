//! DigitalOcean API response bodies (untrusted: they come over the network)
//! through the parsers the client uses: a droplet, a page of SSH keys, and
//! the tags of a parsed droplet through the channel's tag decoders.
#![no_main]

use codext_do::tags::Space;
use codext_do::models::{parse_droplet, parse_keys_page};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = std::str::from_utf8(data) else { return };
    if let Some(d) = parse_droplet(v) {
        let sp = Space::new(d.id);
        let _ = sp.collect_puzzles(&d.tags);
        let _ = sp.answers(&d.tags);
        let _ = sp.requests(&d.tags);
        let _ = codext_do::tags::Space3::new(d.id).collect_puzzles(&d.tags);
    }
    if let Some((keys, next)) = parse_keys_page(v) {
        for k in keys {
            let _ = codext_core::PublicKey::from_openssh(&k.public_key);
        }
        let _ = next;
    }
});
