//! The table of each `helper.toml` section but the channels'
//! ([`super::channels`]): what its keys mean (their defaults are in
//! [`super::defaults`], their checks in [`super::parse`]).

use super::humantime_serde_compat;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[containers]`: the docker CLI the helper runs for
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

impl Recording {
    /// Disk one channel's record may take at most while it is written and
    /// sealed (the store reserves it for every open record): the raw first
    /// half (the head segment) and last part (two tail segments), their
    /// encoded copy in the record, the header, and room for frames that
    /// straddle a limit.
    pub fn reservation(&self) -> u64 {
        self.output_bytes.saturating_mul(2).saturating_add(1 << 20)
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
    /// Supplementary groups a profile may give (the operator's
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
