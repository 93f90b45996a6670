//! Puzzle protocol v1 (specified in `docs/PROTOCOL.md`).
//!
//! The plaintext comes in two versions: 1, what every grant of
//! the `shell` profile carries (byte for byte what earlier releases sealed,
//! so their agents still open it), and 2, the same fields followed by the
//! grant's profile name, for every other profile. The envelope is the same
//! for both (version 1): its size, and so the number of DigitalOcean tags a
//! puzzle takes, does not change; the profile is inside the ciphertext,
//! which the signature covers.
//!
//! The server seals a [`PuzzleContent`] (token, user, times, server
//! identity, puzzle id, host-key fingerprints) with RSA-OAEP(SHA-256) to the
//! agent's key, and signs the envelope — a clear header and the ciphertext —
//! with RSA-PSS(SHA-256) under its own key. The agent checks, in this order:
//! the format, the signer and recipient fingerprints, the signature (a cheap
//! public-key operation, so nothing unsigned ever reaches the private key),
//! then decrypts and checks that the content agrees with the signed header
//! and that the puzzle is current.
//!
//! Text form: `cdx1` followed by the envelope in lowercase base32: URL-safe,
//! case-free and valid in DigitalOcean tags. `1` is not a base32 symbol, so
//! the prefix cannot be confused with data.

use crate::answer::Answer;
use crate::encoding::{b32_decode, b32_encode};
use crate::error::{Error, Result};
use crate::keys::{Fingerprint, PrivateKey, PublicKey};
use crate::profile::ProfileName;
use crate::token::{Token, TOKEN_LEN};
use codext_wire::UserName;
use rand_core::OsRng;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use rsa::{pss, Oaep};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Protocol version carried in the envelope, and in the plaintext of a
/// `shell` grant.
pub const VERSION: u8 = 1;
/// Plaintext version of a grant of any other profile: version 1's fields
/// and then the profile name.
pub const VERSION_PROFILE: u8 = 2;
/// Text prefix of a v1 puzzle.
pub const TEXT_PREFIX: &str = "cdx1";
/// Envelope magic.
const MAGIC: &[u8; 4] = b"CDXP";
/// Domain separation prefix of the signed message.
const SIGN_DOMAIN: &[u8] = b"codext puzzle v1\0";
/// Longest server identity carried.
pub const MAX_SERVER_ID: usize = 64;
/// Allowed clock skew for a puzzle issued "in the future", in seconds.
pub const CLOCK_SKEW: u64 = 300;
/// Largest envelope accepted when parsing (an 8192-bit ciphertext and
/// signature with headers fit well below it).
pub const MAX_ENVELOPE: usize = 4096;
/// OAEP-SHA-256 overhead: 2 * 32 + 2 bytes.
const OAEP_OVERHEAD: usize = 66;

/// What a puzzle carries, encrypted.
#[derive(Debug, Clone)]
pub struct PuzzleContent {
    /// Random id of this puzzle.
    pub puzzle_id: [u8; 16],
    /// Issue time, seconds since the epoch.
    pub issued_at: u64,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
    /// The account to log in as.
    pub user: UserName,
    /// Who issued it (droplet id or host name).
    pub server_id: String,
    /// SHA-256 fingerprints of the server's SSH host keys.
    pub host_keys: Vec<Fingerprint>,
    /// The one-time token (the SSH password in text form).
    pub token: Token,
    /// What the grant may do; `shell` is sealed as plaintext
    /// version 1, anything else as version 2.
    pub profile: ProfileName,
}

/// A signed, encrypted puzzle as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Puzzle {
    /// Random id (clear copy of the encrypted one).
    pub puzzle_id: [u8; 16],
    /// Expiry (clear copy).
    pub expires_at: u64,
    /// Fingerprint of the agent key it is encrypted to.
    pub recipient: Fingerprint,
    /// Fingerprint of the server key that signed it.
    pub signer: Fingerprint,
    /// The account (clear copy).
    pub user: UserName,
    /// RSA-OAEP(SHA-256) ciphertext of the content.
    pub ciphertext: Vec<u8>,
    /// RSA-PSS(SHA-256) signature over [`Puzzle::signed_message`].
    pub signature: Vec<u8>,
}

/// A puzzle the agent has verified and decrypted.
#[derive(Debug)]
pub struct OpenedPuzzle {
    /// The decrypted content.
    pub content: PuzzleContent,
    /// The answer to publish.
    pub answer: Answer,
}

impl PuzzleContent {
    fn encode(&self) -> Result<Zeroizing<Vec<u8>>> {
        let user = self.user.as_str().as_bytes();
        let sid = self.server_id.as_bytes();
        check_server_id(&self.server_id)?;
        let n = u8::try_from(self.host_keys.len())
            .map_err(|_| Error::PuzzleContent("too many host keys".into()))?;
        let mut out = Zeroizing::new(Vec::with_capacity(160 + 32 * self.host_keys.len()));
        let version = if self.profile.is_shell() {
            VERSION
        } else {
            VERSION_PROFILE
        };
        out.push(version);
        out.extend_from_slice(&self.puzzle_id);
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(self.token.expose());
        push_short(&mut out, user);
        push_short(&mut out, sid);
        out.push(n);
        for fp in &self.host_keys {
            out.extend_from_slice(&fp.0);
        }
        if version == VERSION_PROFILE {
            push_short(&mut out, self.profile.as_str().as_bytes());
        }
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> Result<PuzzleContent> {
        let bad = |m: &str| Error::PuzzleContent(m.to_owned());
        let mut r = Cursor(bytes);
        let version = r.u8().ok_or_else(|| bad("empty plaintext"))?;
        if version != VERSION && version != VERSION_PROFILE {
            return Err(bad("unknown plaintext version"));
        }
        let puzzle_id = r.array::<16>().ok_or_else(|| bad("short plaintext"))?;
        let issued_at = r.u64().ok_or_else(|| bad("short plaintext"))?;
        let expires_at = r.u64().ok_or_else(|| bad("short plaintext"))?;
        let token = Token::from_bytes(
            r.array::<TOKEN_LEN>()
                .ok_or_else(|| bad("short plaintext"))?,
        );
        let user = r.short().ok_or_else(|| bad("short plaintext"))?;
        let user = std::str::from_utf8(user).map_err(|_| bad("user is not UTF-8"))?;
        let user = UserName::parse(user).map_err(|e| Error::PuzzleContent(e.to_string()))?;
        let sid = r.short().ok_or_else(|| bad("short plaintext"))?;
        let server_id = std::str::from_utf8(sid)
            .map_err(|_| bad("server id is not UTF-8"))?
            .to_owned();
        check_server_id(&server_id)?;
        let n = r.u8().ok_or_else(|| bad("short plaintext"))?;
        let mut host_keys = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            host_keys.push(Fingerprint(
                r.array::<32>().ok_or_else(|| bad("short plaintext"))?,
            ));
        }
        let profile = if version == VERSION_PROFILE {
            let p = r.short().ok_or_else(|| bad("short plaintext"))?;
            let p = std::str::from_utf8(p).map_err(|_| bad("profile is not UTF-8"))?;
            let p = ProfileName::parse(p).map_err(Error::PuzzleContent)?;
            // Version 2 names a profile other than shell: one grant, one
            // encoding, nothing to choose between.
            if p.is_shell() {
                return Err(bad("a version 2 plaintext names the shell profile"));
            }
            p
        } else {
            ProfileName::shell()
        };
        if !r.0.is_empty() {
            return Err(bad("bytes after the end of the plaintext"));
        }
        if host_keys.is_empty() {
            return Err(bad(
                "no host key fingerprints: the server could not be checked",
            ));
        }
        Ok(PuzzleContent {
            puzzle_id,
            issued_at,
            expires_at,
            user,
            server_id,
            host_keys,
            token,
            profile,
        })
    }
}

fn check_server_id(sid: &str) -> Result<()> {
    let ok = !sid.is_empty()
        && sid.len() <= MAX_SERVER_ID
        && sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::PuzzleContent(format!(
            "server id must be 1 to {MAX_SERVER_ID} characters of [A-Za-z0-9._:-]"
        )))
    }
}

fn push_short(out: &mut Vec<u8>, bytes: &[u8]) {
    // Callers bound these fields (user 17 bytes, server id 64).
    let n = u8::try_from(bytes.len()).unwrap_or(u8::MAX);
    out.push(n);
    out.extend_from_slice(&bytes[..usize::from(n)]);
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.array::<8>().map(u64::from_be_bytes)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|b| b.try_into().ok())
    }
    fn short(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn long(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

impl Puzzle {
    /// Encrypts `content` to `recipient` and signs it with `server`.
    pub fn seal(
        content: &PuzzleContent,
        recipient: &PublicKey,
        server: &PrivateKey,
    ) -> Result<Puzzle> {
        let plaintext = content.encode()?;
        let room = recipient.size().saturating_sub(OAEP_OVERHEAD);
        if plaintext.len() > room {
            return Err(Error::PuzzleContent(format!(
                "the content is {} bytes but a {}-bit agent key holds {room}: use fewer host keys or a shorter server id",
                plaintext.len(),
                recipient.bits()
            )));
        }
        let ciphertext = recipient
            .rsa()
            .encrypt(&mut OsRng, Oaep::new::<Sha256>(), &plaintext)
            .map_err(|e| Error::Crypto(format!("encryption: {e}")))?;
        let signer = server.public("")?.fingerprint();
        let mut puzzle = Puzzle {
            puzzle_id: content.puzzle_id,
            expires_at: content.expires_at,
            recipient: recipient.fingerprint(),
            signer,
            user: content.user.clone(),
            ciphertext,
            signature: Vec::new(),
        };
        let key = pss::SigningKey::<Sha256>::new(server.rsa().clone());
        let sig = key
            .try_sign_with_rng(&mut OsRng, &puzzle.signed_message())
            .map_err(|e| Error::Crypto(format!("signature: {e}")))?;
        puzzle.signature = sig.to_vec();
        Ok(puzzle)
    }

    /// The envelope without its signature field.
    fn unsigned_envelope(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.ciphertext.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.puzzle_id);
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(&self.recipient.0);
        out.extend_from_slice(&self.signer.0);
        push_short(&mut out, self.user.as_str().as_bytes());
        push_long(&mut out, &self.ciphertext);
        out
    }

    /// What the signature covers: `"codext puzzle v1\0"` followed by the
    /// envelope up to (not including) the signature field.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut m = SIGN_DOMAIN.to_vec();
        m.extend_from_slice(&self.unsigned_envelope());
        m
    }

    /// The binary envelope.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.unsigned_envelope();
        push_long(&mut out, &self.signature);
        out
    }

    /// The text form: `cdx1` + lowercase base32 of the envelope.
    pub fn to_text(&self) -> String {
        format!("{TEXT_PREFIX}{}", b32_encode(&self.to_bytes()))
    }

    /// Parses the binary envelope, strictly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Puzzle> {
        let bad = |m: &str| Error::PuzzleFormat(m.to_owned());
        if bytes.len() > MAX_ENVELOPE {
            return Err(bad("too long"));
        }
        let mut r = Cursor(bytes);
        if r.take(4) != Some(MAGIC.as_slice()) {
            return Err(bad("missing CDXP magic"));
        }
        match r.u8() {
            Some(VERSION) => {}
            Some(v) => {
                return Err(Error::PuzzleFormat(format!(
                    "version {v} is not supported (this codext reads 1)"
                )))
            }
            None => return Err(bad("truncated")),
        }
        let puzzle_id = r.array::<16>().ok_or_else(|| bad("truncated"))?;
        let expires_at = r.u64().ok_or_else(|| bad("truncated"))?;
        let recipient = Fingerprint(r.array::<32>().ok_or_else(|| bad("truncated"))?);
        let signer = Fingerprint(r.array::<32>().ok_or_else(|| bad("truncated"))?);
        let user = r.short().ok_or_else(|| bad("truncated"))?;
        let user = std::str::from_utf8(user).map_err(|_| bad("user is not UTF-8"))?;
        let user = UserName::parse(user).map_err(|e| Error::PuzzleFormat(e.to_string()))?;
        let ciphertext = r.long().ok_or_else(|| bad("truncated"))?.to_vec();
        let signature = r.long().ok_or_else(|| bad("truncated"))?.to_vec();
        if !r.0.is_empty() {
            return Err(bad("bytes after the signature"));
        }
        if ciphertext.is_empty() || signature.is_empty() {
            return Err(bad("empty ciphertext or signature"));
        }
        Ok(Puzzle {
            puzzle_id,
            expires_at,
            recipient,
            signer,
            user,
            ciphertext,
            signature,
        })
    }

    /// Parses the text form; surrounding whitespace is ignored.
    pub fn from_text(text: &str) -> Result<Puzzle> {
        let text = text.trim();
        let body = text.strip_prefix(TEXT_PREFIX).ok_or_else(|| {
            Error::PuzzleFormat(format!("a v1 puzzle starts with {TEXT_PREFIX:?}"))
        })?;
        if body.len() > MAX_ENVELOPE * 2 {
            return Err(Error::PuzzleFormat("too long".into()));
        }
        let bytes = b32_decode(body).ok_or_else(|| {
            Error::PuzzleFormat(
                "not lowercase base32 (garbled, truncated, or changed in transit)".into(),
            )
        })?;
        Puzzle::from_bytes(&bytes)
    }

    /// Verifies the signature with the pinned `server` key, checks that the
    /// puzzle is for `agent`, decrypts, and checks content and time.
    pub fn open(&self, agent: &PrivateKey, server: &PublicKey, now: u64) -> Result<OpenedPuzzle> {
        if self.signer != server.fingerprint() {
            return Err(Error::WrongSigner {
                signer: self.signer.to_string(),
                pinned: server.fingerprint().to_string(),
            });
        }
        let sig =
            pss::Signature::try_from(self.signature.as_slice()).map_err(|_| Error::BadSignature)?;
        pss::VerifyingKey::<Sha256>::new(server.rsa().clone())
            .verify(&self.signed_message(), &sig)
            .map_err(|_| Error::BadSignature)?;
        let agent_pub = agent.public("")?;
        if self.recipient != agent_pub.fingerprint() {
            return Err(Error::WrongRecipient);
        }
        let plaintext = Zeroizing::new(
            agent
                .rsa()
                .decrypt(Oaep::new::<Sha256>(), &self.ciphertext)
                .map_err(|_| Error::Decrypt)?,
        );
        let content = PuzzleContent::decode(&plaintext)?;
        if content.puzzle_id != self.puzzle_id
            || content.user != self.user
            || content.expires_at != self.expires_at
        {
            return Err(Error::PuzzleContent(
                "the encrypted content does not match the signed header".into(),
            ));
        }
        if content.issued_at > content.expires_at {
            return Err(Error::PuzzleContent("issued after it expires".into()));
        }
        if now > content.expires_at || content.issued_at > now.saturating_add(CLOCK_SKEW) {
            return Err(Error::Expired {
                expires_at: content.expires_at,
                now,
            });
        }
        let answer = Answer {
            user: content.user.clone(),
            proof: content.token.proof(&content.puzzle_id, &content.user),
        };
        Ok(OpenedPuzzle { content, answer })
    }
}

fn push_long(out: &mut Vec<u8>, bytes: &[u8]) {
    // Ciphertexts and signatures are at most 1024 bytes (8192-bit keys).
    let n = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&bytes[..usize::from(n)]);
}
