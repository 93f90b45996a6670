//! `codext-helper`: the root side of codext.
//!
//! It holds the server key, issues puzzles, keeps the pending state (token
//! hashes only), arms users by announcing them to NSS, answers the PAM
//! module's questions over a root-only socket, creates accounts just in
//! time with `useradd` and removes them — processes, home, record — when
//! their last session closes. The DigitalOcean channel's API calls are made
//! by the unprivileged `codext-channel` process, which reaches the helper
//! only through the channel socket ([`channel_requests`]): no HTTP or TLS
//! code is linked here.
//!
//! `unsafe` is denied everywhere but in [`sys`], the one module of raw
//! system calls (fork/setresuid for the killer, waitpid, pidfd_open,
//! mlockall, setpriority), where every block names its contract in a
//! `// SAFETY:` comment (`clippy::undocumented_unsafe_blocks` is denied for
//! the workspace).
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod accounts;
pub mod audit;
pub mod channel_requests;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod error;
pub mod grant_keys;
pub mod ids;
pub mod lifecycle;
pub mod log;
pub mod paths;
pub mod procfs;
pub mod profiles;
pub mod recording;
pub mod setup;
pub mod store;
#[allow(unsafe_code)]
pub mod sys;
pub mod userdb;
pub mod wake;

#[cfg(test)]
mod testing;
