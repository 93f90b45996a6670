//! The typed values an [`Entry`](super::Entry) is made of: a point in time
//! ([`UnixTime`]), the channel a puzzle went out on ([`Channel`]), a
//! grant's linger state ([`Linger`], see [`crate::grant_keys`]), and the
//! hex text form of fixed-size hashes in the state file.
//!
//! Each keeps the exact text form the state file has always used (a plain
//! number, `"manual"`, lowercase hex), so a state file written by an older
//! helper still loads.

use codext_core::encoding::{hex, hex_decode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// Seconds since the epoch. Every decision of the lifecycle takes one as
/// `now`: nothing in it reads the clock, so tests set the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// The clock, read here and at no other place of the lifecycle's
    /// callers that decide anything.
    pub fn now() -> UnixTime {
        UnixTime(codext_core::time::now())
    }

    /// `self` plus `d` (whole seconds, saturating).
    pub fn plus(self, d: Duration) -> UnixTime {
        self.plus_secs(d.as_secs())
    }

    /// `self` plus `secs` (saturating).
    pub fn plus_secs(self, secs: u64) -> UnixTime {
        UnixTime(self.0.saturating_add(secs))
    }

    /// Seconds from `self` until `later` (0 when it has passed).
    pub fn until(self, later: UnixTime) -> u64 {
        later.0.saturating_sub(self.0)
    }

    /// True once `deadline` has passed: a deadline itself is still in time
    /// (the helper has always compared `now > deadline`).
    pub fn past(self, deadline: UnixTime) -> bool {
        self > deadline
    }

    /// RFC 3339 text (UTC).
    pub fn rfc3339(self) -> String {
        codext_core::time::rfc3339(self.0)
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a puzzle went out and where its answer comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Channel {
    /// Printed by `issue`, answered with `answer`.
    #[serde(rename = "manual")]
    Manual,
    /// Published in the droplet's tags by `codext-channel`.
    #[serde(rename = "digitalocean")]
    DigitalOcean,
}

impl Channel {
    /// Its name in the state file, the audit trail and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Manual => "manual",
            Channel::DigitalOcean => "digitalocean",
        }
    }

    /// Parses a channel name.
    pub fn parse(text: &str) -> Option<Channel> {
        match text {
            "manual" => Some(Channel::Manual),
            "digitalocean" => Some(Channel::DigitalOcean),
            _ => None,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Linger state of one grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Linger {
    /// Set when the last session closed: the removal that follows may
    /// become a linger. A revoke clears it.
    pub at_last_close: bool,
    /// Lingering until then (seconds since the epoch): the account stays,
    /// with no process, for a key reconnect.
    pub until: Option<UnixTime>,
}

/// `[u8; N]` as lowercase hex (`#[serde(with = "hex_array")]`).
pub mod hex_array {
    use super::*;

    /// Writes the hex text.
    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex(v))
    }

    /// Reads exactly `N` bytes of hex.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        hex_decode(&text)
            .and_then(|b| <[u8; N]>::try_from(b).ok())
            .ok_or_else(|| serde::de::Error::custom(format!("expected {} hex digits", 2 * N)))
    }
}

/// A hash that is emptied once used: `None` is written as `""`, as the
/// helper has always written a consumed login hash.
pub mod hex_used {
    use super::*;

    /// Writes the hex text, or `""`.
    pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.map(|b| hex(&b)).unwrap_or_default())
    }

    /// Reads 64 hex digits, or `""` for a used one.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        hex_decode(&text)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits or \"\""))
    }
}

/// A [`codext_wire::UserName`] as its text (`#[serde(with = "user_name")]`):
/// a state file naming anything that is not a codext user fails to load.
pub mod user_name {
    use super::*;
    use codext_wire::UserName;

    /// Writes the name.
    pub fn serialize<S: Serializer>(v: &UserName, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }

    /// Reads and validates a name.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<UserName, D::Error> {
        let text = String::deserialize(d)?;
        UserName::parse(&text).map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
    }
}
