//! A whole task on one grant: `codext open` logs in once with
//! the token and leaves an OpenSSH ControlMaster running; stock `ssh`,
//! `scp`, `rsync`, `git` and `sftp` then reach the server as
//! `codext-<name>` through it; `codext close` ends the task.
//!
//! * **One connection, one session.** sshd opens one PAM session per
//!   connection; channels multiplexed over the master open none. So the
//!   whole task is one codext session, whatever the number of commands.
//! * **The alias** lives in `~/.ssh/codext/<name>.conf`, pulled in by an
//!   `Include ~/.ssh/codext/*.conf` that `open` puts at the **top** of
//!   `~/.ssh/config`: ssh keeps the first value it reads for each option,
//!   and an `Include` further down could fall inside someone's `Host`
//!   block (then it applies only when that block matches). At the top it
//!   is read first and its `Host codext-<name>` block matches only the
//!   alias. Unlike `-F`, every tool that runs ssh (git, rsync, scp, sftp)
//!   then finds the alias with no flag of its own. `--no-include` leaves
//!   `~/.ssh/config` alone; then use `ssh -F <conf>`.
//! * **Host keys** are pinned exactly as for `codext ssh`: ssh asks
//!   `codext known-hosts` (its `KnownHostsCommand`), which vouches only for
//!   the fingerprints the server signed into the puzzle;
//!   `StrictHostKeyChecking yes`, no known-hosts file.
//! * **Reconnects** (a master that died): `ControlMaster auto` makes the
//!   next ssh the new master, logging in with the agent key from a
//!   private `ssh-agent` (`IdentityAgent`), the key added with `ssh-add -t
//!   <seconds left in the grant>`, the agent itself ended at the grant's
//!   end; `IdentitiesOnly yes` with the public half as `IdentityFile`
//!   offers that key only, `BatchMode yes` never prompts. The server
//!   accepts the key only within the grant (see the helper's
//!   `grant_keys`), and finds the account only while it lingers
//!   (`--linger`, written to `~/.codext-linger` on the server).
//! * **Ending**: `ControlPersist <idle>` ends an idle master; the server
//!   ends every connection at the grant's end; `codext close` sets the
//!   linger to 0 through the master and stops it — the last session
//!   closes and the helper removes the account at once — then stops the
//!   agent and removes the files.

pub use crate::alias::{check_name, default_name, Files, INCLUDE_LINE};
use crate::alias::{config_text, ensure_include, private_dir, write_private};
use crate::error::{ClientError, Result};
use crate::events::Reporter;
use crate::{askpass, ssh};
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What `open` needs.
#[derive(Debug)]
pub struct Open {
    /// The login the solved puzzle allows (its command is ignored).
    pub login: ssh::Login,
    /// The agent's private key (added to the private agent).
    pub key: PathBuf,
    /// Its public half, OpenSSH line.
    pub public_key: String,
    /// The alias is `codext-<name>`.
    pub name: String,
    /// Linger asked of the server, seconds.
    pub linger: u64,
    /// The master ends after this long with no command.
    pub idle: Duration,
    /// Put the `Include` at the top of `~/.ssh/config`.
    pub include: bool,
}

fn run_ok(cmd: &mut Command, what: &str) -> Result<std::process::Output> {
    let out = cmd
        .output()
        .map_err(|e| ClientError::Other(format!("cannot run {what}: {e}")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(ClientError::Other(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Runs `open` (see the module docs); returns the alias.
pub fn open(o: Open, r: &Reporter) -> Result<String> {
    let files = Files::of(&o.name)?;
    private_dir(&files.dir)?;
    if files.control().exists() && master_alive(&files) {
        return Err(ClientError::Input(format!(
            "{} is already open: use it, or `codext close {}` first",
            files.alias(),
            o.name
        )));
    }
    let _ = std::fs::remove_file(files.control());
    write_private(&files.public(), &format!("{}\n", o.public_key.trim()))?;
    write_private(&files.conf(), &config_text(&files, &o.login, o.idle)?)?;
    if o.include {
        let cfg = ensure_include()?;
        r.event(
            "config",
            &format!(
                "alias {} in {} (included from the top of {})",
                files.alias(),
                files.conf().display(),
                cfg.display()
            ),
            json!({"config": files.conf(), "included_from": cfg}),
        );
    }
    r.event(
        "login",
        &format!(
            "logging in as {} to {}:{} with the token (one connection for the whole task)",
            o.login.user, o.login.host, o.login.port
        ),
        json!({"user": o.login.user, "host": o.login.host, "port": o.login.port}),
    );
    start_master(&files, &o.login)?;
    // The grant's end, as the server wrote it into the key line it
    // authorised; the linger asked for goes the other way.
    let out = run_ok(
        ssh_alias(&files).arg(linger_command(&o.login.profile, o.linger)),
        "the first command through the master",
    )
    .map_err(|e| {
        ClientError::Login(format!(
            "{e}; the server may not offer key reconnects (an older codext-helper)"
        ))
    })?;
    let grant_until = parse_expiry(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| {
        ClientError::Login("the server's grant key line has no expiry-time: refusing to keep a key for an unbounded time".into())
    })?;
    let left = grant_until.saturating_sub(codext_core::time::now());
    let agent_pid = start_agent(&files, &o.key, left)?;
    write_private(
        &files.state(),
        &json!({"user": o.login.user, "host": o.login.host, "port": o.login.port, "alias": files.alias(),
                "grant_until": grant_until, "linger": o.linger, "agent_pid": agent_pid,
                "profile": o.login.profile.as_str()})
        .to_string(),
    )?;
    r.event(
        "connected",
        &format!(
            "ready: `ssh {alias} CMD`, scp/rsync/git/sftp with {alias} (profile {}); the grant ends {}, `codext close {}` ends it now",
            o.login.profile,
            codext_core::time::rfc3339(grant_until),
            o.name,
            alias = files.alias()
        ),
        json!({"host_alias": files.alias(), "user": o.login.user, "config": files.conf(),
               "grant_until": grant_until, "seconds_left": left, "linger": o.linger, "agent_pid": agent_pid,
               "profile": o.login.profile.as_str()}),
    );
    Ok(files.alias())
}

/// The command that asks for a linger of `secs` and prints the grant key
/// line: on a `shell` grant a shell command (what every server release
/// runs); on a grant of any other profile, where no shell runs,
/// the gate's own `codext-grant linger SECONDS`.
pub fn linger_command(profile: &codext_core::ProfileName, secs: u64) -> String {
    if profile.is_shell() {
        format!("printf '%s\\n' {secs} > ~/.codext-linger && cat /run/codext-keys/\"$USER\"")
    } else {
        format!("{} linger {secs}", codext_core::profile::GRANT_COMMAND)
    }
}

/// `ssh -F <conf> <alias>`: the alias whatever `~/.ssh/config` says.
fn ssh_alias(files: &Files) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.arg("-F").arg(files.conf());
    cmd.arg(files.alias());
    cmd.stdin(Stdio::null()).env_remove("SSH_AUTH_SOCK");
    cmd
}

fn master_alive(files: &Files) -> bool {
    Command::new("ssh")
        .arg("-F")
        .arg(files.conf())
        .args(["-O", "check"])
        .arg(files.alias())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The master: the token login, password only, then into the background.
fn start_master(files: &Files, login: &ssh::Login) -> Result<()> {
    let dir = ssh::PrivateDir::new()?;
    let server = askpass::Server::start(&dir.0, login.password.clone())?;
    let me = ssh::my_path()?;
    let mut cmd = Command::new("ssh");
    cmd.arg("-F").arg(files.conf());
    // Command-line options come first and win over the file.
    for opt in [
        "ControlMaster=yes",
        "PreferredAuthentications=password",
        "PasswordAuthentication=yes",
        "PubkeyAuthentication=no",
        "IdentityAgent=none",
        "BatchMode=no",
        "NumberOfPasswordPrompts=1",
    ] {
        cmd.arg("-o").arg(opt);
    }
    cmd.args(["-N", "-f"]).arg(files.alias());
    cmd.stdin(Stdio::null())
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("DISPLAY")
        .env("SSH_ASKPASS", &me)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env(askpass::ENV, server.path());
    // With -f, ssh returns once authenticated and the master is in the
    // background: its status is the login's. Its stderr goes to a file: a
    // pipe would stay open in the background master.
    let errors = dir.0.join("ssh.err");
    let err_file = std::fs::File::create(&errors)
        .map_err(|e| ClientError::Other(format!("cannot create {}: {e}", errors.display())))?;
    let status = cmd
        .stdout(Stdio::null())
        .stderr(err_file)
        .status()
        .map_err(|e| ClientError::Other(format!("cannot run ssh: {e}")))?;
    server.finish();
    if !status.success() {
        let text = std::fs::read_to_string(&errors).unwrap_or_default();
        return Err(ClientError::Login(format!(
            "the token login failed ({status}): {}; if the answer was accepted, the token may be used or expired: ask for a new puzzle",
            text.trim()
        )));
    }
    if !master_alive(files) {
        return Err(ClientError::Login(
            "ssh logged in but no master answers on the control socket".into(),
        ));
    }
    Ok(())
}

/// The `expiry-time` of a key line, as seconds since the epoch.
pub fn parse_expiry(line: &str) -> Option<u64> {
    let start = line.find("expiry-time=\"")? + "expiry-time=\"".len();
    let text = line.get(start..)?.split('"').next()?;
    let digits = text.strip_suffix('Z')?;
    if digits.len() != 14 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &digits[0..4],
        &digits[4..6],
        &digits[6..8],
        &digits[8..10],
        &digits[10..12],
        &digits[12..14]
    );
    humantime::parse_rfc3339(&rfc)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// The private agent: `ssh-agent -D` under `timeout` (it ends at the
/// grant's end), the key added with `ssh-add -t <seconds left>`.
fn start_agent(files: &Files, key: &Path, left: u64) -> Result<u32> {
    if left == 0 {
        return Err(ClientError::Login("the grant has already ended".into()));
    }
    let sock = files.agent();
    let _ = std::fs::remove_file(&sock);
    let child = Command::new("timeout")
        .arg(left.to_string())
        .args(["ssh-agent", "-D", "-a"])
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| ClientError::Other(format!("cannot start ssh-agent: {e}")))?;
    let pid = child.id();
    let start = Instant::now();
    while !sock.exists() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err(ClientError::Other(
                "ssh-agent did not make its socket".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    run_ok(
        Command::new("ssh-add")
            .args(["-q", "-t", &left.to_string()])
            .arg(key)
            .env("SSH_AUTH_SOCK", &sock)
            .stdin(Stdio::null()),
        "ssh-add",
    )?;
    Ok(pid)
}

/// Runs `close NAME`; returns the user whose grant ended.
pub fn close(name: &str, r: &Reporter) -> Result<String> {
    let files = Files::of(name)?;
    let state: serde_json::Value = std::fs::read(files.state())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            ClientError::Input(format!(
                "no open task named {name} (no {}): see `ls ~/.ssh/codext`",
                files.state().display()
            ))
        })?;
    let user = state["user"].as_str().unwrap_or("").to_owned();
    // A state written before profiles existed is a shell grant's.
    let profile = state["profile"]
        .as_str()
        .and_then(|p| codext_core::ProfileName::parse(p).ok())
        .unwrap_or_default();
    // Through the live master, or by a key reconnect if it died: linger 0,
    // so the helper removes the account when the last session closes.
    let told = ssh_alias(&files)
        .args(["-o", "ControlMaster=no", &linger_command(&profile, 0)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let _ = ssh_alias(&files)
        .args(["-O", "exit"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Some(pid) = state["agent_pid"]
        .as_u64()
        .and_then(|p| i32::try_from(p).ok())
    {
        // Only our `timeout ssh-agent` (the pid may have been reused).
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("ssh-agent") {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(-pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for p in [
        files.conf(),
        files.public(),
        files.state(),
        files.agent(),
        files.control(),
    ] {
        let _ = std::fs::remove_file(p);
    }
    r.event(
        "closed",
        &if told {
            format!("closed {}: the server removes {user} now", files.alias())
        } else {
            format!("closed {}: the server could not be told (unreachable, or the grant already over); {user} goes at its linger's or grant's end", files.alias())
        },
        json!({"host_alias": files.alias(), "user": user, "server_told": told}),
    );
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_key_line_then_expiry_parsed_and_garbage_refused() {
        let line =
            "restrict,pty,expiry-time=\"20000229000000Z\" ssh-rsa AAAA codext-grant-user-1\n";
        assert_eq!(parse_expiry(line), Some(951_782_400));
        assert_eq!(parse_expiry("ssh-rsa AAAA"), None);
        assert_eq!(parse_expiry("expiry-time=\"2000022900Z\""), None);
        assert_eq!(parse_expiry("expiry-time=\"20000229000000\""), None);
    }

    #[test]
    fn given_names_then_only_safe_ones_pass() {
        assert!(check_name("web1").is_ok());
        assert!(check_name("-x").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
        assert!(check_name(&"a".repeat(33)).is_err());
        assert_eq!(default_name("127.0.0.1"), "127-0-0-1");
        assert_eq!(default_name("Web1.Example.com"), "web1-example-com");
    }
}
