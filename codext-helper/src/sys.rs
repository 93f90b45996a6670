//! The helper's only `unsafe` code: killing every process of a uid *as that
//! uid*.
//!
//! `kill(-1, SIGKILL)` sent by a process whose real and effective uid are
//! the target's reaches, in one pass of the kernel over the task list, every
//! process that uid may signal — all of its own, however they forked,
//! double-forked or called `setsid` — and nothing of anyone else's (see
//! kill(2): "sig is sent to every process for which the calling process has
//! permission to send signals, except for process 1"). A fork bomb may slip
//! a child in between passes, so the caller repeats until `/proc` shows no
//! process of the uid.

use std::io;

/// Forks a child that drops to `uid`/`gid` (no supplementary groups) and
/// sends `SIGKILL` to every process it can; waits for it.
pub fn kill_all_as(uid: u32, gid: u32) -> io::Result<()> {
    if uid == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to kill as root",
        ));
    }
    // SAFETY: fork() in a multithreaded process is sound when the child
    // only calls async-signal-safe functions until it exits: the child
    // below makes raw system calls (setgroups, setresgid, setresuid, kill)
    // and `_exit`, allocates nothing and touches no lock.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: raw system calls with plain integer arguments and a null
        // group list of length 0; `_exit` never returns. If dropping
        // privileges fails the child exits without killing anything.
        unsafe {
            let ok = libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>())
                == 0
                && libc::syscall(libc::SYS_setresgid, gid, gid, gid) == 0
                && libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0;
            if !ok {
                libc::_exit(2);
            }
            libc::kill(-1, libc::SIGKILL);
            libc::_exit(0);
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "the kill helper process failed (status {status})"
        )))
    }
}

/// `pidfd_open(2)`: a descriptor that becomes readable when `pid` exits,
/// so the helper notices a dead sshd monitor at once instead of at the next
/// reaper pass. (Linux ≥ 5.3.)
pub fn pidfd_open(pid: u32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; no pointers are involved.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned this descriptor and nothing else
    // owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Locks the daemon's memory (present and future pages, as they are first
/// touched) so a password or token being checked is never written to swap.
pub fn lock_memory() -> io::Result<()> {
    // SAFETY: mlockall takes flags only.
    let r = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
