//! The helper's only `unsafe` code: the killer child, bounded waits on
//! children, pidfds, memory locking and the allocator's arena cap.
//!
//! # The killer
//!
//! `kill(-1, SIGKILL)` reaches, in one pass of the kernel over the task
//! list, every process the caller may signal (kill(2): "sig is sent to every
//! process for which the calling process has permission to send signals,
//! except for process 1" — and the caller itself). The permission rule
//! (`kill_ok_by_cred` in the kernel) lets a sender through when its real
//! *or effective* uid equals the target's real *or saved* uid. So the
//! killer child takes
//!
//! * real uid = saved uid = **X**, a locked system account that only killers
//!   ever use (created by `init`), and
//! * effective uid = **U**, the temporary user.
//!
//! Its effective uid U reaches every process whose real or saved uid is U,
//! however they forked, double-forked, called `setsid` or entered a user
//! namespace (the kernel compares kernel uids). U's processes, whose uids
//! are all U, can *not* signal it back: the killer's real and saved uid is
//! X, and since every uid of the killer is non-zero it holds no capability
//! (capabilities(7): the permitted and effective sets are cleared when all
//! uids become non-zero). The same rule would let one killer kill another
//! (both have real uid X): [`kill_all_as`] holds a process-wide lock, and
//! the removal lock ([`crate::store::Store::lock_removals`]) keeps killers
//! of different processes apart. U cannot `ptrace` the killer either: a
//! ptracer's uid must match all of the target's uids, and a process that
//! changed its credentials is not dumpable.
//!
//! The child then removes U's System V IPC objects (listed by the parent):
//! `IPC_RMID` is allowed to the owner or creator (euid U) and would need
//! `CAP_SYS_ADMIN` as root.
//!
//! # Bounded waits
//!
//! Every child the helper waits for — the killer, `useradd`, `userdel` — is
//! watched through a pidfd with a deadline; past it the child is killed by
//! root (which nothing can prevent) and the caller is told.

use crate::ids::{Gid, Pid, Uid};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Killers share the uid X and must never run at the same time.
static KILLER: Mutex<()> = Mutex::new(());

/// System V IPC objects of a uid, by kind (ids from `/proc/sysvipc`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IpcIds {
    /// Shared memory segments.
    pub shm: Vec<i32>,
    /// Semaphore sets.
    pub sem: Vec<i32>,
    /// Message queues.
    pub msg: Vec<i32>,
}

impl IpcIds {
    /// True when there is nothing to remove.
    pub fn is_empty(&self) -> bool {
        self.shm.is_empty() && self.sem.is_empty() && self.msg.is_empty()
    }
}

/// The identity the killer runs as: the temporary user `target` as its
/// effective uid, the killer account as its real and saved uid and gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillerIds {
    /// The temporary user's uid (U).
    pub target: Uid,
    /// The killer account's uid (X).
    pub killer_uid: Uid,
    /// The killer account's gid.
    pub killer_gid: Gid,
}

/// Forks a killer (see the module docs) that sends `SIGKILL` to every
/// process of `ids.target` and removes `ipc`; waits for it at most
/// `deadline`. Returns an error if it could not drop privileges, failed, or
/// had to be killed at the deadline.
pub fn kill_all_as(ids: KillerIds, ipc: &IpcIds, deadline: Duration) -> io::Result<()> {
    let KillerIds {
        target,
        killer_uid,
        killer_gid,
    } = ids;
    if target.is_root() || killer_uid.is_root() || killer_gid.is_root() || target == killer_uid {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to run a killer with root or identical uids",
        ));
    }
    let (target, killer_uid, killer_gid) =
        (target.as_raw(), killer_uid.as_raw(), killer_gid.as_raw());
    let _one = KILLER
        .lock()
        .map_err(|_| io::Error::other("killer lock poisoned"))?;
    // SAFETY: fork() in a multithreaded process is sound when the child
    // only calls async-signal-safe functions until it exits: the child
    // below makes raw system calls on memory allocated before the fork
    // (`ipc`'s vectors are only read) and `_exit`s; it allocates nothing
    // and takes no lock.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: raw system calls with integer arguments, a null group
        // list of length 0 and null buffers for IPC_RMID (which reads
        // none); `_exit` never returns. If dropping privileges fails the
        // child exits without killing anything.
        unsafe {
            let ok = libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>())
                == 0
                && libc::syscall(libc::SYS_setresgid, killer_gid, killer_gid, killer_gid) == 0
                && libc::syscall(libc::SYS_setresuid, killer_uid, target, killer_uid) == 0
                && libc::geteuid() == target
                && libc::getuid() == killer_uid;
            if !ok {
                libc::_exit(2);
            }
            libc::kill(-1, libc::SIGKILL);
            for id in &ipc.shm {
                libc::shmctl(*id, libc::IPC_RMID, std::ptr::null_mut());
            }
            for id in &ipc.sem {
                libc::semctl(*id, 0, libc::IPC_RMID);
            }
            for id in &ipc.msg {
                libc::msgctl(*id, libc::IPC_RMID, std::ptr::null_mut());
            }
            libc::_exit(0);
        }
    }
    let pid = Pid::from_kernel(pid).ok_or_else(|| io::Error::other("fork returned no pid"))?;
    match wait_pid(pid, deadline)? {
        Waited::Exited(0) => Ok(()),
        Waited::Exited(code) => Err(io::Error::other(format!(
            "the killer process exited with status {code}"
        ))),
        Waited::Signaled(sig) => Err(io::Error::other(format!(
            "the killer process died of signal {sig}"
        ))),
        Waited::KilledAtDeadline => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the killer process did not finish within {}s and was killed",
                deadline.as_secs_f32()
            ),
        )),
    }
}

/// keyctl(2) operations and special keyring ids (linux/keyctl.h).
const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
const KEYCTL_CLEAR: libc::c_long = 7;
const KEYCTL_SETPERM: libc::c_long = 5;
const KEYCTL_INVALIDATE: libc::c_long = 21;
const KEYCTL_GET_PERSISTENT: libc::c_long = 22;
const KEY_SPEC_PROCESS_KEYRING: libc::c_long = -2;
const KEY_SPEC_USER_KEYRING: libc::c_long = -4;
const KEY_SPEC_USER_SESSION_KEYRING: libc::c_long = -5;

/// True when this process may use keyctl(2) at all. Docker's default
/// seccomp profile (and some others) forbid it; then the temporary users,
/// run in the same confinement by the same sshd, cannot have keys either,
/// and there is nothing to clear. The probe asks for this thread's
/// keyring without creating it: `ENOKEY` (or an id) means keyctl works,
/// `EPERM`/`ENOSYS` that a filter stops it.
pub fn keyrings_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        const KEY_SPEC_THREAD_KEYRING: libc::c_long = -1;
        // SAFETY: keyctl with integer arguments only (create = 0).
        let r = unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_GET_KEYRING_ID,
                KEY_SPEC_THREAD_KEYRING,
                0 as libc::c_long,
            )
        };
        let err = io::Error::last_os_error().raw_os_error();
        r >= 0 || !matches!(err, Some(libc::EPERM) | Some(libc::ENOSYS))
    })
}

/// The user keyring's permissions as the kernel makes it
/// (`look_up_user_keyrings`): everything but setattr for its possessor,
/// everything for its owner.
const USER_KEYRING_PERM: libc::c_ulong = 0x1f3f_0000;

/// Clears and invalidates the kernel keyrings of `uid` — its user keyring
/// (`@u`), user-session keyring (`@us`) and persistent keyring — from a
/// child that takes the uid in all three slots (keyctl(2) names a uid's
/// keyrings only to a process of that uid; root would need the persistent
/// keyring call for one and nothing reaches the others). They outlive every
/// process and `userdel`, and would otherwise be found by the next holder
/// of the uid. Call it only when no process of `uid` runs (the child then
/// has no one of its uid to fear); waits for it at most `deadline`.
pub fn clear_keyrings_as(uid: Uid, gid: Gid, deadline: Duration) -> io::Result<()> {
    if uid.is_root() || gid.is_root() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to clear root's keyrings",
        ));
    }
    let (uid, gid) = (uid.as_raw(), gid.as_raw());
    // SAFETY: as for the killer: the child makes raw system calls with
    // integer arguments only and `_exit`s; it allocates nothing and takes
    // no lock.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: raw system calls with integer arguments and a null group
        // list of length 0; `_exit` never returns.
        unsafe {
            let ok = libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>())
                == 0
                && libc::syscall(libc::SYS_setresgid, gid, gid, gid) == 0
                && libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0
                && libc::getuid() == uid
                && libc::geteuid() == uid;
            if !ok {
                libc::_exit(2);
            }
            // All three ids first: a lookup of one re-creates whichever
            // of the user keyrings is missing (look_up_user_keyrings), so
            // nothing is looked up once the wiping has begun. The
            // persistent keyring is linked into this child's (new, private)
            // process keyring, which makes it possessed — its owner alone
            // may not search it — and dies with the child. -1: the
            // caller's own uid.
            let rings = [
                libc::syscall(
                    libc::SYS_keyctl,
                    KEYCTL_GET_PERSISTENT,
                    -1 as libc::c_long,
                    KEY_SPEC_PROCESS_KEYRING,
                ),
                libc::syscall(
                    libc::SYS_keyctl,
                    KEYCTL_GET_KEYRING_ID,
                    KEY_SPEC_USER_KEYRING,
                    0 as libc::c_long,
                ),
                libc::syscall(
                    libc::SYS_keyctl,
                    KEYCTL_GET_KEYRING_ID,
                    KEY_SPEC_USER_SESSION_KEYRING,
                    0 as libc::c_long,
                ),
            ];
            // The user keyrings' permissions back as the kernel made them
            // (their owner may: a user can take some away, and clearing
            // needs write), then every keyring emptied.
            for ring in &rings[1..] {
                if *ring >= 0 {
                    libc::syscall(libc::SYS_keyctl, KEYCTL_SETPERM, *ring, USER_KEYRING_PERM);
                }
            }
            for ring in rings.iter().filter(|r| **r >= 0) {
                libc::syscall(libc::SYS_keyctl, KEYCTL_CLEAR, *ring);
            }
            for ring in rings.iter().filter(|r| **r >= 0) {
                libc::syscall(libc::SYS_keyctl, KEYCTL_INVALIDATE, *ring);
            }
            libc::_exit(0);
        }
    }
    let pid = Pid::from_kernel(pid).ok_or_else(|| io::Error::other("fork returned no pid"))?;
    match wait_pid(pid, deadline)? {
        Waited::Exited(0) => Ok(()),
        Waited::Exited(2) => Err(io::Error::other("the keyring child could not take the uid")),
        other => Err(io::Error::other(format!(
            "the keyring child ended badly: {other:?}"
        ))),
    }
}

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

/// Sets `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?;
    fcntl(
        fd.as_raw_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK),
    )?;
    Ok(())
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

/// How many glibc malloc arenas the daemon's threads share: one, the main
/// arena (see [`limit_malloc_arenas`]).
pub const MALLOC_ARENAS: i32 = 1;

/// Caps glibc's malloc arenas at `n` (`mallopt(M_ARENA_MAX)`). Call it
/// before the first thread starts: glibc fixes the cap once more than
/// eight arenas exist (malloc/arena.c, `arena_get2`).
///
/// Why the daemon needs it: by default glibc gives each thread that
/// allocates while the others hold their arenas an arena of its own, up
/// to 8 per core, each reserved as a 64 MiB block (mallopt(3)). Under
/// [`lock_memory`] every page a thread touched in its arena stays
/// resident — glibc gives freed arena memory back with
/// `madvise(MADV_DONTNEED)`, which the kernel refuses on locked pages
/// (madvise(2): EINVAL "advice is MADV_DONTNEED … and the pages are
/// locked") — and every reservation counts as locked memory in full
/// (`MCL_ONFAULT` defers the faulting, not the accounting). A burst of 50
/// logins on 2 cores left 15 arenas, 4.9 MB resident and 1 GB locked
/// (`codext-bench memory`). With one arena, freed memory returns to the
/// main heap, which shrinks with `brk` even when locked; each thread's
/// tcache keeps the shared arena's lock off the common path.
pub fn limit_malloc_arenas(n: i32) -> io::Result<()> {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt takes two integers and only sets a parameter of
        // the allocator (under its own lock); it returns 1 on success.
        let r = unsafe { libc::mallopt(libc::M_ARENA_MAX, n) };
        if r == 1 {
            Ok(())
        } else {
            Err(io::Error::other("mallopt(M_ARENA_MAX) refused"))
        }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        let _ = n;
        Ok(())
    }
}

/// Raises the calling thread's nice value by `by` (lowers its priority;
/// always allowed). On Linux the nice value is per thread, and a child
/// inherits its creator thread's: the helper's own lanes keep the unit's
/// `Nice=`, a thread serving a connection gives it up.
pub fn lower_thread_priority(by: i32) -> io::Result<()> {
    // SAFETY: setpriority/getpriority take plain integers; who = 0 is the
    // calling thread (Linux/NPTL).
    let now = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    };
    let err = io::Error::last_os_error();
    if now == -1 && err.raw_os_error() != Some(0) {
        return Err(err);
    }
    // SAFETY: as above.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, (now + by).min(19)) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Takes ownership of a descriptor the kernel just returned to the caller
/// (from `open`/`openat`), which nothing else owns.
pub fn own_fd(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: the caller passes a descriptor it just received from the
    // kernel and hands over; no other owner exists.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(all(test, target_env = "gnu"))]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::{Arc, Barrier};

    const CHILD: &str = "CODEXT_ARENA_TEST_CHILD";
    const THREADS: usize = 16;

    /// The daemon's cap holds: many threads allocating at once share the
    /// capped arenas instead of each taking one (without the cap glibc
    /// makes up to 8 per core). Counted by glibc itself: `malloc_stats`
    /// prints one `Arena N:` block per arena. Runs in a fresh copy of the
    /// test binary, because this process's other test threads have arenas
    /// already.
    #[test]
    fn given_the_arena_cap_then_threads_allocating_at_once_share_the_main_arena() {
        let name =
            "sys::tests::given_the_arena_cap_then_threads_allocating_at_once_share_the_main_arena";
        if std::env::var_os(CHILD).is_some() {
            limit_malloc_arenas(MALLOC_ARENAS).unwrap();
            let all = Arc::new(Barrier::new(THREADS + 1));
            let threads: Vec<_> = (0..THREADS)
                .map(|i| {
                    let all = Arc::clone(&all);
                    std::thread::spawn(move || {
                        let held = vec![i as u8; 4096 + i];
                        all.wait(); // everyone holds an allocation
                        all.wait(); // until the arenas are counted
                        held.len()
                    })
                })
                .collect();
            all.wait();
            // SAFETY: malloc_stats only reads the allocator's state (under
            // its locks) and writes to stderr.
            unsafe { libc::malloc_stats() };
            all.wait();
            for t in threads {
                t.join().unwrap();
            }
            return;
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--test-threads=1", "--nocapture"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let arenas = stderr.lines().filter(|l| l.starts_with("Arena ")).count();
        // The main arena, plus the one libtest's thread for this test may
        // have taken before the cap was set.
        assert!(
            (1..=MALLOC_ARENAS as usize + 1).contains(&arenas),
            "{arenas} arenas for {THREADS} threads:\n{stderr}"
        );
    }
}

/// (issue 26) Receives up to `max` bytes from the Unix stream `sock` and
/// at most `want` descriptors passed with them (`SCM_RIGHTS`), made
/// close-on-exec as they arrive (`MSG_CMSG_CLOEXEC`: the helper runs other
/// programs, which must never inherit a user's session). Any descriptor
/// beyond `want` is closed.
pub fn recv_with_fds(
    sock: std::os::fd::BorrowedFd<'_>,
    max: usize,
    want: usize,
) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = vec![0u8; max];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 8]);
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let n = msg.bytes;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = c {
            for fd in received {
                // Every descriptor is owned (and so closed) from here on.
                fds.push(own_fd(fd));
            }
        }
    }
    fds.truncate(want);
    buf.truncate(n);
    Ok((buf, fds))
}

/// (issue 26) Runs `program args` with exactly `env`, its standard input,
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

/// (issue 26) SIGKILL through a pidfd (never a reused pid).
pub fn pidfd_kill(pidfd: &OwnedFd) -> io::Result<()> {
    pidfd_send_signal(pidfd, libc::SIGKILL)
}
