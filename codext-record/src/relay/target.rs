//! What the relay runs and waits for: a local process, or a container
//! session the helper runs; starting it, and waiting for it while the
//! signals are handled.

use super::record::{fatal, CHILD};
use crate::link::Link;
use crate::sys::{self, Status};
use codext_record::proto::ToHelper;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What the relay runs.
pub(super) enum Target {
    /// A process of the recorder's (the shell, or an allowed command).
    Local(Command),
    /// The session in the grant's container, run by the helper
    /// on descriptors the recorder passes it.
    Remote {
        /// The command (`None`: a login shell).
        command: Option<Vec<u8>>,
        /// `TERM`.
        term: String,
    },
}

/// What the relay waits for.
pub(super) enum Child {
    /// Its pid (the recorder reaps it by pid; std's handle is kept only
    /// so that it is not dropped unwaited).
    Local {
        /// The pid.
        pid: i32,
        /// std's handle.
        _handle: std::process::Child,
    },
    /// The helper's report.
    Remote(Arc<crate::enter::Remote>),
}

pub(super) fn spawn(mut cmd: Command, tty: bool) -> std::process::Child {
    sys::with_child_setup(&mut cmd, true, tty);
    match cmd.spawn() {
        Ok(c) => {
            // Lossless on Linux: pids fit in i32.
            CHILD.store(c.id() as i32, Ordering::SeqCst);
            c
        }
        Err(e) => {
            eprintln!("codext: cannot run {:?}: {e}", cmd.get_program());
            std::process::exit(127)
        }
    }
}

/// Starts the target on the three descriptors given (for a local one,
/// `cmd`'s stdio must already name them).
pub(super) fn start(target: Target, fds: [std::os::fd::RawFd; 3], tty: bool) -> Child {
    match target {
        Target::Local(cmd) => {
            let child = spawn(cmd, tty);
            Child::Local {
                pid: child.id() as i32,
                _handle: child,
            }
        }
        Target::Remote { command, term } => {
            match crate::enter::start(fds, tty, command.as_deref(), &term) {
                Ok(r) => Child::Remote(r),
                Err(why) => {
                    eprintln!("codext: {why}");
                    std::process::exit(1)
                }
            }
        }
    }
}

/// Waits for the shell, handling signals meanwhile: SIGWINCH resizes the
/// inner terminal (`master`), every other signal goes to the shell (sshd's
/// `signal` requests and a hangup arrive here). A container session's
/// hangup or termination ends it through the helper.
pub(super) fn wait_child(child: &Child, link: &Link, master: Option<&OwnedFd>) -> Status {
    loop {
        let sig = sys::wait_signal();
        match (sig, child) {
            (libc::SIGCHLD, Child::Local { pid, .. }) => {
                if let Some(st) = sys::try_wait(*pid) {
                    return st;
                }
            }
            (libc::SIGCHLD, Child::Remote(r)) => {
                if let Some(st) = r.status() {
                    return st;
                }
            }
            (libc::SIGWINCH, _) => {
                if let (Some(m), Some((cols, rows))) = (master, sys::winsize(0)) {
                    let _ = sys::set_winsize(m.as_raw_fd(), cols, rows);
                    let t_us = link.now_us();
                    if let Err(lost) = link.send(&ToHelper::Resize { t_us, cols, rows }) {
                        fatal(&lost);
                    }
                }
            }
            (libc::SIGCONT, _) => {}
            (libc::SIGHUP | libc::SIGTERM, Child::Remote(r)) => r.hang_up(),
            (_, Child::Remote(_)) => {}
            (libc::SIGHUP, Child::Local { pid, .. }) if master.is_some() => {
                // The client's terminal hung up: hang up the shell's.
                sys::kill(-pid, libc::SIGHUP);
                sys::kill(*pid, libc::SIGHUP);
            }
            (other, Child::Local { pid, .. }) => sys::kill(*pid, other),
        }
    }
}
