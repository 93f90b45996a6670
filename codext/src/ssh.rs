//! Logging in with the stock `ssh` client.
//!
//! * The host is checked *strictly* against the host-key fingerprints the
//!   server signed into the puzzle: `ssh-keyscan` fetches the keys the host
//!   offers, only those whose fingerprint was signed are written to a
//!   known-hosts file of codext's own, and ssh runs with
//!   `StrictHostKeyChecking=yes` against that file alone. A man in the
//!   middle has no signed key, so ssh refuses it before any password is
//!   sent. No trust on first use.
//! * The password comes from memory through [`crate::askpass`].
//! * Only password authentication is attempted: no public keys, no agent,
//!   no keyboard-interactive, one prompt; no forwarding of any kind.

use crate::askpass;
use crate::error::{ClientError, Result};
use codext_core::keys::Fingerprint;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
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
}

/// A private folder removed on drop.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> Result<PrivateDir> {
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

/// Keys the host offers (`ssh-keyscan`), kept only if their fingerprint
/// was signed. Returns known-hosts lines and the key types kept.
pub fn verified_host_keys(
    host: &str,
    port: u16,
    signed: &[Fingerprint],
) -> Result<(Vec<String>, Vec<String>)> {
    let out = Command::new("ssh-keyscan")
        .args(["-T", "5", "-p", &port.to_string(), "--", host])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ClientError::Other(format!("cannot run ssh-keyscan: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = Vec::new();
    let mut types = Vec::new();
    let mut offered = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut parts = line.splitn(2, ' ');
        let (Some(_), Some(key)) = (parts.next(), parts.next()) else {
            continue;
        };
        offered += 1;
        let Ok(fp) = codext_core::hostkeys::fingerprint_line(key) else {
            continue;
        };
        if signed.contains(&fp) {
            lines.push(line.to_owned());
            if let Some(t) = key.split(' ').next() {
                types.push(t.to_owned());
            }
        }
    }
    if offered == 0 {
        return Err(ClientError::Host(format!(
            "{host} port {port} offered no SSH host key (is sshd reachable?)"
        )));
    }
    if lines.is_empty() {
        return Err(ClientError::Host(format!(
            "none of the {offered} host keys {host} offers was signed into the puzzle: not the server that issued it (man in the middle?); refusing to send the password"
        )));
    }
    Ok((lines, types))
}

fn host_key_algorithms(types: &[String]) -> String {
    let mut algs: Vec<&str> = Vec::new();
    for t in types {
        match t.as_str() {
            "ssh-rsa" => algs.extend(["rsa-sha2-512", "rsa-sha2-256"]),
            other => algs.push(other),
        }
    }
    algs.join(",")
}

/// Runs ssh for `login`; returns ssh's exit status.
pub fn run(login: &Login) -> Result<ExitStatus> {
    let (known, types) = verified_host_keys(&login.host, login.port, &login.host_keys)?;
    let dir = PrivateDir::new()?;
    let known_hosts = dir.0.join("known_hosts");
    std::fs::write(&known_hosts, known.join("\n") + "\n")
        .map_err(|e| ClientError::Other(format!("cannot write {}: {e}", known_hosts.display())))?;
    let server = askpass::Server::start(&dir.0, login.password.clone())?;
    let status = ssh_command(
        login,
        &known_hosts,
        &host_key_algorithms(&types),
        server.path(),
    )?
    .status()
    .map_err(|e| ClientError::Other(format!("cannot run ssh: {e}")))?;
    server.finish();
    Ok(status)
}

fn ssh_command(
    login: &Login,
    known_hosts: &Path,
    algorithms: &str,
    socket: &Path,
) -> Result<Command> {
    let me = std::env::current_exe()
        .map_err(|e| ClientError::Other(format!("cannot find my own path: {e}")))?;
    let mut cmd = Command::new("ssh");
    cmd.arg("-F").arg("none");
    for opt in [
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "GlobalKnownHostsFile=/dev/null".into(),
        "StrictHostKeyChecking=yes".into(),
        "UpdateHostKeys=no".into(),
        format!("HostKeyAlgorithms={algorithms}"),
        "PreferredAuthentications=password".into(),
        "PubkeyAuthentication=no".into(),
        "KbdInteractiveAuthentication=no".into(),
        "GSSAPIAuthentication=no".into(),
        "HostbasedAuthentication=no".into(),
        "IdentitiesOnly=yes".into(),
        "IdentityAgent=none".into(),
        "NumberOfPasswordPrompts=1".into(),
        "ControlMaster=no".into(),
        "ControlPath=none".into(),
        "ForwardAgent=no".into(),
        "ForwardX11=no".into(),
        "ClearAllForwardings=yes".into(),
        "ConnectTimeout=10".into(),
        "LogLevel=ERROR".into(),
    ] {
        cmd.arg("-o").arg(opt);
    }
    cmd.arg("-p")
        .arg(login.port.to_string())
        .arg("-l")
        .arg(&login.user)
        .arg("--")
        .arg(&login.host);
    cmd.args(&login.command);
    cmd.env_remove("SSH_AUTH_SOCK")
        .env_remove("DISPLAY")
        .env("SSH_ASKPASS", me)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env(askpass::ENV, socket);
    Ok(cmd)
}
