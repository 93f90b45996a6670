//! `helper.toml`: versioned, unknown keys rejected, a missing file means
//! the safe defaults ([`defaults`]). Every path is absolute; durations are
//! written like `"10m"` or `"8h"`.
//!
//! One schema in a few files, by concern: [`Config`] and what it answers
//! (here); the table of each section ([`tables`]); the channels'
//! tables ([`channels`]); the defaults ([`defaults`]); reading, parsing and
//! every check across tables ([`parse`]). The unit tests are here, at the
//! end.

mod channels;
mod defaults;
mod parse;
mod tables;

pub use channels::{AllowedKeys, DigitalOcean};
pub use tables::{Accounts, AuditConfig, Containers, Limits, Recording, Ttl};

use channels::ChannelTables;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Default location of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/codext/helper.toml";

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Format version; must be 1.
    pub version: u32,
    /// The server's private key (PKCS#8 PEM, 0600); its public half is
    /// `<server_key>.pub`.
    pub server_key: PathBuf,
    /// Pending state, the uid cursor and the audit chain head (0700).
    pub state_dir: PathBuf,
    /// The daemon's socket (its folder is created 0700).
    pub socket: PathBuf,
    /// Where user records are announced to nss-systemd.
    pub userdb_dir: PathBuf,
    /// The append-only audit trail.
    pub audit_log: PathBuf,
    /// This server's identity in puzzles; empty means the host name.
    pub server_id: String,
    /// Folder searched for `ssh_host_*_key.pub` when `host_keys` is empty.
    pub host_key_dir: PathBuf,
    /// Explicit host public key files to bind into puzzles.
    pub host_keys: Vec<PathBuf>,
    /// PAM services allowed to use the daemon (checked by the daemon too).
    pub pam_services: Vec<String>,
    /// Lowest level of the daemon's stderr lines kept: `error`, `warning`,
    /// `info` or `debug` (every connection); `CODEXT_LOG_LEVEL` overrides it.
    pub log_level: crate::log::Level,
    /// Temporary accounts.
    pub accounts: Accounts,
    /// Attempt and rate limits.
    pub limits: Limits,
    /// Time limits.
    pub ttl: Ttl,
    /// The DigitalOcean channel (off unless enabled): `[channels.digitalocean]`,
    /// or `[digitalocean]` as earlier releases spelled it (never both);
    /// filled in by validation.
    #[serde(skip)]
    pub digitalocean: DigitalOcean,
    /// `[digitalocean]` as written (moved into [`Config::digitalocean`] by
    /// validation).
    #[serde(rename = "digitalocean")]
    digitalocean_table: Option<DigitalOcean>,
    /// `[channels.<name>]` as written (moved into each channel's own field
    /// by validation).
    channels: ChannelTables,
    /// The audit trail: rotation, strangers' summaries, the system-log copy.
    pub audit: AuditConfig,
    /// Session recording (on by default).
    pub recording: Recording,
    /// How the helper reaches docker for `container` profiles.
    pub containers: Containers,
    /// `[profiles.<name>]` as written; see [`Config::profiles`].
    #[serde(rename = "profiles")]
    pub profile_table: BTreeMap<String, crate::profiles::ProfileConfig>,
    /// The profiles, checked (filled in by validation; `shell`
    /// always among them).
    #[serde(skip)]
    pub profiles: crate::profiles::Profiles,
}

/// Serde glue: durations as humantime text (`"90s"`, `"10m"`).
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
    }
}

impl Config {
    /// The profile `name`, if configured.
    pub fn profile(&self, name: &codext_core::ProfileName) -> Option<&crate::profiles::Profile> {
        self.profiles.get(name)
    }

    /// The login shell temporary accounts get: the recorder when recording
    /// is on (it runs `[accounts] shell`), else `[accounts] shell`; (issue
    /// 26) for a grant of a `commands` or `container` profile
    /// (`gated`) always the recorder, which is also the gate: no shell of
    /// the user's may ever run first.
    pub fn login_shell_for(&self, gated: bool) -> PathBuf {
        if gated {
            return self.recording.recorder.clone();
        }
        self.login_shell()
    }

    /// The login shell of a `shell` grant (see [`Config::login_shell_for`]).
    pub fn login_shell(&self) -> PathBuf {
        if self.recording.enabled {
            self.recording.recorder.clone()
        } else {
            self.accounts.shell.clone()
        }
    }

    /// Where records are kept (root's, 0700).
    pub fn recordings_dir(&self) -> PathBuf {
        self.state_dir.join("recordings")
    }

    /// The server's public key file.
    pub fn server_public_key(&self) -> PathBuf {
        let mut p = self.server_key.clone().into_os_string();
        p.push(".pub");
        PathBuf::from(p)
    }

    /// The server identity put into puzzles.
    pub fn server_identity(&self) -> String {
        if !self.server_id.is_empty() {
            return self.server_id.clone();
        }
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        let host: String = host
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-._:".contains(*c))
            .take(64)
            .collect();
        if host.is_empty() {
            "codext-server".into()
        } else {
            host
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Result;
    use std::path::Path;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Config> {
        Config::from_toml_str(text, Path::new("t.toml"))
    }

    #[test]
    fn given_the_documented_example_then_it_parses_to_exactly_the_defaults() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/helper.toml"))
                .unwrap();
        let documented = parse(&text).unwrap();
        // Compare through Debug: every field, every value.
        assert_eq!(
            format!("{documented:?}"),
            format!("{:?}", parse("").unwrap())
        );
    }

    #[test]
    fn given_missing_file_then_defaults() {
        let cfg = Config::load(Path::new("/nonexistent/codext/helper.toml")).unwrap();
        assert_eq!(cfg.accounts.uid_min, 59000);
        assert_eq!(cfg.socket, PathBuf::from("/run/codext/helper.sock"));
        assert_eq!(cfg.limits.max_attempts, 3);
    }

    #[test]
    fn given_partial_file_then_rest_defaults() {
        let cfg = parse("version = 1\n[ttl]\npuzzle = \"2m\"\n").unwrap();
        assert_eq!(cfg.ttl.puzzle, Duration::from_secs(120));
        assert_eq!(cfg.ttl.armed, Duration::from_secs(300));
    }

    #[test]
    fn given_bad_configs_then_each_refused_with_reason() {
        for (text, what) in [
            ("version = 2", "version 2"),
            ("bogus = 1", "unknown field"),
            ("[accounts]\nuid_min = 100", "1000..=60000"),
            ("[accounts]\nuid_max = 65000", "1000..=60000"),
            ("[accounts]\ngroup = \"Bad Group\"", "not a valid group"),
            ("state_dir = \"relative\"", "absolute"),
            ("[ttl]\npuzzle = \"soon\"", "soon"),
            ("[ttl]\npuzzle = \"0s\"", "between"),
            ("[limits]\nmax_attempts = 0", "at least 1"),
            ("server_id = \"a b\"", "server_id"),
            ("[audit]\nrotate_bytes = 100", "rotate_bytes"),
            ("[audit]\nretain_files = 0", "retain_files"),
            ("[audit]\nretain_age = \"1h\"", "retain_age"),
            ("[audit]\nsummary_window = \"2h\"", "summary_window"),
            ("[audit]\nsummary_sources = 0", "summary_sources"),
            ("version = ", "invalid"),
            ("log_level = \"loud\"", "unknown variant"),
            ("[recording]\nbogus = 1", "unknown field"),
            ("[recording]\noutput_bytes = 10", "output_bytes"),
            ("[recording]\nstore_bytes = 1000", "store_bytes"),
            ("[recording]\ngroup = \"codext\"", "recording.group"),
            ("[recording]\nmax_age = \"1s\"", "max_age"),
            ("[recording]\nrecorder = \"rel\"", "absolute"),
            (
                "[digitalocean]\nenabled = true\n[channels.digitalocean]\nenabled = true",
                "written twice",
            ),
            ("[channels.aws]\nenabled = true", "unknown field `aws`"),
            ("[channels.digitalocean]\nbogus = 1", "unknown field"),
            (
                "[channels.digitalocean]\npoll_busy = \"0s\"",
                "digitalocean.poll_busy",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.to_lowercase().contains(&what.to_lowercase()),
                "{text:?} gave {err}"
            );
        }
    }

    #[test]
    fn given_either_spelling_of_the_digitalocean_table_then_the_same_channel() {
        let body = "enabled = true\ndroplet_id = 7\nallowed_keys = [\"SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"]\n";
        let earlier = parse(&format!("[digitalocean]\n{body}")).unwrap();
        let now = parse(&format!("[channels.digitalocean]\n{body}")).unwrap();
        assert_eq!(format!("{earlier:?}"), format!("{now:?}"));
        assert_eq!(now.digitalocean.droplet_id, 7);
        assert!(now.digitalocean.enabled);
        assert!(now
            .channel(crate::lifecycle::Channel::DigitalOcean)
            .is_some());
        assert!(now.channel(crate::lifecycle::Channel::Manual).is_none());
        // Neither: the defaults, the channel off.
        let none = parse("").unwrap();
        assert!(!none.digitalocean.enabled);
        assert!(none
            .channel(crate::lifecycle::Channel::DigitalOcean)
            .is_none());
    }
}
