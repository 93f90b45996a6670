//! Ending every process of a temporary user: the killer child
//! ([`kill_all_as`]).
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

use super::children::{wait_pid, Waited};
use crate::ids::{Gid, Pid, Uid};
use std::io;
use std::sync::Mutex;
use std::time::Duration;

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
