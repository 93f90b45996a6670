//! The codext protocol, shared by `codext-helper` (the server) and `codext`
//! (the agent): keys, one-time tokens, the v1 puzzle and its answer, the
//! SSH host-key fingerprints a puzzle binds, and the messages of the
//! helper's channel socket ([`channel_wire`]). How a channel carries them
//! (DigitalOcean's tags, its API and its errors) is the `codext-do` crate's:
//! nothing here knows a cloud, speaks HTTP or TLS.
//!
//! `docs/PROTOCOL.md` is the written specification; the test vectors in
//! `docs/test-vectors/` are checked against this code by the tests.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod answer;
pub mod bell;
pub mod channel_wire;
#[cfg(feature = "cli")]
pub mod cli_args;
pub mod encoding;
pub mod error;
pub mod hostkeys;
pub mod keys;
pub mod log;
pub mod profile;
pub mod puzzle;
pub mod random;
pub mod secret_file;
pub mod time;
pub mod token;

pub use answer::Answer;
pub use error::{Error, Result};
pub use keys::{Fingerprint, PrivateKey, PublicKey};
pub use profile::ProfileName;
pub use puzzle::{OpenedPuzzle, Puzzle, PuzzleContent};
pub use token::Token;
