//! The text encodings codext uses.
//!
//! Puzzles and passwords use lowercase RFC 4648 base32 without padding: it
//! is URL-safe, a valid DigitalOcean tag (`[a-z0-9]`), a valid hostname
//! label, and *case-free*, so a channel that ignores or changes case (tag
//! identity ignores case) cannot corrupt it. Decoding is strict: uppercase,
//! padding, whitespace and non-canonical trailing bits are all refused.

use data_encoding::{Encoding, Specification};
use std::sync::OnceLock;

fn base32_lower() -> &'static Encoding {
    static ENC: OnceLock<Encoding> = OnceLock::new();
    ENC.get_or_init(|| {
        let mut spec = Specification::new();
        spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
        spec.check_trailing_bits = true;
        // The specification is a constant known to be valid; a failure here
        // would be a programming error caught by every test.
        spec.encoding()
            .unwrap_or_else(|_| data_encoding::BASE32_NOPAD.clone())
    })
}

/// Encodes as lowercase unpadded base32.
pub fn b32_encode(bytes: &[u8]) -> String {
    base32_lower().encode(bytes)
}

/// Decodes lowercase unpadded base32, strictly.
pub fn b32_decode(text: &str) -> Option<Vec<u8>> {
    base32_lower().decode(text.as_bytes()).ok()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// Strict lowercase hex decoding.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    data_encoding::HEXLOWER.decode(text.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_bytes_then_base32_round_trips_lowercase() {
        let t = b32_encode(b"\x00\xffcodext");
        assert_eq!(t, t.to_lowercase());
        assert_eq!(b32_decode(&t).unwrap(), b"\x00\xffcodext");
    }

    #[test]
    fn given_uppercase_padding_or_noise_then_decode_refuses() {
        let t = b32_encode(b"codext");
        assert!(b32_decode(&t.to_uppercase()).is_none());
        assert!(b32_decode(&format!("{t}=")).is_none());
        assert!(b32_decode(&format!(" {t}")).is_none());
        assert!(b32_decode("b").is_none());
    }
}
