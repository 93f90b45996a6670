//! A uid's kernel keyrings (keyctl(2)): whether this process may use
//! keyctl at all, and clearing them from a child that takes the uid
//! ([`clear_keyrings_as`]).

use super::children::{wait_pid, Waited};
use crate::ids::{Gid, Pid, Uid};
use std::io;
use std::time::Duration;

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
