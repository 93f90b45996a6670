//! The files of an open task (a whole task on one grant) under `~/.ssh/codext/` and the
//! ssh config that makes `codext-<name>` an alias stock tools find: the
//! `Host` block (host keys pinned through `KnownHostsCommand`, the private
//! agent, batch mode) and the `Include` at the top of `~/.ssh/config`.

use crate::error::{ClientError, Result};
use crate::ssh;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The line `open` puts at the top of `~/.ssh/config`.
pub const INCLUDE_LINE: &str = "Include ~/.ssh/codext/*.conf";

/// The files of one open task.
#[derive(Debug)]
pub struct Files {
    /// `~/.ssh/codext`.
    pub dir: PathBuf,
    /// The name.
    pub name: String,
}

impl Files {
    /// The files of `name` (which must be a valid name).
    pub fn of(name: &str) -> Result<Files> {
        check_name(name)?;
        Ok(Files {
            dir: home()?.join(".ssh/codext"),
            name: name.to_owned(),
        })
    }
    fn path(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.name))
    }
    /// The ssh config with the alias.
    pub fn conf(&self) -> PathBuf {
        self.path("conf")
    }
    /// The master's control socket.
    pub fn control(&self) -> PathBuf {
        self.path("ctl")
    }
    /// The private agent's socket.
    pub fn agent(&self) -> PathBuf {
        self.path("agent")
    }
    /// The agent key's public half (`IdentityFile`).
    pub fn public(&self) -> PathBuf {
        self.path("pub")
    }
    /// What `close` needs to know (user, agent pid, grant end).
    pub fn state(&self) -> PathBuf {
        self.path("json")
    }
    /// The alias.
    pub fn alias(&self) -> String {
        format!("codext-{}", self.name)
    }
}

/// A name: 1 to 32 of `[a-z0-9_-]`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<()> {
    let ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ClientError::Input(format!(
            "{name:?} is not a usable name: use 1 to 32 of a-z, 0-9, - and _ (--name)"
        )))
    }
}

/// The default name for `host`: its letters and digits, `.` and `:` made `-`.
pub fn default_name(host: &str) -> String {
    let n: String = host
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(32)
        .collect();
    n.trim_matches('-').to_owned()
}

pub(crate) fn home() -> Result<PathBuf> {
    // ssh finds ~/.ssh/config through the password database, not $HOME:
    // so must we, or the alias lands where ssh never looks.
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.dir)
        .ok_or_else(|| {
            ClientError::Other(format!("uid {uid} has no home in the password database"))
        })
}

pub(crate) fn private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| ClientError::Other(format!("cannot create {}: {e}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| ClientError::Other(format!("cannot chmod {}: {e}", dir.display())))
}

/// Writes `path` (mode 0600) through a temporary file and a rename.
pub(crate) fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let fail =
        |e: std::io::Error| ClientError::Other(format!("cannot write {}: {e}", path.display()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// The `Host codext-<name>` block.
pub fn config_text(files: &Files, login: &ssh::Login, idle: Duration) -> Result<String> {
    if login.host.is_empty()
        || !login
            .host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:_".contains(&b))
    {
        return Err(ClientError::Input(format!(
            "{:?} cannot be written into an ssh config: give a host name or address",
            login.host
        )));
    }
    let show = |p: PathBuf| p.display().to_string();
    for p in [files.control(), files.agent(), files.public()] {
        let text = show(p);
        // Unix socket paths are short (108 bytes, and ssh adds a suffix
        // while it creates the control socket); ssh options cannot quote.
        if text.len() > 80 || text.contains([' ', '"', '\'', '%', '\\']) {
            return Err(ClientError::Other(format!(
                "{text} is too long or holds a character ssh cannot take; use a shorter --name or home"
            )));
        }
    }
    Ok(format!(
        "# Written by `codext open` for {user}@{host}:{port}; removed by `codext close {name}`.\n\
         Host {alias}\n\
         \x20   HostName {host}\n\
         \x20   Port {port}\n\
         \x20   User {user}\n\
         \x20   ControlMaster auto\n\
         \x20   ControlPath {ctl}\n\
         \x20   ControlPersist {idle}\n\
         \x20   UserKnownHostsFile none\n\
         \x20   GlobalKnownHostsFile none\n\
         \x20   KnownHostsCommand {khc}\n\
         \x20   StrictHostKeyChecking yes\n\
         \x20   CheckHostIP no\n\
         \x20   UpdateHostKeys no\n\
         \x20   IdentityAgent {agent}\n\
         \x20   IdentityFile {public}\n\
         \x20   IdentitiesOnly yes\n\
         \x20   PreferredAuthentications publickey\n\
         \x20   PasswordAuthentication no\n\
         \x20   KbdInteractiveAuthentication no\n\
         \x20   BatchMode yes\n\
         \x20   ForwardAgent no\n\
         \x20   ForwardX11 no\n\
         \x20   ClearAllForwardings yes\n\
         \x20   ServerAliveInterval 15\n\
         \x20   ServerAliveCountMax 3\n\
         \x20   ConnectTimeout 10\n\
         \x20   LogLevel ERROR\n",
        user = login.user,
        host = login.host,
        port = login.port,
        name = files.name,
        alias = files.alias(),
        ctl = show(files.control()),
        idle = idle.as_secs().max(1),
        khc = ssh::known_hosts_command(&login.host_keys)?,
        agent = show(files.agent()),
        public = show(files.public()),
    ))
}

/// Puts [`INCLUDE_LINE`] at the top of `~/.ssh/config` (once).
pub fn ensure_include() -> Result<PathBuf> {
    let ssh_dir = home()?.join(".ssh");
    if !ssh_dir.exists() {
        private_dir(&ssh_dir)?;
    }
    let path = ssh_dir.join("config");
    let old = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(ClientError::Other(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    let first = old
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    if first == Some(INCLUDE_LINE) {
        return Ok(path);
    }
    let new = format!(
        "# codext: aliases of open tasks (`codext open`); first, so no Host block above catches them\n{INCLUDE_LINE}\n\n{old}"
    );
    write_private(&path, &new)?;
    Ok(path)
}
