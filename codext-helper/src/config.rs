//! `helper.toml`: versioned, unknown keys rejected, a missing file means
//! the safe defaults below. Every path is absolute; durations are written
//! like `"10m"` or `"8h"`.
//!
//! Why one file over 400 lines: it is one schema — every `helper.toml` table,
//! its defaults and the checks across tables — which a reviewer reads together;
//! the unit tests are the last 60 lines.

use crate::error::{HelperError, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Session recording (issue 23; on by default).
    pub recording: Recording,
    /// (issue 26) How the helper reaches docker for `container` profiles.
    pub containers: Containers,
    /// (issue 26) `[profiles.<name>]` as written; see [`Config::profiles`].
    #[serde(rename = "profiles")]
    pub profile_table: BTreeMap<String, crate::profiles::ProfileConfig>,
    /// (issue 26) The profiles, checked (filled in by validation; `shell`
    /// always among them).
    #[serde(skip)]
    pub profiles: crate::profiles::Profiles,
}

/// (issue 26) `[containers]`: the docker CLI the helper runs for
/// `container` profiles (the helper links no HTTP code; the CLI talks to
/// dockerd).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Containers {
    /// The docker CLI.
    pub docker: PathBuf,
    /// `DOCKER_HOST` for it: `unix:///PATH` only.
    pub docker_host: String,
    /// Longest wait for one docker call (starting a container included).
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
}

impl Default for Containers {
    fn default() -> Containers {
        Containers {
            docker: PathBuf::from("/usr/bin/docker"),
            docker_host: "unix:///run/docker.sock".into(),
            timeout: Duration::from_secs(60),
        }
    }
}

impl Containers {
    /// The socket `docker_host` names.
    pub fn socket(&self) -> PathBuf {
        PathBuf::from(
            self.docker_host
                .strip_prefix("unix://")
                .unwrap_or("/run/docker.sock"),
        )
    }

    /// The CLI as the profiles run it.
    pub fn cli(&self) -> crate::profiles::container::Docker {
        crate::profiles::container::Docker {
            program: self.docker.clone(),
            host: self.docker_host.clone(),
            deadline: self.timeout,
        }
    }
}

/// (issue 26) `digitalocean.allowed_keys`: the agent keys that may ask for
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

/// Session recording ([`crate::recording`]): every channel of every codext
/// session runs through the recorder, the accounts' login shell, which
/// streams it to the helper; records are kept under
/// `<state_dir>/recordings`, their SHA-256 in the audit trail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Recording {
    /// Record (the accounts' login shell is then [`Recording::recorder`],
    /// which runs `[accounts] shell`).
    pub enabled: bool,
    /// The installed recorder: root's, setgid [`Recording::group`].
    pub recorder: PathBuf,
    /// The recorder's own group (created by `init`): the recorder runs
    /// with it as its effective group, which is how the helper knows a
    /// recording connection comes from the recorder.
    pub group: String,
    /// Also record what is typed into terminal sessions (off: passwords
    /// typed at prompts stay out of the record).
    pub input: bool,
    /// Bytes of events kept per channel (terminal output, stdout, stderr,
    /// stdin, resizes, sftp operations); beyond it the first and the last
    /// halves are kept and the record says how much was dropped between.
    pub output_bytes: u64,
    /// Bytes of a command's standard input kept per channel (the first
    /// ones; the rest is counted).
    pub input_bytes: u64,
    /// The store never holds more (oldest records expire first).
    pub store_bytes: u64,
    /// Records older than this expire.
    #[serde(with = "humantime_serde_compat")]
    pub max_age: Duration,
    /// When the helper cannot store a record: run the channel unrecorded,
    /// with an audit line (true), or refuse it (false, the default).
    pub fail_open: bool,
}

impl Default for Recording {
    fn default() -> Recording {
        Recording {
            enabled: true,
            recorder: PathBuf::from("/usr/lib/codext/codext-record"),
            group: "codext-record".into(),
            input: false,
            output_bytes: 8 << 20,
            input_bytes: 1 << 20,
            store_bytes: 2 << 30,
            max_age: Duration::from_secs(90 * 24 * 3600),
            fail_open: false,
        }
    }
}

impl Recording {
    /// Disk one channel's record may take at most while it is written and
    /// sealed (the store reserves it for every open record): the kept
    /// first half, the raw last part waiting in two segments, its encoded
    /// copy, the header, and room for frames that straddle a limit.
    pub fn reservation(&self) -> u64 {
        self.output_bytes
            .saturating_mul(3)
            .saturating_div(2)
            .saturating_add(1 << 20)
    }
}

/// The audit trail ([`crate::audit`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Rotate the active file once it holds this many bytes (at least
    /// 4096).
    pub rotate_bytes: u64,
    /// …or once it was started this long ago (1m to 366 days).
    #[serde(with = "humantime_serde_compat")]
    pub rotate_age: Duration,
    /// Rotated files kept (1 to 100000): at each rotation the oldest go
    /// beyond this many, each deletion itself an audit line.
    pub retain_files: u64,
    /// …and rotated files last written longer ago than this go too (1 day
    /// to 3660 days); the newest rotated file is always kept.
    #[serde(with = "humantime_serde_compat")]
    pub retain_age: Duration,
    /// Attempts at names codext does not know, and rate-limit refusals,
    /// are counted over this window (1s to 1h) and written as summaries at
    /// its end.
    #[serde(with = "humantime_serde_compat")]
    pub summary_window: Duration,
    /// Sources with a summary line of their own per window (1 to 1000);
    /// all others share one more line.
    pub summary_sources: u32,
    /// Also send each audit line to the system log (journald, else
    /// `/dev/log`), facility authpriv, with `CODEXT_*` fields.
    pub system_log: bool,
}

impl Default for AuditConfig {
    fn default() -> AuditConfig {
        AuditConfig {
            rotate_bytes: 16 << 20,
            rotate_age: Duration::from_secs(30 * 24 * 3600),
            retain_files: 24,
            retain_age: Duration::from_secs(400 * 24 * 3600),
            summary_window: Duration::from_secs(60),
            summary_sources: 16,
            system_log: true,
        }
    }
}

/// `[channels]`: one table per channel the helper knows, named as the
/// channel process names itself in `hello` (a name it does not know is an
/// unknown key).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ChannelTables {
    /// `[channels.digitalocean]`.
    digitalocean: Option<DigitalOcean>,
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
    /// (issue 26: and the profiles each may ask for).
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

/// How temporary accounts look.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Accounts {
    /// Lowest uid handed out.
    pub uid_min: u32,
    /// Highest uid handed out.
    pub uid_max: u32,
    /// The one group all temporary users share (created by `init`).
    pub group: String,
    /// Parent of the home folders.
    pub home_base: PathBuf,
    /// Login shell.
    pub shell: PathBuf,
    /// The locked system account the killer runs as (created by `init`;
    /// never used for anything else).
    pub killer_user: String,
    /// (issue 26) Supplementary groups a profile may give (the operator's
    /// allow-list; root-equivalent groups are refused whatever it says).
    pub allowed_groups: Vec<String>,
}

/// Attempt limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wrong passwords (or wrong answers) before a puzzle is revoked.
    pub max_attempts: u32,
    /// Failed verifications allowed per source address per minute.
    pub failures_per_source_per_minute: u32,
    /// How often the reaper enforces the time limits (1s to 60s).
    #[serde(with = "humantime_serde_compat")]
    pub reaper_interval: Duration,
    /// Longest wait for `useradd`, `userdel` or the killer (1s to 60s);
    /// past it the tool is killed and the step retried.
    #[serde(with = "humantime_serde_compat")]
    pub tool_timeout: Duration,
    /// Longest one sweep of a removed uid's files may run (1s to 60s); the
    /// reaper carries on where it stopped.
    #[serde(with = "humantime_serde_compat")]
    pub sweep_time: Duration,
}

/// Time limits, as humantime strings in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ttl {
    /// How long a puzzle may stay unanswered.
    #[serde(with = "humantime_serde_compat")]
    pub puzzle: Duration,
    /// How long an armed user may take to log in.
    #[serde(with = "humantime_serde_compat")]
    pub armed: Duration,
    /// How long the whole grant lasts after login.
    #[serde(with = "humantime_serde_compat")]
    pub grant: Duration,
    /// Longest linger an agent may ask for (a whole task on one grant): how long an account
    /// record and home may outlive the grant's last session, so the agent
    /// can reconnect with its key (never past the grant; 0 turns lingering
    /// off).
    #[serde(with = "humantime_serde_compat")]
    pub linger_max: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            version: 1,
            server_key: PathBuf::from("/etc/codext/server_key"),
            state_dir: PathBuf::from("/var/lib/codext"),
            socket: PathBuf::from("/run/codext/helper.sock"),
            userdb_dir: PathBuf::from("/run/userdb"),
            audit_log: PathBuf::from("/var/log/codext/audit.jsonl"),
            server_id: String::new(),
            host_key_dir: PathBuf::from("/etc/ssh"),
            host_keys: Vec::new(),
            pam_services: vec!["sshd".into()],
            log_level: crate::log::Level::Info,
            accounts: Accounts::default(),
            limits: Limits::default(),
            ttl: Ttl::default(),
            digitalocean: DigitalOcean::default(),
            digitalocean_table: None,
            channels: ChannelTables::default(),
            audit: AuditConfig::default(),
            recording: Recording::default(),
            containers: Containers::default(),
            profile_table: BTreeMap::new(),
            profiles: crate::profiles::Profiles::default(),
        }
    }
}

impl Default for Accounts {
    fn default() -> Accounts {
        Accounts {
            uid_min: 59000,
            uid_max: 59999,
            group: "codext".into(),
            home_base: PathBuf::from("/home"),
            shell: PathBuf::from("/bin/bash"),
            killer_user: "codext-killer".into(),
            allowed_groups: Vec::new(),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_attempts: 3,
            failures_per_source_per_minute: 20,
            reaper_interval: Duration::from_secs(5),
            tool_timeout: Duration::from_secs(10),
            sweep_time: Duration::from_secs(10),
        }
    }
}

impl Default for Ttl {
    fn default() -> Ttl {
        Ttl {
            puzzle: Duration::from_secs(600),
            armed: Duration::from_secs(300),
            grant: Duration::from_secs(8 * 3600),
            linger_max: Duration::from_secs(15 * 60),
        }
    }
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
    /// Reads `path`; a missing file gives the defaults. Any other problem
    /// (unreadable, bad TOML, unknown key, bad value) is an error.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Config::default().validated(path)
            }
            Err(e) => return Err(HelperError::config_read(path, e)),
        };
        Config::from_toml_str(&text, path)
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text.get(..s.start).unwrap_or(text).lines().count().max(1));
            let at = line.map(|n| format!(" line {n}:")).unwrap_or_default();
            let msg = e.message().trim();
            let msg = if msg.is_empty() { "invalid TOML" } else { msg };
            HelperError::ConfigParse {
                what: format!("{}:{at} {msg}", origin.display()),
                source: e,
            }
        })?;
        cfg.validated(origin)
    }

    fn validated(mut self, path: &Path) -> Result<Config> {
        let bad = |m: String| Err(HelperError::Config(format!("{}: {m}", path.display())));
        match (
            self.digitalocean_table.take(),
            self.channels.digitalocean.take(),
        ) {
            (Some(_), Some(_)) => {
                return bad(
                    "[digitalocean] and [channels.digitalocean] are the same table written twice: \
                     keep one ([channels.digitalocean]; [digitalocean] is its earlier spelling)"
                        .into(),
                )
            }
            (Some(d), None) | (None, Some(d)) => self.digitalocean = d,
            (None, None) => {}
        }
        if self.version != 1 {
            return bad(format!(
                "version {} is not supported (this codext-helper reads version 1)",
                self.version
            ));
        }
        for (name, p) in [
            ("server_key", &self.server_key),
            ("state_dir", &self.state_dir),
            ("socket", &self.socket),
            ("userdb_dir", &self.userdb_dir),
            ("audit_log", &self.audit_log),
            ("host_key_dir", &self.host_key_dir),
            ("accounts.home_base", &self.accounts.home_base),
            ("accounts.shell", &self.accounts.shell),
            ("recording.recorder", &self.recording.recorder),
        ] {
            if !p.is_absolute() {
                return bad(format!(
                    "{name} must be an absolute path, not {}",
                    p.display()
                ));
            }
        }
        let a = &self.accounts;
        // Debian's UID_MIN..UID_MAX, and below systemd's reserved ranges
        // (60001+ homed, 61184-65519 dynamic users).
        if a.uid_min < 1000 || a.uid_max > 60000 || a.uid_min > a.uid_max {
            return bad(format!(
                "accounts.uid_min..uid_max must lie within 1000..=60000 (got {}..={})",
                a.uid_min, a.uid_max
            ));
        }
        if !system_name(&a.group) {
            return bad(format!(
                "accounts.group {:?} is not a valid group name",
                a.group
            ));
        }
        if !(1..=60).contains(&self.limits.sweep_time.as_secs()) {
            return bad("limits.sweep_time must be between 1s and 60s".into());
        }
        if !(1..=60).contains(&self.limits.tool_timeout.as_secs()) {
            return bad("limits.tool_timeout must be between 1s and 60s".into());
        }
        if !system_name(&a.killer_user)
            || a.killer_user == a.group
            || a.killer_user.starts_with("user-")
        {
            return bad(format!(
                "accounts.killer_user {:?} is not a valid, distinct system user name",
                a.killer_user
            ));
        }
        if self.limits.max_attempts == 0 {
            return bad("limits.max_attempts must be at least 1".into());
        }
        if !(1..=60).contains(&self.limits.reaper_interval.as_secs()) {
            return bad("limits.reaper_interval must be between 1s and 60s".into());
        }
        for (name, d) in [
            ("ttl.puzzle", self.ttl.puzzle),
            ("ttl.armed", self.ttl.armed),
            ("ttl.grant", self.ttl.grant),
        ] {
            if d.as_secs() < 1 || d.as_secs() > 7 * 24 * 3600 {
                return bad(format!("{name} must be between 1s and 7 days"));
            }
        }
        // A linger never outlasts the grant anyway (it is cut at the
        // grant's end), so a short grant with the default cap is fine.
        if self.ttl.linger_max.as_secs() > 7 * 24 * 3600 {
            return bad("ttl.linger_max must be at most 7 days (0s turns lingering off)".into());
        }
        if !self.server_id.is_empty()
            && (self.server_id.len() > 64
                || !self
                    .server_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b)))
        {
            return bad("server_id must be 1 to 64 characters of [A-Za-z0-9._:-]".into());
        }
        let d = &self.digitalocean;
        if d.poll_busy < Duration::from_secs(1)
            || d.poll_idle < d.poll_busy
            || d.poll_idle > Duration::from_secs(300)
        {
            return bad(
                "digitalocean.poll_busy must be at least 1s and poll_idle between it and 5m".into(),
            );
        }
        for (fp, _) in d.allowed_keys.entries() {
            if codext_core::Fingerprint::parse(&fp).is_none() {
                return bad(format!(
                    "digitalocean.allowed_keys: {fp:?} is not a SHA256:… fingerprint"
                ));
            }
        }
        if !d.token_file.is_absolute() {
            return bad("digitalocean.token_file must be an absolute path".into());
        }
        if !d.channel_socket.is_absolute() || d.channel_socket == self.socket {
            return bad(
                "digitalocean.channel_socket must be an absolute path other than socket".into(),
            );
        }
        if !(1..=100).contains(&d.budget_share) {
            return bad("digitalocean.budget_share must be a percentage, 1 to 100".into());
        }
        if d.channel_user.is_empty() || d.channel_user == "root" {
            return bad("digitalocean.channel_user must name an unprivileged system user".into());
        }
        let au = &self.audit;
        if au.rotate_bytes < 4096 {
            return bad("audit.rotate_bytes must be at least 4096".into());
        }
        if !(60..=366 * 24 * 3600).contains(&au.rotate_age.as_secs()) {
            return bad("audit.rotate_age must be between 1m and 366 days".into());
        }
        if !(1..=100_000).contains(&au.retain_files) {
            return bad("audit.retain_files must be between 1 and 100000".into());
        }
        if !(24 * 3600..=3660 * 24 * 3600).contains(&au.retain_age.as_secs()) {
            return bad("audit.retain_age must be between 1 day and 3660 days".into());
        }
        if !(1..=3600).contains(&au.summary_window.as_secs()) {
            return bad("audit.summary_window must be between 1s and 1h".into());
        }
        if !(1..=1000).contains(&au.summary_sources) {
            return bad("audit.summary_sources must be between 1 and 1000".into());
        }
        if self.pam_services.is_empty() {
            return bad("pam_services must name at least one service".into());
        }
        let r = &self.recording;
        if !system_name(&r.group)
            || r.group == a.group
            || r.group == a.killer_user
            || r.group == d.channel_user
        {
            return bad(format!(
                "recording.group {:?} must be a valid group name of its own",
                r.group
            ));
        }
        if !(64 << 10..=1 << 30).contains(&r.output_bytes) {
            return bad("recording.output_bytes must be between 65536 and 1073741824".into());
        }
        if r.input_bytes > r.output_bytes {
            return bad("recording.input_bytes must be at most recording.output_bytes".into());
        }
        if r.store_bytes < r.reservation().saturating_mul(4) {
            return bad(format!(
                "recording.store_bytes must hold at least 4 channels' records at once: at least {} with output_bytes = {}",
                r.reservation().saturating_mul(4),
                r.output_bytes
            ));
        }
        if !(3600..=10 * 366 * 24 * 3600).contains(&r.max_age.as_secs()) {
            return bad("recording.max_age must be between 1h and 10 years".into());
        }
        if r.enabled && r.recorder == self.accounts.shell {
            return bad(
                "recording.recorder must not be accounts.shell (the recorder runs the shell)"
                    .into(),
            );
        }
        // (issue 26) Profiles, and the keys' profiles naming them.
        let c = &self.containers;
        if !c.docker.is_absolute() {
            return bad("containers.docker must be an absolute path".into());
        }
        if !c
            .docker_host
            .strip_prefix("unix://")
            .is_some_and(|p| Path::new(p).is_absolute())
        {
            return bad(
                "containers.docker_host must be unix:///ABSOLUTE/PATH (a local socket)".into(),
            );
        }
        if !(1..=600).contains(&c.timeout.as_secs()) {
            return bad("containers.timeout must be between 1s and 10m".into());
        }
        for g in &a.allowed_groups {
            if !system_name(g) {
                return bad(format!(
                    "accounts.allowed_groups: {g:?} is not a group name"
                ));
            }
        }
        let own = [
            a.group.as_str(),
            a.killer_user.as_str(),
            d.channel_user.as_str(),
            r.group.as_str(),
        ];
        let socket = c.socket();
        let cx = crate::profiles::Context {
            allowed_groups: &a.allowed_groups,
            own_names: &own,
            docker_socket: &socket,
        };
        let profiles = match crate::profiles::check(&self.profile_table, &cx) {
            Ok(p) => p,
            Err(e) => return bad(e),
        };
        for (fp, names) in d.allowed_keys.entries() {
            if names.is_empty() {
                return bad(format!(
                    "digitalocean.allowed_keys: {fp} may ask for no profile (list at least one)"
                ));
            }
            for n in names {
                let known = codext_core::ProfileName::parse(&n)
                    .ok()
                    .is_some_and(|n| profiles.get(&n).is_some());
                if !known {
                    return bad(format!(
                        "digitalocean.allowed_keys: {fp} names the profile {n:?}, which [profiles] does not define"
                    ));
                }
            }
        }
        if profiles.gated().next().is_some() && !r.recorder.is_absolute() {
            return bad(
                "recording.recorder must be an absolute path (the gate of every profile)".into(),
            );
        }
        let mut cfg = self;
        cfg.profiles = profiles;
        Ok(cfg)
    }

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

    /// (issue 26) The profile `name`, if configured.
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

/// A group or system user name `useradd`/`groupadd` take everywhere: 1 to
/// 32 of `a-z`, `0-9`, `_`, `-`.
fn system_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

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
