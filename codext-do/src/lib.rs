//! The DigitalOcean API v2 client of codext's DigitalOcean channel: a
//! blocking, rate-limit-aware client for droplets, tags and account SSH
//! keys, and the metadata service's droplet id.
//!
//! This crate is the only one in codext that speaks HTTP or TLS (ureq,
//! rustls, ring, webpki-roots, url/idna). It is linked into the
//! unprivileged `codext-channel` process and the agent's `codext` CLI,
//! never into the root `codext-helper` (a check in `scripts/test.sh` and
//! `tests/tests/packaging.rs` fails if it appears there). It also holds how
//! codext writes puzzles, answers and requests into DigitalOcean tag names
//! ([`tags`]) and the errors of talking to DigitalOcean ([`Error`]): the
//! protocol (`codext-core`) knows nothing of DigitalOcean.
//!
//! The API's rules relied on (from DigitalOcean's OpenAPI description, see
//! `shared/digitalocean-openapi/README.md`): tags are `^[a-zA-Z0-9_\-:]+$`,
//! at most 255 characters, their identity ignores case and the first
//! creation's capitalization is kept; a tag must exist before it is
//! attached; 5,000 requests an hour, 250 a minute, and 10 listings of the
//! account's keys a minute per token.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod budget;
pub mod client;
pub mod clock;
pub mod error;
pub mod models;
mod pacing;
pub mod tags;

pub use client::{
    metadata_droplet_id, ApiConfig, Budget, Client, DEFAULT_API_URL, DEFAULT_METADATA_URL,
};
pub use clock::{Clock, ScaledClock, SharedClock};
pub use error::{Error, Result};
pub use models::{Droplet, SshKey};
