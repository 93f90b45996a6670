//! Running the real shell and relaying the channel through the recorder.
//!
//! Every byte is recorded ([`Link::send`]) before it is passed on, so
//! nothing reaches the client, or the shell, that the record lacks. One
//! thread per direction with blocking I/O (a slow reader on one side never
//! stops the other); the main thread takes the signals (all blocked
//! elsewhere) and waits for the shell.

mod commands;
mod confined_sftp;
mod pipes;
mod record;
mod sizes;
mod target;
mod terminal;

use crate::link::{Link, Opened};
use crate::sys::{self, Status};
use crate::Mode;
use codext_record::proto::{Exit, Run, Stream};
use codext_record::Kind;
use commands::{exec_command, shell_command};
use pipes::run_pipes;
use record::{fatal, record};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::time::Duration;
use target::Target;
use terminal::run_tty;

/// Runs the channel; never returns.
pub fn run(opened: Opened, mode: Mode, env: Vec<(OsString, OsString)>, tty: bool) -> ! {
    let (link, shell, input, run) = match opened {
        Opened::Unrecorded { shell, run } => match run {
            Run::Shell => {
                // Failing open (or recording off): the shell replaces the
                // recorder.
                let mut cmd = shell_command(&shell, &mode, &env);
                sys::with_child_setup(&mut cmd, false, false);
                let e = cmd.exec();
                eprintln!("codext: cannot run the shell: {e}");
                std::process::exit(127)
            }
            // A confined sftp server still needs the recorder between:
            // it judges every request.
            Run::Exec {
                argv,
                cwd,
                env: h,
                confine,
            } if !confine.is_empty() => (
                Arc::new(Link::discard(std::time::Instant::now())),
                shell,
                false,
                Run::Exec {
                    argv,
                    cwd,
                    env: h,
                    confine,
                },
            ),
            Run::Exec {
                argv, cwd, env: h, ..
            } => {
                // The allowed command replaces the recorder: no shell.
                let mut cmd = exec_command(&argv, &cwd, &h, &env);
                sys::with_child_setup(&mut cmd, false, false);
                let e = cmd.exec();
                eprintln!(
                    "codext: cannot run {}: {e}",
                    String::from_utf8_lossy(&argv[0])
                );
                std::process::exit(127)
            }
            Run::Print { text, code } => {
                let _ = std::io::stdout().write_all(&text);
                let _ = std::io::stdout().flush();
                std::process::exit(code)
            }
            // A container session still needs the recorder between: the
            // terminal it runs on is the recorder's (resizes follow).
            Run::Enter => (
                Arc::new(Link::discard(std::time::Instant::now())),
                shell,
                false,
                Run::Enter,
            ),
        },
        Opened::Record {
            link,
            shell,
            input,
            run,
        } => (Arc::<Link>::from(link), shell, input, run),
    };
    if let Run::Print { text, code } = &run {
        record(&link, Stream::Out, text);
        let _ = std::io::stdout().write_all(text);
        let _ = std::io::stdout().flush();
        if let Err(lost) = link.finish(Exit::Code(*code)) {
            eprintln!("codext: {}", lost.0);
        }
        std::process::exit(*code)
    }
    if let Err(e) = sys::block_handled() {
        eprintln!("codext: cannot set up signals: {e}");
        std::process::exit(1)
    }
    // What waits in the recorder goes out at least every FLUSH_MS, also
    // when the channel falls quiet. (Started after the signals are
    // blocked: every thread must leave them to the main one.)
    let l = Arc::clone(&link);
    let _ = std::thread::Builder::new()
        .name("flush".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(codext_record::proto::FLUSH_MS));
            if let Err(lost) = l.flush_due() {
                fatal(&lost);
            }
        });
    let kind = match &mode {
        Mode::Command(c) => Kind::of(false, c),
        _ => Kind::Shell,
    };
    let mut confine = None;
    let target = match run {
        Run::Exec {
            argv,
            cwd,
            env: h,
            confine: c,
        } => {
            if !c.is_empty() {
                confine = Some(c);
            }
            Target::Local(exec_command(&argv, &cwd, &h, &env))
        }
        Run::Enter => Target::Remote {
            command: match &mode {
                Mode::Command(c) => Some(c.clone()),
                _ => None,
            },
            term: env
                .iter()
                .find(|(k, _)| k.as_bytes() == b"TERM")
                .map(|(_, v)| v.to_string_lossy().into_owned())
                .unwrap_or_default(),
        },
        Run::Shell | Run::Print { .. } => Target::Local(shell_command(&shell, &mode, &env)),
    };
    // A confined sftp server runs on pipes whatever sshd gave the channel:
    // every request passes the filter.
    let status = if tty && confine.is_none() {
        run_tty(target, &link, input)
    } else {
        run_pipes(
            target,
            &link,
            kind == Kind::Sftp || confine.is_some(),
            confine,
        )
    };
    let exit = match status {
        Status::Code(c) => Exit::Code(c),
        Status::Signal(s) => Exit::Signal(s),
    };
    if let Err(lost) = link.finish(exit) {
        eprintln!("codext: {}", lost.0);
    }
    sys::exit_like(status)
}
