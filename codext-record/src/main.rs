//! `codext-record`: the session recorder, the login shell of every codext
//! account (installed root-owned, setgid to the recorder's own group, at
//! `/usr/lib/codext/codext-record`).
//!
//! sshd runs every channel of a codext user through it — `-codext-record`
//! for a login shell, `codext-record -c COMMAND` for a command or a
//! subsystem — so it runs before anything the user controls (no
//! `~/.bashrc`, no `BASH_ENV`: no shell has started yet). It
//!
//! 1. makes itself non-dumpable before it reads anything, and refuses to
//!    run under a tracer (`TracerPid` of `/proc/self/status`). The setgid
//!    exec already made it non-dumpable and its group differs from the
//!    user's, so the user can neither ptrace it nor read its memory; this
//!    is the belt to those braces;
//! 2. tells `codext-helper` over the recording socket what the channel is
//!    ([`codext_record::proto::Hello`]); the helper checks the peer's
//!    credentials (the recorder's group, which only this binary gives, the
//!    uid of a live codext account with an open session) and answers with
//!    the real shell to run, or a refusal (the channel then does not run);
//! 3. runs the real shell as its child — with a pseudo-terminal of its own
//!    when sshd gave the channel one (window size followed on SIGWINCH),
//!    else with pipes — and relays every byte, recording each one before
//!    passing it on (what crosses to the helper, and when: [`link`]);
//!    signals sshd sends it go to the child; its exit status
//!    (or signal) becomes the recorder's;
//! 4. ends the record with the exit status (the helper seals it).
//!
//! It is linked statically (no dynamic loader, so `LD_PRELOAD` and friends
//! from `~/.pam_environment` load nothing into it), reads nothing from its
//! environment but `TERM` and `SSH_CONNECTION`, which it only reports (it
//! passes the environment, as sshd built it, to the shell untouched but
//! for `SHELL`), and never writes a file.
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod enter;
mod link;
mod relay;
#[allow(unsafe_code)]
mod sys;

use codext_record::proto::{Hello, MAX_COMMAND};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::Instant;

/// What sshd (or a user) asked the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `-codext-record`: a login shell.
    Login,
    /// `codext-record` with no argument: an interactive shell.
    Interactive,
    /// `codext-record -c COMMAND`.
    Command(Vec<u8>),
}

/// Says why on stderr (the user's) and exits 1: the channel does not run.
fn refuse(why: &str) -> ! {
    eprintln!("codext: {why}");
    std::process::exit(1)
}

/// `TracerPid` from `/proc/self/status`.
fn tracer() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The environment exactly as sshd passed it (see
/// [`sys::original_environment`]).
fn original_env() -> Vec<(OsString, OsString)> {
    let Some(raw) = sys::original_environment() else {
        return std::env::vars_os().collect();
    };
    raw.split(|b| *b == 0)
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let eq = kv.iter().position(|b| *b == b'=')?;
            Some((
                OsString::from_vec(kv[..eq].to_vec()),
                OsString::from_vec(kv[eq + 1..].to_vec()),
            ))
        })
        .collect()
}

fn parse_args(args: &[OsString]) -> Result<Mode, String> {
    let login = args
        .first()
        .is_some_and(|a| a.as_bytes().first() == Some(&b'-'));
    match args.get(1..).unwrap_or(&[]) {
        [] if login => Ok(Mode::Login),
        [] => Ok(Mode::Interactive),
        [flag, command, ..] if flag.as_bytes() == b"-c" => {
            Ok(Mode::Command(command.as_bytes().to_vec()))
        }
        _ => Err("usage: codext-record [-c COMMAND] (it is a login shell)".into()),
    }
}

/// The profile named by a gate command, `<path>/codext-record
/// --gate <name>` (what the profiles' sshd drop-in forces: the recorder's
/// own absolute path): the recorder handles it itself, never through a
/// shell, so nothing of the user's (`BASH_ENV`, `~/.bashrc`) runs first.
/// The helper checks the name against the grant's.
fn gate_of(command: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(command).ok()?;
    let mut words = text.split(' ');
    let path = words.next()?;
    if !path.starts_with('/') || path.rsplit('/').next() != Some("codext-record") {
        return None;
    }
    if words.next()? != "--gate" {
        return None;
    }
    let name = words.next()?;
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    (plain && words.next().is_none()).then(|| name.to_owned())
}

/// The mode and gate of a forced gate: the request is
/// `SSH_ORIGINAL_COMMAND` (none: a login).
fn gated(mode: Mode, env: &[(OsString, OsString)]) -> (Mode, Option<String>) {
    let gate = match &mode {
        Mode::Command(c) => gate_of(c),
        _ => None,
    };
    match gate {
        None => (mode, None),
        Some(g) => {
            let request = env
                .iter()
                .find(|(k, _)| k.as_bytes() == b"SSH_ORIGINAL_COMMAND")
                .map(|(_, v)| v.as_bytes().to_vec());
            (
                match request {
                    Some(r) => Mode::Command(r),
                    None => Mode::Login,
                },
                Some(g),
            )
        }
    }
}

fn env_text(env: &[(OsString, OsString)], key: &str) -> String {
    env.iter()
        .find(|(k, _)| k.as_bytes() == key.as_bytes())
        .map(|(_, v)| v.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn main() {
    let start = Instant::now();
    // 1. Before anything is read.
    if let Err(e) = sys::set_non_dumpable() {
        refuse(&format!("the session recorder cannot protect itself ({e})"));
    }
    if sys::is_dumpable() {
        refuse("the session recorder is still dumpable; refused");
    }
    match tracer() {
        Some(0) => {}
        Some(pid) => refuse(&format!(
            "the session recorder is being traced (by pid {pid}); refused"
        )),
        None => refuse("the session recorder cannot read /proc/self/status; refused"),
    }
    let env = original_env();
    let args: Vec<OsString> = std::env::args_os().collect();
    let mode = parse_args(&args).unwrap_or_else(|e| refuse(&e));
    let (mode, gate) = gated(mode, &env);
    let tty = sys::isatty(0);
    let (cols, rows) = if tty {
        sys::winsize(0).unwrap_or((80, 24))
    } else {
        (0, 0)
    };
    let (command, command_cut) = match &mode {
        Mode::Command(c) => (
            c[..c.len().min(MAX_COMMAND)].to_vec(),
            c.len() > MAX_COMMAND,
        ),
        _ => (Vec::new(), false),
    };
    let hello = Hello {
        tty,
        login: !matches!(mode, Mode::Command(_)),
        cols,
        rows,
        t_us: 0,
        command,
        command_cut,
        term: env_text(&env, "TERM"),
        ssh_connection: env_text(&env, "SSH_CONNECTION"),
        continues: String::new(),
        gate: gate.clone(),
    };
    // 2. The helper decides (for a gated channel, also what may run).
    let opened = link::open(hello, start).unwrap_or_else(|why| match gate {
        Some(_) => refuse(&why),
        None => refuse(&format!(
            "this session cannot be recorded, so it does not run: {why}"
        )),
    });
    // 3. and 4.
    relay::run(opened, mode, env, tty)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn given_how_sshd_runs_a_shell_then_the_mode_is_read() {
        assert_eq!(parse_args(&os(&["-codext-record"])), Ok(Mode::Login));
        assert_eq!(parse_args(&os(&["codext-record"])), Ok(Mode::Interactive));
        assert_eq!(
            parse_args(&os(&["codext-record", "-c", "echo hi"])),
            Ok(Mode::Command(b"echo hi".to_vec()))
        );
        assert!(parse_args(&os(&["codext-record", "--help"])).is_err());
    }

    #[test]
    fn given_the_forced_gate_then_it_is_recognised_and_only_it() {
        assert_eq!(
            gate_of(b"/usr/lib/codext/codext-record --gate ci"),
            Some("ci".into())
        );
        for not in [
            &b"codext-record --gate ci"[..],
            b"/usr/lib/codext/codext-record --gate ci; id",
            b"/usr/lib/codext/codext-record --gate ci x",
            b"/usr/lib/codext/codext-record --gate",
            b"/usr/lib/codext/codext-record --gate Ci",
            b"/tmp/evil --gate ci",
            b"/usr/lib/codext/codext-record",
            b"make test",
        ] {
            assert_eq!(gate_of(not), None, "{}", String::from_utf8_lossy(not));
        }
        let env = vec![(
            OsString::from("SSH_ORIGINAL_COMMAND"),
            OsString::from("make test"),
        )];
        let (mode, gate) = gated(
            Mode::Command(b"/usr/lib/codext/codext-record --gate ci".to_vec()),
            &env,
        );
        assert_eq!(mode, Mode::Command(b"make test".to_vec()));
        assert_eq!(gate.as_deref(), Some("ci"));
        let (mode, _) = gated(
            Mode::Command(b"/usr/lib/codext/codext-record --gate ci".to_vec()),
            &[],
        );
        assert_eq!(
            mode,
            Mode::Login,
            "no request: a login, never the gate's own words"
        );
    }
}
