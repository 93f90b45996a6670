//! Reading `helper.toml`: a missing file is the defaults; anything else
//! wrong (unreadable, bad TOML, an unknown key, a bad value, tables that
//! contradict each other) is an error naming the file, the line when TOML
//! knows it, and the key.

use super::Config;
use crate::error::{HelperError, Result};
use std::path::Path;
use std::time::Duration;

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
        // Profiles, and the keys' profiles naming them.
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
