//! The children the helper runs and waits for, and the processes it
//! watches through pidfds.
//!
//! # Bounded waits
//!
//! Every child the helper waits for — the killer, `useradd`, `userdel` — is
//! watched through a pidfd with a deadline; past it the child is killed by
//! root (which nothing can prevent) and the caller is told.

use crate::ids::Pid;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How a waited-for child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// It exited with this status.
    Exited(i32),
    /// A signal ended it.
    Signaled(i32),
    /// It was still running at the deadline and root killed it.
    KilledAtDeadline,
}

/// Waits for our child `pid` until `deadline` has passed; then `SIGKILL`s
/// it (as root: nothing can block that) and reaps it.
pub fn wait_pid(child: Pid, deadline: Duration) -> io::Result<Waited> {
    let pid = child
        .as_pid_t()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let pidfd = pidfd_open(child)?;
    let killed = !wait_readable(&pidfd, deadline)?;
    if killed {
        // SAFETY: `pid` is our own unreaped child (the pidfd above pins
        // it), so the number cannot name anyone else.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // A SIGKILLed child dies at once unless it sleeps uninterruptibly
        // in the kernel; do not wait for ever even then.
        if !wait_readable(&pidfd, Duration::from_secs(5))? {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("child {pid} survives SIGKILL"),
            ));
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: reaping our own child, which has exited (the pidfd is
        // readable); `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(if killed {
        Waited::KilledAtDeadline
    } else if libc::WIFEXITED(status) {
        Waited::Exited(libc::WEXITSTATUS(status))
    } else {
        Waited::Signaled(libc::WTERMSIG(status))
    })
}

/// Polls `fd` for readability until `limit`; true when readable.
pub fn wait_readable(fd: &impl AsFd, limit: Duration) -> io::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => return Ok(true),
            Ok(_) if left.is_zero() => return Ok(false),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// `pidfd_open(2)`: a descriptor that becomes readable when `pid` exits,
/// so the helper notices a dead sshd monitor at once and waits for its
/// children with a deadline. (Linux ≥ 5.3.)
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    let pid = pid
        .as_pid_t()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; no pointers are involved.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned this descriptor and nothing else
    // owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(2)`: sends `signal` to the process `pidfd` pins.
/// Unlike `kill(pid)`, it cannot reach another process that reused the
/// number after this one died. As root (`CAP_KILL`), no uid of the target
/// can refuse it. (Linux ≥ 5.1.)
pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: a descriptor we own, a signal number, a null siginfo (the
    // kernel then fills in what kill(2) would) and no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// SIGKILL through a pidfd (never a reused pid).
pub fn pidfd_kill(pidfd: &OwnedFd) -> io::Result<()> {
    pidfd_send_signal(pidfd, libc::SIGKILL)
}

/// Runs `program args` with exactly `env`, its standard input,
/// output and error the descriptors given (a user's session, received
/// from its recorder), in a session of its own; with `tty`, that terminal
/// becomes its controlling terminal (so a resize reaches it as SIGWINCH)
/// when it is nobody's yet. Returns its pid; the caller waits for it.
pub fn spawn_on(
    program: &std::path::Path,
    args: &[String],
    env: &[(&'static str, String)],
    stdio: [OwnedFd; 3],
    tty: bool,
) -> io::Result<u32> {
    use std::os::unix::process::CommandExt;
    let [i, o, e] = stdio;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::from(i))
        .stdout(std::process::Stdio::from(o))
        .stderr(std::process::Stdio::from(e));
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe calls (setsid, ioctl), allocating nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if tty {
                // 0: never steal a terminal that is another session's.
                let _ = libc::ioctl(0, libc::TIOCSCTTY, 0);
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    Ok(child.id())
}
