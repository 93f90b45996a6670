//! The DigitalOcean channel: the server and the agent meet only through the
//! DigitalOcean API v2, on the server's droplet.
//!
//! * [`client`]: a blocking, rate-limit-aware API client (droplets, tags,
//!   account SSH keys) and the metadata service's droplet id;
//! * [`tags`]: how puzzles, answers, puzzle requests and "ready" notices
//!   are written into droplet tags and read back, whatever order and
//!   capitalization the API returns them in.
//!
//! The API's rules relied on (from DigitalOcean's OpenAPI description, see
//! `shared/digitalocean-openapi/README.md`): tags are `^[a-zA-Z0-9_\-:]+$`,
//! at most 255 characters, their identity ignores case and the first
//! creation's capitalization is kept; a tag must exist before it is
//! attached; 5,000 requests an hour, 250 a minute, and 10 listings of the
//! account's keys a minute per token.

pub mod client;
mod pacing;
pub mod tags;

pub use client::{
    metadata_droplet_id, ApiConfig, Client, Droplet, SshKey, DEFAULT_API_URL, DEFAULT_METADATA_URL,
};
