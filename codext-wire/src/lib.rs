//! The small vocabulary shared by `pam_codext` (inside sshd) and
//! `codext-helper` (root daemon): the `user-<hex>` name rule, a secret
//! newtype that wipes itself, and the framed request/answer protocol spoken
//! over the helper's Unix socket.
//!
//! This crate is linked into every sshd that loads the PAM module, so it has
//! no dependency beyond `zeroize` and does no I/O of its own except reading
//! and writing frames on a stream it is given.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod frame;
pub mod message;
pub mod name;
pub mod secret;

pub use frame::{read_frame, write_frame, FrameError, MAX_FRAME};
pub use message::{
    Received, Reply, ReplyStatus, Request, WireError, PROTOCOL_VERSION, PROTOCOL_VERSION_1,
};
pub use name::{NameError, UserName, USER_HEX_LEN, USER_PREFIX};
pub use secret::Secret;
