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

/// How [`clear_keyrings_as`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyringsCleared {
    /// The user keyring, the user session keyring and the persistent
    /// keyring of the uid are empty.
    Cleared,
    /// The kernel refuses `keyctl` here (no key support, or a seccomp
    /// filter, as in docker's and nspawn's defaults): nobody under this
    /// filter can keep keys either.
    Unavailable,
}

/// The user keyring's permissions as the kernel makes it
/// (`look_up_user_keyrings`): everything but setattr for its possessor,
/// everything for its owner.
const USER_KEYRING_PERM: libc::c_ulong = 0x1f3f_0000;

/// Empties the kernel keyrings that outlive every process of `uid`: its
/// user keyring (`@u`), user session keyring (`@us`) and persistent
/// keyring. Since Linux 5.3 the first two hang off the user namespace, not
/// off the uid's last process, so they and the keys linked in them stay
/// for the next holder of the uid to read; the persistent keyring stays
/// for `persistent_keyring_expiry` (3 days).
///
/// A forked child takes all of `uid`'s ids (real, effective, saved; the
/// keyrings are looked up by the *real* uid, and only their owner may
/// clear them without `CAP_SYS_ADMIN`) and `gid`, puts the user keyring's
/// permissions back (its owner may; a user can take them away), clears
/// each keyring (the keys in them, referenced nowhere else, are then
/// garbage-collected) and invalidates the persistent keyring. Run only
/// when nothing of `uid` runs any more (after the killer): a process of
/// `uid` could signal this child, which [`wait_pid`] then kills at
/// `deadline`.
pub fn clear_keyrings_as(uid: Uid, gid: Gid, deadline: Duration) -> io::Result<KeyringsCleared> {
    if uid.is_root() || gid.is_root() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to clear keyrings as root",
        ));
    }
    let (uid, gid) = (uid.as_raw(), gid.as_raw());
    // SAFETY: as in `kill_all_as`: the child only makes raw system calls
    // with integer arguments and `_exit`s; it allocates nothing and takes
    // no lock.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: raw system calls with integer arguments (a null group
        // list of length 0), reading errno through its thread-local
        // pointer, and `_exit`, which never returns. Exit status: 0
        // cleared, 2 cannot drop privileges, 3 keyctl unavailable, 10–12
        // the user, user session or persistent keyring not cleared.
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
            let keyctl = |op: u32, a: libc::c_long, b: libc::c_long| -> libc::c_long {
                libc::syscall(
                    libc::SYS_keyctl,
                    op as libc::c_long,
                    a,
                    b,
                    0 as libc::c_long,
                )
            };
            let errno = || *libc::__errno_location();
            let user = libc::KEY_SPEC_USER_KEYRING as libc::c_long;
            let user_session = libc::KEY_SPEC_USER_SESSION_KEYRING as libc::c_long;
            if keyctl(libc::KEYCTL_GET_KEYRING_ID, user, 1) < 0 {
                let e = errno();
                libc::_exit(if e == libc::ENOSYS || e == libc::EPERM {
                    3
                } else {
                    10
                });
            }
            for (ring, code) in [(user, 10), (user_session, 11)] {
                keyctl(
                    libc::KEYCTL_SETPERM,
                    ring,
                    USER_KEYRING_PERM as libc::c_long,
                );
                if keyctl(libc::KEYCTL_CLEAR, ring, 0) < 0 {
                    libc::_exit(code);
                }
            }
            // -1: the caller's own uid; linked into a fresh process
            // keyring so this child possesses it.
            let persistent = keyctl(
                libc::KEYCTL_GET_PERSISTENT,
                -1,
                libc::KEY_SPEC_PROCESS_KEYRING as libc::c_long,
            );
            if persistent >= 0 {
                if keyctl(libc::KEYCTL_CLEAR, persistent, 0) < 0 {
                    libc::_exit(12);
                }
                keyctl(libc::KEYCTL_INVALIDATE, persistent, 0);
            } else if errno() != libc::EOPNOTSUPP {
                libc::_exit(12);
            }
            libc::_exit(0);
        }
    }
    let pid = Pid::from_kernel(pid).ok_or_else(|| io::Error::other("fork returned no pid"))?;
    match wait_pid(pid, deadline)? {
        Waited::Exited(0) => Ok(KeyringsCleared::Cleared),
        Waited::Exited(3) => Ok(KeyringsCleared::Unavailable),
        Waited::Exited(2) => Err(io::Error::other("cannot take the uid to clear its keyrings")),
        Waited::Exited(code) => Err(io::Error::other(format!(
            "the {} keyring cannot be cleared (status {code}; its owner may have taken away the permissions; only CAP_SYS_ADMIN or a reboot can clear it)",
            match code {
                10 => "user",
                11 => "user session",
                _ => "persistent",
            }
        ))),
        Waited::Signaled(sig) => Err(io::Error::other(format!(
            "the keyring child died of signal {sig}"
        ))),
        Waited::KilledAtDeadline => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the keyring child did not finish in time and was killed",
        )),
    }
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
