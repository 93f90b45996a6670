//! Running the stock account tools (`useradd`, `userdel`, `groupadd`) by
//! absolute path, with a clean environment and a deadline: a tool still
//! running when it passes (stuck on a lock, stopped) is killed by root and
//! reported, never waited for without end.

use crate::error::{HelperError, Result};
use crate::ids::Pid;
use crate::sys::{self, Waited};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `useradd`.
pub const USERADD: &str = "/usr/sbin/useradd";
/// `userdel`.
pub const USERDEL: &str = "/usr/sbin/userdel";
/// `groupadd`.
pub const GROUPADD: &str = "/usr/sbin/groupadd";

/// Most of a tool's stderr kept for a message.
const MAX_STDERR: usize = 4096;

/// How a tool run ended.
#[derive(Debug)]
pub struct ToolRun {
    /// What ended it.
    pub status: Waited,
    /// The start of its stderr, trimmed.
    pub stderr: String,
    /// The start of its stdout (only [`run_with`] keeps it).
    pub stdout: String,
}

impl ToolRun {
    /// True when it exited with status 0.
    pub fn success(&self) -> bool {
        self.status == Waited::Exited(0)
    }

    /// Its exit status, if it exited.
    pub fn code(&self) -> Option<i32> {
        match self.status {
            Waited::Exited(c) => Some(c),
            _ => None,
        }
    }

    /// "exit status N (stderr)" for messages.
    pub fn describe(&self) -> String {
        let how = match self.status {
            Waited::Exited(c) => format!("exit status {c}"),
            Waited::Signaled(s) => format!("killed by signal {s}"),
            Waited::KilledAtDeadline => "still running at its deadline; killed".into(),
        };
        if self.stderr.is_empty() {
            how
        } else {
            format!("{how} ({})", self.stderr)
        }
    }
}

/// Most of a tool's stdout kept ([`run_with`]).
const MAX_STDOUT: usize = 64 * 1024;

/// Runs `program args…` and waits for it at most `deadline`.
pub fn run(program: &str, args: &[&str], deadline: Duration) -> Result<ToolRun> {
    let env = [
        ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_owned()),
        ("LC_ALL", "C".to_owned()),
    ];
    run_inner(program, args, &env, deadline, false)
}

/// Like [`run`] with exactly the environment `env`, keeping the start of
/// stdout too (the docker CLI's answers).
pub fn run_with(
    program: &str,
    args: &[&str],
    env: &[(&'static str, String)],
    deadline: Duration,
) -> Result<ToolRun> {
    run_inner(program, args, env, deadline, true)
}

fn run_inner(
    program: &str,
    args: &[&str],
    env: &[(&'static str, String)],
    deadline: Duration,
    keep_stdout: bool,
) -> Result<ToolRun> {
    let cannot = |e: &std::io::Error| {
        HelperError::account(
            format!("cannot run {program}"),
            std::io::Error::new(e.kind(), e.to_string()),
        )
    };
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(if keep_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| cannot(&e))?;
    // stdout on a thread of its own (bounded, then drained): the loop
    // below watches stderr and the deadline.
    let stdout_reader = child.stdout.take().map(|mut out| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let room = MAX_STDOUT.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                }
            }
            kept
        })
    });
    let pid = Pid::from_raw(child.id());
    // Collect stderr while waiting, without ever blocking on it: a tool
    // that fills the pipe must not stall, and one that leaves the pipe
    // open must not stall the helper.
    let end = Instant::now() + deadline;
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stderr.take() {
        sys::set_nonblocking(&pipe).map_err(|e| cannot(&e))?;
        let pidfd = sys::pidfd_open(pid).map_err(|e| cannot(&e))?;
        loop {
            let mut buf = [0u8; 1024];
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let room = MAX_STDERR.saturating_sub(stderr.len());
                    stderr.extend_from_slice(&buf[..n.min(room)]);
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || exited(&pidfd) {
                break;
            }
            let _ = wait_either(&pipe, &pidfd, left.min(Duration::from_millis(200)));
        }
    }
    // Reaped here, by pid, with the deadline (dropping `child` neither
    // waits nor kills).
    let status = sys::wait_pid(pid, end.saturating_duration_since(Instant::now()))
        .map_err(|e| cannot(&e))?;
    drop(child);
    // The tool has ended (or was killed at its deadline): its stdout's
    // end came with it, unless a child of it keeps the pipe open, which
    // only delays this join until that child goes.
    let stdout = stdout_reader
        .and_then(|h| h.join().ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    Ok(ToolRun {
        status,
        stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
        stdout,
    })
}

fn exited(pidfd: &OwnedFd) -> bool {
    sys::wait_readable(pidfd, Duration::ZERO).unwrap_or(true)
}

/// Waits until the pipe has data or the child exits, at most `limit`.
fn wait_either(pipe: &impl AsFd, pidfd: &OwnedFd, limit: Duration) -> nix::Result<i32> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [
        PollFd::new(pipe.as_fd(), PollFlags::POLLIN),
        PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
    ];
    let ms = u16::try_from(limit.as_millis()).unwrap_or(u16::MAX);
    poll(&mut fds, PollTimeout::from(ms))
}
