//! `codext`: the agent's side. Key generation, solving puzzles, answering,
//! and logging in with the stock `ssh` client, the token handed over from
//! memory only (see [`askpass`]) and the host checked against the
//! fingerprints the server signed into the puzzle (see [`ssh`]).
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod alias;
pub mod askpass;
pub mod cli;
pub mod digitalocean;
pub mod error;
pub mod events;
pub mod persist;
pub mod ssh;
