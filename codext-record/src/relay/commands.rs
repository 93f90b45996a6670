//! The commands the recorder runs: the real shell as sshd would have run
//! it, or a gated grant's allowed command, each with its environment.

use crate::Mode;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::process::Command;

fn base_name(shell: &[u8]) -> OsString {
    let base = shell.rsplit(|b| *b == b'/').next().unwrap_or(shell);
    OsString::from_vec(base.to_vec())
}

/// The real shell as sshd would have run it: `-bash` for a login, `bash
/// -c COMMAND` for a command, with the environment sshd built (`SHELL`
/// naming the real shell, so programs that start "the user's shell" do
/// not start a recorder inside the recorder).
pub(super) fn shell_command(shell: &[u8], mode: &Mode, env: &[(OsString, OsString)]) -> Command {
    let path = OsString::from_vec(shell.to_vec());
    let mut cmd = Command::new(&path);
    let base = base_name(shell);
    match mode {
        Mode::Login => {
            let mut arg0 = OsString::from("-");
            arg0.push(&base);
            cmd.arg0(arg0);
        }
        Mode::Interactive => {
            cmd.arg0(&base);
        }
        Mode::Command(c) => {
            cmd.arg0(&base).arg("-c").arg(OsString::from_vec(c.clone()));
        }
    }
    cmd.env_clear();
    for (k, v) in env {
        if k.as_bytes() != b"SHELL" {
            cmd.env(k, v);
        }
    }
    cmd.env("SHELL", &path);
    cmd
}

/// A gated grant's allowed command (or transfer), as the helper
/// decided it: the program run directly, no shell, in `cwd`, with exactly
/// the helper's environment plus the channel's own variables sshd set
/// (`TERM`, checked; `SSH_CONNECTION`, `SSH_CLIENT`, `SSH_TTY`,
/// `SSH_ORIGINAL_COMMAND`). Nothing else of the environment sshd built —
/// `~/.pam_environment` is the user's to write — reaches it.
pub(super) fn exec_command(
    argv: &[Vec<u8>],
    cwd: &[u8],
    helper_env: &[(Vec<u8>, Vec<u8>)],
    env: &[(OsString, OsString)],
) -> Command {
    let program = OsString::from_vec(argv.first().cloned().unwrap_or_default());
    let mut cmd = Command::new(&program);
    cmd.args(argv.iter().skip(1).map(|a| OsString::from_vec(a.clone())));
    cmd.current_dir(OsString::from_vec(cwd.to_vec()));
    cmd.env_clear();
    for (k, v) in helper_env {
        cmd.env(OsString::from_vec(k.clone()), OsString::from_vec(v.clone()));
    }
    for (k, v) in env {
        let keep = match k.as_bytes() {
            b"TERM" => v
                .as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(b)),
            b"SSH_CONNECTION" | b"SSH_CLIENT" | b"SSH_TTY" | b"SSH_ORIGINAL_COMMAND" => true,
            _ => false,
        };
        if keep && !helper_env.iter().any(|(h, _)| h.as_slice() == k.as_bytes()) {
            cmd.env(k, v);
        }
    }
    cmd
}
