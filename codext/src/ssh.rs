//! Logging in with the stock `ssh` client.
//!
//! * The host is checked *strictly* against the host-key fingerprints the
//!   server signed into the puzzle, inside ssh's own handshake: ssh asks
//!   `codext known-hosts` (its `KnownHostsCommand`) about the key the
//!   server offers, and codext vouches for it — prints it as a known-hosts
//!   line — only if its SHA-256 fingerprint was signed. No other known-hosts
//!   file is consulted and `StrictHostKeyChecking=yes` refuses anything
//!   else, so a man in the middle, who has no signed key, is refused before
//!   the password is sent. No trust on first use, and no separate
//!   `ssh-keyscan` connection.
//! * The password comes from memory through [`crate::askpass`].
//! * Only password authentication is attempted: no public keys, no agent,
//!   no keyboard-interactive, one prompt; no forwarding of any kind.

use crate::askpass;
use crate::error::{ClientError, Result};
use codext_core::encoding::hex;
use codext_core::keys::Fingerprint;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use zeroize::Zeroizing;

/// One login to do.
#[derive(Debug)]
pub struct Login {
    /// Host name or address.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// The temporary user.
    pub user: String,
    /// The token's password form.
    pub password: Zeroizing<String>,
    /// Signed host-key fingerprints.
    pub host_keys: Vec<Fingerprint>,
    /// Remote command (empty: a shell).
    pub command: Vec<String>,
    /// The profile the puzzle grants (what the account may do).
    pub profile: codext_core::ProfileName,
}

impl Login {
    /// The login a solved puzzle allows, to `host:port`.
    pub fn from_puzzle(
        opened: &codext_core::OpenedPuzzle,
        host: String,
        port: u16,
        command: Vec<String>,
    ) -> Login {
        Login {
            host,
            port,
            user: opened.content.user.to_string(),
            password: opened.content.token.password(),
            host_keys: opened.content.host_keys.clone(),
            command,
            profile: opened.content.profile.clone(),
        }
    }
}

/// A private folder removed on drop.
pub(crate) struct PrivateDir(pub(crate) PathBuf);

impl PrivateDir {
    pub(crate) fn new() -> Result<PrivateDir> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let rand = codext_core::random::bytes::<8>()?;
        let dir = base.join(format!(
            "codext-{}-{}",
            std::process::id(),
            codext_core::encoding::hex(&rand)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| ClientError::Other(format!("cannot create {}: {e}", dir.display())))?;
        Ok(PrivateDir(dir))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What `codext known-hosts HOST TYPE KEY FINGERPRINT…` prints: the
/// known-hosts line for the offered key if its fingerprint is among the
/// signed ones, else nothing (ssh then refuses the host). ssh first asks
/// for its algorithm preferences before any key was offered, passing
/// `NONE` (OpenSSH 9.2; empty in other releases) as TYPE and KEY: nothing
/// to vouch for yet.
pub fn known_hosts_line(
    host: &str,
    key_type: &str,
    key: &str,
    signed: &[String],
) -> std::result::Result<Option<String>, String> {
    let absent = |s: &str| s.is_empty() || s == "NONE";
    if absent(key_type) || absent(key) {
        return Ok(None);
    }
    let fp = codext_core::hostkeys::fingerprint_line(&format!("{key_type} {key}"))
        .map_err(|e| format!("the host key ssh passed is unreadable: {e}"))?;
    if signed.iter().any(|s| Fingerprint::parse(s) == Some(fp)) {
        Ok(Some(format!("{host} {key_type} {key}")))
    } else {
        Err(format!(
            "{host} offered host key {fp} ({key_type}), which the server did not sign into the puzzle: not the server that issued it (man in the middle?); refusing it"
        ))
    }
}

/// Runs ssh for `login`; returns ssh's exit status.
pub fn run(login: &Login) -> Result<ExitStatus> {
    let dir = PrivateDir::new()?;
    let server = askpass::Server::start(&dir.0, login.password.clone())?;
    let status = ssh_command(login, server.path())?
        .status()
        .map_err(|e| ClientError::Other(format!("cannot run ssh: {e}")))?;
    server.finish();
    Ok(status)
}

/// Knocks on the server's SSH port so its channel polls the API at once
/// (docs/DIGITALOCEAN.md, "API budget"): one password attempt, in the
/// background, at a random codext name no server knows, with a random
/// throwaway password. The server's helper sees an unknown codext name and
/// wakes its channel; the attempt itself fails. Nothing of value crosses:
/// so the host key is not checked (the agent has no puzzle yet to check it
/// against) and nothing is remembered of it.
pub fn knock(host: &str, port: u16) -> Result<std::thread::JoinHandle<()>> {
    let user = format!("user-{}", hex(&codext_core::random::bytes::<6>()?));
    let password = Zeroizing::new(hex(&codext_core::random::bytes::<16>()?));
    let me = PathBuf::from(my_path()?);
    let host = host.to_owned();
    std::thread::Builder::new()
        .name("knock".into())
        .spawn(move || {
            let Ok(dir) = PrivateDir::new() else {
                return;
            };
            let Ok(server) = askpass::Server::start(&dir.0, password) else {
                return;
            };
            let mut cmd = password_ssh(
                &me,
                server.path(),
                &[
                    // Nothing of value crosses: any host key will do.
                    "UserKnownHostsFile=/dev/null",
                    "GlobalKnownHostsFile=/dev/null",
                    "StrictHostKeyChecking=no",
                    "ConnectTimeout=5",
                    "LogLevel=QUIET",
                ],
                port,
                &user,
                &host,
            );
            cmd.arg("true")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let _ = cmd.status();
            server.finish();
        })
        .map_err(|e| ClientError::Other(format!("cannot start the knock: {e}")))
}

/// This program's path, as it may be named in an ssh option.
pub(crate) fn my_path() -> Result<String> {
    let me = std::env::current_exe()
        .map_err(|e| ClientError::Other(format!("cannot find my own path: {e}")))?;
    me.to_str()
        .filter(|s| !s.contains(['"', '\'', '\\', ' ', '%']))
        .map(str::to_owned)
        .ok_or_else(|| {
            ClientError::Other(format!(
                "{} cannot be named in an ssh option; install codext elsewhere",
                me.display()
            ))
        })
}

/// The `KnownHostsCommand` value that vouches for exactly `host_keys`.
/// ssh expands its tokens and then splits the command into arguments
/// itself, honouring quotes (OpenSSH's `argv_split`): every token is
/// quoted, so no host name can add an argument.
pub(crate) fn known_hosts_command(host_keys: &[Fingerprint]) -> Result<String> {
    let fingerprints: Vec<String> = host_keys.iter().map(|f| f.to_string()).collect();
    Ok(format!(
        "{} known-hosts '%H' '%t' '%K' {}",
        my_path()?,
        fingerprints.join(" ")
    ))
}

/// What every ssh codext runs shares: the password, asked once through
/// the askpass socket, and nothing else; no sharing, no forwarding.
const PASSWORD_ONCE: [&str; 15] = [
    "CheckHostIP=no",
    "UpdateHostKeys=no",
    "PreferredAuthentications=password",
    "PubkeyAuthentication=no",
    "KbdInteractiveAuthentication=no",
    "GSSAPIAuthentication=no",
    "HostbasedAuthentication=no",
    "IdentitiesOnly=yes",
    "IdentityAgent=none",
    "NumberOfPasswordPrompts=1",
    "ControlMaster=no",
    "ControlPath=none",
    "ForwardAgent=no",
    "ForwardX11=no",
    "ClearAllForwardings=yes",
];

/// `ssh` for `user@host:port` with [`PASSWORD_ONCE`] and `options` (host
/// keys, timeouts, logging), its password served from `socket`; the
/// remote command goes after.
fn password_ssh(
    me: &Path,
    socket: &Path,
    options: &[&str],
    port: u16,
    user: &str,
    host: &str,
) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.arg("-F").arg("none");
    for opt in options.iter().chain(&PASSWORD_ONCE) {
        cmd.arg("-o").arg(opt);
    }
    cmd.arg("-p")
        .arg(port.to_string())
        .arg("-l")
        .arg(user)
        .arg("--")
        .arg(host)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("DISPLAY")
        .env("SSH_ASKPASS", me)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env(askpass::ENV, socket);
    cmd
}

fn ssh_command(login: &Login, socket: &Path) -> Result<Command> {
    let me = PathBuf::from(my_path()?);
    // Host keys: only what codext vouches for, strictly.
    let vouched = format!(
        "KnownHostsCommand={}",
        known_hosts_command(&login.host_keys)?
    );
    let mut cmd = password_ssh(
        &me,
        socket,
        &[
            "UserKnownHostsFile=none",
            "GlobalKnownHostsFile=none",
            &vouched,
            "StrictHostKeyChecking=yes",
            "ConnectTimeout=10",
            "LogLevel=ERROR",
        ],
        login.port,
        &login.user,
        &login.host,
    );
    cmd.args(&login.command);
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIDXmPKc3U8NGQdtDWkZXBGCHQDdHtCjUpwe5ex4S6Wrb";

    fn fp() -> String {
        codext_core::hostkeys::fingerprint_line(&format!("ssh-ed25519 {ED}"))
            .unwrap()
            .to_string()
    }

    #[test]
    fn given_signed_key_then_vouched_for() {
        let line = known_hosts_line("[127.0.0.1]:2222", "ssh-ed25519", ED, &[fp()]).unwrap();
        assert_eq!(line, Some(format!("[127.0.0.1]:2222 ssh-ed25519 {ED}")));
    }

    #[test]
    fn given_unsigned_key_then_refused_with_reason() {
        let other = "SHA256:u3lWes8tk4O8Vgke5IuqnFGxXMAdSf1KcWYArcD13dE".to_owned();
        let err = known_hosts_line("h", "ssh-ed25519", ED, &[other]).unwrap_err();
        assert!(err.contains("man in the middle"), "{err}");
        assert!(known_hosts_line("h", "ssh-ed25519", ED, &[]).is_err());
    }

    #[test]
    fn given_no_key_yet_then_nothing_to_say() {
        assert_eq!(known_hosts_line("h", "", "", &[fp()]).unwrap(), None);
        // What ssh 9.2 passes (seen with a KnownHostsCommand that logs).
        assert_eq!(
            known_hosts_line("h", "NONE", "NONE", &[fp()]).unwrap(),
            None
        );
    }

    /// ssh splits a `KnownHostsCommand` into arguments after expanding its
    /// tokens (argv_split in OpenSSH's misc.c honours single quotes): every
    /// token whose value codext does not choose itself is quoted, so a
    /// host name cannot add arguments to the command.
    #[test]
    fn given_the_known_hosts_command_then_every_token_ssh_expands_is_quoted() {
        let command = known_hosts_command(&[]).unwrap();
        let after = command
            .split_once(" known-hosts ")
            .map(|(_, rest)| rest)
            .unwrap();
        for token in ["%H", "%t", "%K"] {
            assert!(
                after.contains(&format!("'{token}'")),
                "{token} unquoted in {command:?}"
            );
        }
        assert!(!after.replace("'%H'", "").contains("%H"), "{command:?}");
    }

    #[test]
    fn given_garbage_key_then_error() {
        assert!(known_hosts_line("h", "ssh-ed25519", "!!!", &[fp()]).is_err());
    }
}
