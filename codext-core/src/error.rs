//! The core's one error type. Each variant's message says what is wrong and,
//! where there is one, what to do about it; none ever contains a secret.

use std::fmt;

/// Result with the core's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in the protocol and key handling.
#[derive(Debug)]
pub enum Error {
    /// A file could not be read or written.
    Io {
        /// What was being done, with the path.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A key file is not in the expected format.
    KeyFormat(String),
    /// A key is of the wrong kind or too small.
    KeyPolicy(String),
    /// A secret file is a symlink, not a regular file, of another owner,
    /// readable by others or too large.
    FilePolicy(String),
    /// A puzzle's text form cannot be decoded.
    PuzzleFormat(String),
    /// The puzzle's signature does not verify with the pinned server key.
    BadSignature,
    /// The puzzle was signed by another server key than the pinned one.
    WrongSigner {
        /// Fingerprint named in the puzzle.
        signer: crate::keys::Fingerprint,
        /// Fingerprint of the pinned key.
        pinned: crate::keys::Fingerprint,
    },
    /// The puzzle is for another agent key.
    WrongRecipient,
    /// Decryption failed (wrong key, or a corrupted ciphertext).
    Decrypt,
    /// The decrypted content contradicts the signed header, or is malformed.
    PuzzleContent(String),
    /// The puzzle expired (or is not valid yet).
    Expired {
        /// Expiry, seconds since the epoch.
        expires_at: u64,
        /// The time it was checked.
        now: u64,
    },
    /// An answer text is malformed.
    AnswerFormat(String),
    /// A cryptographic operation failed unexpectedly.
    Crypto(String),
    /// The OS random generator failed.
    Random(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::KeyFormat(m) => write!(f, "key format: {m}"),
            Error::KeyPolicy(m) => write!(f, "key refused: {m}"),
            Error::FilePolicy(m) => write!(f, "file refused: {m}"),
            Error::PuzzleFormat(m) => write!(f, "not a valid codext puzzle: {m}"),
            Error::BadSignature => write!(
                f,
                "the puzzle's signature does not verify with the pinned server key (tampered, truncated, or from another server)"
            ),
            Error::WrongSigner { signer, pinned } => write!(
                f,
                "the puzzle was signed by server key {signer}, not by the pinned {pinned}: wrong server key, or not from this server"
            ),
            Error::WrongRecipient => write!(f, "the puzzle was made for another agent key"),
            Error::Decrypt => write!(f, "the puzzle cannot be decrypted with this agent key"),
            Error::PuzzleContent(m) => write!(f, "the puzzle's content is inconsistent: {m}"),
            Error::Expired { expires_at, now } => {
                if now < expires_at {
                    write!(f, "the puzzle is not valid yet (issued in the future: check the clocks)")
                } else {
                    write!(f, "the puzzle expired {} s ago: ask the server for a new one", now - expires_at)
                }
            }
            Error::AnswerFormat(m) => write!(f, "not a valid codext answer: {m}"),
            Error::Crypto(m) => write!(f, "cryptographic failure: {m}"),
            Error::Random(m) => write!(f, "the OS random generator failed: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
