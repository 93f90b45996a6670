//! Grant profiles: what the account of a grant may do.
//!
//! `[profiles.<name>]` in `helper.toml`, each of a kind:
//! * `shell` — a plain shell, today's behaviour and the default; the
//!   profile `shell` always exists (defining it only adds groups or sudo
//!   rules);
//! * `commands` — a list of command lines (exact, or a prefix whose further
//!   arguments must each match a pattern), checked by the gate
//!   ([`gate`]) before anything runs; no shell ever runs; scp, sftp and
//!   rsync only where the profile lists them, confined to a folder;
//! * `container` — a container the helper starts for the grant
//!   ([`container`]), as the grant's uid:gid, never privileged, no host
//!   network unless the profile says so; every session enters it.
//!
//! Every profile may add supplementary groups (only from the operator's
//! `accounts.allowed_groups`, never one [`groups::forbidden`] names) and
//! sudo rules for named commands ([`sudoers`]); both go with the account.
//!
//! How sshd is made to send every channel of a `commands` or `container`
//! grant to the gate: each such profile has a group of its own
//! (`codext-p-<name>`, made by `init`) the account is a member of — as soon
//! as it is announced (a userdb membership record), since sshd evaluates
//! `Match` once, before authentication — and a `Match Group … User user-*`
//! block in `/etc/ssh/sshd_config.d/00-codext-profiles.conf` ([`sshd`])
//! forces the gate as the command; the requested one is in
//! `SSH_ORIGINAL_COMMAND`. The account's login shell is the recorder in
//! any case, which asks the helper and never starts a shell for such a
//! grant: two locks, either one enough.

pub mod container;
pub mod doctor;
pub mod gate;
pub mod groups;
pub mod sshd;
pub mod sudoers;

use codext_core::ProfileName;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The prefix of a profile's own group (`codext-p-<name>`).
pub const GROUP_PREFIX: &str = "codext-p-";

/// What a profile is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A plain shell.
    #[default]
    Shell,
    /// Allowed command lines only.
    Commands,
    /// A container workspace.
    Container,
}

impl Kind {
    /// Its name in `helper.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Shell => "shell",
            Kind::Commands => "commands",
            Kind::Container => "container",
        }
    }
}

/// One allowed command line of a `commands` profile, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CommandRuleConfig {
    /// Exactly this command line (words separated by spaces).
    Exact(String),
    /// These first words, then at most `max_args` more words, each
    /// matching `args` (a regular expression, anchored at both ends).
    Prefix {
        /// The first words.
        prefix: String,
        /// What every further word must match.
        args: String,
        /// Most further words (default 16).
        #[serde(default)]
        max_args: Option<usize>,
    },
}

/// A transfer a `commands` profile may allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transfer {
    /// The legacy scp protocol (`scp -O`: `scp -t`/`scp -f` on the server).
    Scp,
    /// The sftp subsystem (and OpenSSH 9's default scp).
    Sftp,
    /// `rsync` over ssh.
    Rsync,
}

/// A bind mount of a `container` profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// The host path.
    pub source: PathBuf,
    /// Where it appears in the container.
    pub target: PathBuf,
    /// Read-only (the default).
    #[serde(default = "yes")]
    pub read_only: bool,
}

fn yes() -> bool {
    true
}

/// A container's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// No network at all (only loopback): the default.
    #[default]
    None,
    /// The host's network namespace: only when the profile says so.
    Host,
}

/// `[profiles.<name>]` as written: every field of every kind; which apply
/// is checked by [`ProfileConfig::typed`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    /// `shell` (the default), `commands` or `container`.
    pub kind: Kind,
    /// Supplementary groups (from `accounts.allowed_groups` only).
    pub groups: Vec<String>,
    /// Commands the account may run as root through sudo (absolute path
    /// and fixed arguments).
    pub sudo: Vec<String>,
    /// (`commands`) the allowed command lines.
    pub commands: Vec<CommandRuleConfig>,
    /// (`commands`) the transfers allowed.
    pub transfers: Vec<Transfer>,
    /// (`commands`) where transfers land and come from, relative to the
    /// home (default `files`; the helper makes it at account creation).
    pub transfer_dir: Option<String>,
    /// (`container`) the image: `name@sha256:<64 hex>` or a local
    /// `name[:tag]` (never pulled).
    pub image: Option<String>,
    /// (`container`) the command the container runs (default `sleep
    /// infinity`).
    pub command: Vec<String>,
    /// (`container`) CPUs (default 1).
    pub cpus: Option<f64>,
    /// (`container`) memory, MiB, swap included (default 1024); the
    /// workspace is memory too.
    pub memory_mb: Option<u64>,
    /// (`container`) processes at most (default 256).
    pub pids: Option<u64>,
    /// (`container`) the workspace's size, MiB (default 512).
    pub disk_mb: Option<u64>,
    /// (`container`) device files passed in (`/dev/kfd`, `/dev/dri`).
    pub devices: Vec<PathBuf>,
    /// (`container`) bind mounts.
    pub mounts: Vec<Mount>,
    /// (`container`) `none` (default) or `host`.
    pub network: Network,
    /// (`container`) the workspace's path inside (default `/workspace`).
    pub workspace: Option<PathBuf>,
    /// (`container`) the shell sessions run in (default `/bin/sh`).
    pub shell: Option<PathBuf>,
}

/// One allowed command line, checked.
#[derive(Debug, Clone)]
pub struct CommandRule {
    /// The fixed words.
    pub words: Vec<String>,
    /// Further words: each must match this (anchored); `None` for an
    /// exact rule.
    pub args: Option<regex::Regex>,
    /// Most further words.
    pub max_args: usize,
}

/// A `commands` profile, checked.
#[derive(Debug, Clone)]
pub struct Commands {
    /// The rules, in order.
    pub rules: Vec<CommandRule>,
    /// Transfers allowed.
    pub transfers: Vec<Transfer>,
    /// Relative to the home.
    pub transfer_dir: String,
}

/// A `container` profile, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    /// The image.
    pub image: String,
    /// What the container runs.
    pub command: Vec<String>,
    /// CPUs.
    pub cpus: f64,
    /// Memory, MiB.
    pub memory_mb: u64,
    /// Processes.
    pub pids: u64,
    /// Workspace size, MiB.
    pub disk_mb: u64,
    /// Devices.
    pub devices: Vec<PathBuf>,
    /// Bind mounts.
    pub mounts: Vec<Mount>,
    /// Network.
    pub network: Network,
    /// Workspace path inside.
    pub workspace: PathBuf,
    /// Sessions' shell inside.
    pub shell: PathBuf,
}

/// What a profile's kind brings.
#[derive(Debug, Clone)]
pub enum Body {
    /// A plain shell.
    Shell,
    /// Allowed commands.
    Commands(Commands),
    /// A container.
    Container(Container),
}

/// One profile, checked.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Its name.
    pub name: ProfileName,
    /// Supplementary groups (without the profile's own group).
    pub groups: Vec<String>,
    /// sudo rules.
    pub sudo: Vec<String>,
    /// The kind's part.
    pub body: Body,
}

impl Profile {
    /// The kind.
    pub fn kind(&self) -> Kind {
        match self.body {
            Body::Shell => Kind::Shell,
            Body::Commands(_) => Kind::Commands,
            Body::Container(_) => Kind::Container,
        }
    }

    /// True when sshd must force the gate for it (no shell of the user's
    /// may run).
    pub fn gated(&self) -> bool {
        self.kind() != Kind::Shell
    }

    /// The profile's own group (only gated profiles have one).
    pub fn own_group(&self) -> Option<String> {
        self.gated().then(|| group_of(&self.name))
    }

    /// Every supplementary group the account gets: the profile's own
    /// first, then the profile's list.
    pub fn account_groups(&self) -> Vec<String> {
        self.own_group()
            .into_iter()
            .chain(self.groups.iter().cloned())
            .collect()
    }
}

/// The group of profile `name`.
pub fn group_of(name: &ProfileName) -> String {
    format!("{GROUP_PREFIX}{name}")
}

/// Every profile, checked: the configured ones and `shell`.
#[derive(Debug, Clone, Default)]
pub struct Profiles(BTreeMap<ProfileName, Profile>);

impl Profiles {
    /// The profile `name`, if it exists.
    pub fn get(&self, name: &ProfileName) -> Option<&Profile> {
        self.0.get(name)
    }

    /// Every profile, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.0.values()
    }

    /// The gated ones (commands, container).
    pub fn gated(&self) -> impl Iterator<Item = &Profile> {
        self.0.values().filter(|p| p.gated())
    }

    /// True when some profile runs containers.
    pub fn any_container(&self) -> bool {
        self.0.values().any(|p| p.kind() == Kind::Container)
    }
}

/// What the checks need from the rest of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// `accounts.allowed_groups`.
    pub allowed_groups: &'a [String],
    /// codext's own groups and system users, never given to an account.
    pub own_names: &'a [&'a str],
    /// The docker socket (`containers.docker_host` as a path).
    pub docker_socket: &'a Path,
}

/// Checks every `[profiles.<name>]` (and adds `shell` if missing).
pub fn check(
    table: &BTreeMap<String, ProfileConfig>,
    cx: &Context<'_>,
) -> Result<Profiles, String> {
    let mut out = BTreeMap::new();
    for (name, cfg) in table {
        let parsed = ProfileName::parse(name).map_err(|e| format!("profiles.{name}: {e}"))?;
        let profile = cfg
            .typed(&parsed, cx)
            .map_err(|e| format!("profiles.{name}: {e}"))?;
        out.insert(parsed, profile);
    }
    out.entry(ProfileName::shell()).or_insert(Profile {
        name: ProfileName::shell(),
        groups: Vec::new(),
        sudo: Vec::new(),
        body: Body::Shell,
    });
    Ok(Profiles(out))
}

/// The words of a command line: split on spaces (no quoting: no shell runs).
pub fn words(line: &str) -> Vec<String> {
    line.split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

impl ProfileConfig {
    fn typed(&self, name: &ProfileName, cx: &Context<'_>) -> Result<Profile, String> {
        if name.is_shell() && self.kind != Kind::Shell {
            return Err("the profile `shell` must be of kind shell".into());
        }
        for g in &self.groups {
            groups::check_allowed(g, cx.allowed_groups, cx.own_names)?;
        }
        for rule in &self.sudo {
            sudoers::check_rule(rule)?;
        }
        let not_for = |field: &str, set: bool| -> Result<(), String> {
            if set {
                Err(format!(
                    "`{field}` does not apply to kind = \"{}\"",
                    self.kind.as_str()
                ))
            } else {
                Ok(())
            }
        };
        let commands_fields = [
            ("commands", !self.commands.is_empty()),
            ("transfers", !self.transfers.is_empty()),
            ("transfer_dir", self.transfer_dir.is_some()),
        ];
        let container_fields = [
            ("image", self.image.is_some()),
            ("command", !self.command.is_empty()),
            ("cpus", self.cpus.is_some()),
            ("memory_mb", self.memory_mb.is_some()),
            ("pids", self.pids.is_some()),
            ("disk_mb", self.disk_mb.is_some()),
            ("devices", !self.devices.is_empty()),
            ("mounts", !self.mounts.is_empty()),
            ("network", self.network != Network::None),
            ("workspace", self.workspace.is_some()),
            ("shell", self.shell.is_some()),
        ];
        let body = match self.kind {
            Kind::Shell => {
                for (f, set) in commands_fields.iter().chain(&container_fields) {
                    not_for(f, *set)?;
                }
                Body::Shell
            }
            Kind::Commands => {
                for (f, set) in &container_fields {
                    not_for(f, *set)?;
                }
                Body::Commands(self.commands_body()?)
            }
            Kind::Container => {
                for (f, set) in &commands_fields {
                    not_for(f, *set)?;
                }
                Body::Container(container::check(self, cx.docker_socket)?)
            }
        };
        Ok(Profile {
            name: name.clone(),
            groups: self.groups.clone(),
            sudo: self.sudo.clone(),
            body,
        })
    }

    fn commands_body(&self) -> Result<Commands, String> {
        if self.commands.is_empty() && self.transfers.is_empty() {
            return Err("a commands profile must allow a command or a transfer".into());
        }
        let mut rules = Vec::new();
        for rule in &self.commands {
            let (line, args, max) = match rule {
                CommandRuleConfig::Exact(line) => (line, None, 0),
                CommandRuleConfig::Prefix {
                    prefix,
                    args,
                    max_args,
                } => (prefix, Some(args), max_args.unwrap_or(16)),
            };
            let words = words(line);
            if words.is_empty() {
                return Err("an empty command".into());
            }
            for w in &words {
                gate::check_plain_word(w).map_err(|e| format!("command {line:?}: {e}"))?;
            }
            let args = match args {
                None => None,
                Some(pattern) => Some(
                    regex::Regex::new(&format!("^(?:{pattern})$"))
                        .map_err(|e| format!("command {line:?}: args {pattern:?}: {e}"))?,
                ),
            };
            if max > 64 {
                return Err(format!("command {line:?}: max_args is at most 64"));
            }
            rules.push(CommandRule {
                words,
                args,
                max_args: max,
            });
        }
        let transfer_dir = self.transfer_dir.clone().unwrap_or_else(|| "files".into());
        gate::check_transfer_dir(&transfer_dir)?;
        let mut transfers = self.transfers.clone();
        transfers.sort();
        transfers.dedup();
        Ok(Commands {
            rules,
            transfers,
            transfer_dir,
        })
    }
}

#[cfg(test)]
mod tests;
