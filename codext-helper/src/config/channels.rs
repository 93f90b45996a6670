//! `[channels.<name>]`: the table of each channel the helper knows, and
//! [`Config::channel`], which answers a channel's settings. A new channel
//! is a field of [`ChannelTables`] (see ARCHITECTURE.md, "A new channel").

use super::{humantime_serde_compat, Config};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `[channels]`: one table per channel the helper knows, named as the
/// channel process names itself in `hello` (a name it does not know is an
/// unknown key).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ChannelTables {
    /// `[channels.digitalocean]`.
    pub(super) digitalocean: Option<DigitalOcean>,
}

/// The DigitalOcean channel: puzzles go into the droplet's tags, answers
/// and puzzle requests come back as tags.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigitalOcean {
    /// Serve the channel socket in `serve` (the unprivileged
    /// `codext-channel` process does the API calls; see
    /// [`crate::channel_requests`]).
    pub enabled: bool,
    /// API base URL.
    pub api_url: String,
    /// Metadata service base URL (gives the droplet id).
    pub metadata_url: String,
    /// Root-only file holding the API token; the helper never reads it:
    /// `codext-channel.service` hands it to the channel process with
    /// `LoadCredential=`.
    pub token_file: PathBuf,
    /// The system user the channel process runs as (created by `init`);
    /// the only uid the channel socket serves.
    pub channel_user: String,
    /// The channel socket (its folder is created root:<channel group>
    /// 0750, the socket 0660).
    pub channel_socket: PathBuf,
    /// This droplet's id; 0 asks the metadata service.
    pub droplet_id: u64,
    /// Poll period while a puzzle is out or a user is armed.
    #[serde(with = "humantime_serde_compat")]
    pub poll_busy: Duration,
    /// Poll period otherwise (puzzle requests are noticed this fast).
    #[serde(with = "humantime_serde_compat")]
    pub poll_idle: Duration,
    /// Stay at `poll_busy` this long after anything happened on the
    /// droplet (a request, an answer, a publication).
    #[serde(with = "humantime_serde_compat")]
    pub hot_for: Duration,
    /// Share of the token's hourly request budget this server may spend,
    /// in percent (1–100): servers sharing a token each take their share.
    pub budget_share: u32,
    /// Requests of the token's budget the channel never spends on polling
    /// (kept for publishing puzzles and answers).
    pub budget_reserve: u64,
    /// Fingerprints (`SHA256:…`) of agent keys that may ask for a puzzle
    /// (and the profiles each may ask for).
    pub allowed_keys: AllowedKeys,
    /// Also honour requests from any account key named `codext-…` (off by
    /// default: an explicit opt-in).
    pub issue_to_any_codext_key: bool,
}

impl Default for DigitalOcean {
    fn default() -> DigitalOcean {
        DigitalOcean {
            enabled: false,
            api_url: "https://api.digitalocean.com".into(),
            metadata_url: "http://169.254.169.254/metadata/v1".into(),
            token_file: PathBuf::from("/etc/codext/digitalocean.token"),
            channel_user: "codext-channel".into(),
            channel_socket: PathBuf::from("/run/codext-channel/helper.sock"),
            droplet_id: 0,
            poll_busy: Duration::from_secs(1),
            poll_idle: Duration::from_secs(15),
            hot_for: Duration::from_secs(60),
            budget_share: 50,
            budget_reserve: 250,
            allowed_keys: AllowedKeys::default(),
            issue_to_any_codext_key: false,
        }
    }
}

/// `digitalocean.allowed_keys`: the agent keys that may ask for
/// a puzzle, and the profiles each may ask for. Written as a list of
/// fingerprints (each may ask for `shell`, as before), or as a table from
/// fingerprint to the profiles it may ask for.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum AllowedKeys {
    /// `["SHA256:…", …]`: `shell` only.
    List(Vec<String>),
    /// `{ "SHA256:…" = ["shell", "ci"] }`.
    Table(BTreeMap<String, Vec<String>>),
}

impl Default for AllowedKeys {
    fn default() -> AllowedKeys {
        AllowedKeys::List(Vec::new())
    }
}

impl AllowedKeys {
    /// Every fingerprint with the profiles it may ask for.
    pub fn entries(&self) -> Vec<(String, Vec<String>)> {
        match self {
            AllowedKeys::List(l) => l
                .iter()
                .map(|fp| (fp.clone(), vec![codext_core::profile::SHELL.to_owned()]))
                .collect(),
            AllowedKeys::Table(t) => t.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    /// The profiles key `fp` may ask for; `None`: not allowed at all.
    pub fn profiles_of(&self, fp: &str) -> Option<Vec<String>> {
        self.entries()
            .into_iter()
            .find(|(k, _)| k == fp)
            .map(|(_, v)| v)
    }
}

impl Config {
    /// The settings of `channel` when it is configured and on (a channel
    /// process may say `hello` only as such a channel); `None` for the
    /// manual channel, which has no process.
    pub fn channel(&self, channel: crate::lifecycle::Channel) -> Option<&DigitalOcean> {
        match channel {
            crate::lifecycle::Channel::DigitalOcean if self.digitalocean.enabled => {
                Some(&self.digitalocean)
            }
            _ => None,
        }
    }
}
