//! The one-time token, its password text, and the two hashes derived from
//! it: the *login hash* the helper stores to check the SSH password, and the
//! *proof* the agent publishes as its answer.
//!
//! Both hashes are domain-separated SHA-256 over the user name (length-
//! prefixed) and the token, so neither can be replayed for another user or
//! mistaken for the other. The helper stores only these hashes, never the
//! token. Comparisons are constant-time (`subtle`).

use crate::encoding::{b32_decode, b32_encode};
use crate::error::Result;
use codext_wire::UserName;
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Token length in bytes.
pub const TOKEN_LEN: usize = 32;
/// Proof length in bytes (128 bits; 32 hex digits in the answer).
pub const PROOF_LEN: usize = 16;

const LOGIN_DOMAIN: &[u8] = b"codext login v1\0";
const PROOF_DOMAIN: &[u8] = b"codext answer v1\0";

/// A 32-byte one-time token. Wiped on drop; `Debug` prints `***`.
#[derive(Clone)]
pub struct Token(Zeroizing<[u8; TOKEN_LEN]>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

impl Token {
    /// 32 bytes from the OS random generator.
    pub fn generate() -> Result<Token> {
        // Filled in place, so no copy of the token is left on the stack.
        let mut t = Token(Zeroizing::new([0u8; TOKEN_LEN]));
        crate::random::fill(t.0.as_mut())?;
        Ok(t)
    }

    /// Wraps raw token bytes.
    pub fn from_bytes(bytes: [u8; TOKEN_LEN]) -> Token {
        Token(Zeroizing::new(bytes))
    }

    /// Parses the password text form (strict lowercase base32, 52 chars).
    pub fn from_password(text: &[u8]) -> Option<Token> {
        let text = std::str::from_utf8(text).ok()?;
        let bytes = Zeroizing::new(b32_decode(text)?);
        let arr: [u8; TOKEN_LEN] = bytes.as_slice().try_into().ok()?;
        Some(Token::from_bytes(arr))
    }

    /// The SSH password: the token in lowercase base32 (52 characters).
    pub fn password(&self) -> Zeroizing<String> {
        Zeroizing::new(b32_encode(self.0.as_ref()))
    }

    /// The raw bytes.
    pub fn expose(&self) -> &[u8; TOKEN_LEN] {
        &self.0
    }

    /// `SHA-256("codext login v1\0" || len(user) || user || token)`.
    pub fn login_hash(&self, user: &UserName) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(LOGIN_DOMAIN);
        bind_user(&mut h, user);
        h.update(self.0.as_ref());
        h.finalize().into()
    }

    /// First 16 bytes of
    /// `SHA-256("codext answer v1\0" || puzzle_id || len(user) || user || token)`.
    pub fn proof(&self, puzzle_id: &[u8; 16], user: &UserName) -> [u8; PROOF_LEN] {
        let mut h = Sha256::new();
        h.update(PROOF_DOMAIN);
        h.update(puzzle_id);
        bind_user(&mut h, user);
        h.update(self.0.as_ref());
        let full: [u8; 32] = h.finalize().into();
        let mut out = [0u8; PROOF_LEN];
        out.copy_from_slice(&full[..PROOF_LEN]);
        out
    }
}

fn bind_user(h: &mut Sha256, user: &UserName) {
    let name = user.as_str().as_bytes();
    // Names are 17 bytes by construction; the length byte keeps the
    // encoding unambiguous regardless.
    h.update([u8::try_from(name.len()).unwrap_or(u8::MAX)]);
    h.update(name);
}

/// Does `password` hash, for `user`, to `expected`? Constant-time in the
/// comparison; a password that is not a token's text form is simply wrong.
pub fn password_matches(expected: &[u8; 32], user: &UserName, password: &[u8]) -> bool {
    match Token::from_password(password) {
        Some(token) => bool::from(token.login_hash(user).ct_eq(expected)),
        None => false,
    }
}

/// Constant-time equality of two proofs.
pub fn proof_matches(expected: &[u8; PROOF_LEN], given: &[u8; PROOF_LEN]) -> bool {
    bool::from(expected.ct_eq(given))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserName {
        UserName::parse("user-0123456789ab").unwrap()
    }

    #[test]
    fn given_token_then_password_round_trips_and_matches() {
        let t = Token::generate().unwrap();
        let pw = t.password();
        assert_eq!(pw.len(), 52);
        assert!(password_matches(
            &t.login_hash(&user()),
            &user(),
            pw.as_bytes()
        ));
    }

    #[test]
    fn given_other_user_or_wrong_password_then_no_match() {
        let t = Token::generate().unwrap();
        let other = UserName::parse("user-0123456789ac").unwrap();
        let hash = t.login_hash(&user());
        assert!(!password_matches(&hash, &other, t.password().as_bytes()));
        assert!(!password_matches(&hash, &user(), b"not a token"));
        assert!(!password_matches(
            &hash,
            &user(),
            t.password().to_uppercase().as_bytes()
        ));
        assert!(!password_matches(&hash, &user(), b""));
    }

    #[test]
    fn given_same_token_then_proof_and_login_hash_differ_by_domain() {
        let t = Token::from_bytes([7; 32]);
        let p = t.proof(&[1; 16], &user());
        assert_ne!(&t.login_hash(&user())[..16], &p[..]);
        assert_ne!(p, t.proof(&[2; 16], &user()));
    }

    #[test]
    fn given_token_then_debug_hides_it() {
        assert_eq!(format!("{:?}", Token::from_bytes([7; 32])), "Token(***)");
    }
}
