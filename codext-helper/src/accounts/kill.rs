//! Ending every process and System V IPC object of a temporary user, until
//! `/proc` — checked to show everything — shows nothing of the uid alive.
//!
//! Two hands do it:
//!
//! 1. **The killer** child of [`crate::sys::kill_all_as`] (real and saved
//!    uid X, effective uid U): its `kill(-1, SIGKILL)` reaches, in one
//!    atomic pass of the kernel, every process whose real or saved uid is U
//!    however fast they fork, and none of them can signal, stop or trace
//!    it. It also removes U's IPC objects.
//! 2. **Root, by pidfd**, for what the killer cannot reach: a process that
//!    keeps U only as its *effective* (or filesystem) uid — another uid B
//!    ran U's setuid file and called `setresuid(B, U, B)` — since kill(2)
//!    matches the sender's uids against the target's real and saved uids
//!    only. Each such process is pinned with `pidfd_open` (so a reused pid
//!    is never hit), checked again to hold uid U, and stopped; once a pass
//!    over `/proc` finds nothing new (a stopped process cannot fork), every
//!    pinned process gets `SIGKILL`. Root with `CAP_KILL` cannot be
//!    refused, and nothing of B's can stop the helper itself.
//!
//! Zombies hold no memory, no file and run nothing: they count until their
//! parent reaps them, but a zombie whose parent is another uid's process
//! that never reaps does not keep the account alive (`userdel` ignores
//! them too: their `/proc/PID/root` cannot be resolved).

use crate::error::{HelperError, Result};
use crate::ids::{Pid, Uid};
use crate::procfs;
use crate::sys::{self, KillerIds};
use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// Kills every process of `ids.target` and removes its IPC objects. The
/// killer runs at least once whatever `/proc` shows (`kill(-1)` cannot say
/// whether it reached anyone: it succeeds whenever any other process
/// exists), then root kills what remains by pidfd; again while anything of
/// the uid is listed alive, until `deadline`. Each killer pass holds the
/// killer lock at `killer_lock` (killers share one uid).
pub fn kill_everything(ids: KillerIds, killer_lock: &Path, deadline: Duration) -> Result<()> {
    let uid = ids.target;
    procfs::check_visibility().map_err(|why| {
        HelperError::Account(format!("cannot see every process of uid {uid}: {why}"))
    })?;
    let start = Instant::now();
    loop {
        let ipc = procfs::ipc_of(uid);
        let left = deadline
            .saturating_sub(start.elapsed())
            .max(Duration::from_secs(1));
        {
            let _one = crate::store::lock_killer(killer_lock)?;
            sys::kill_all_as(ids, &ipc, left).map_err(|e| {
                HelperError::account(format!("cannot kill the processes of uid {uid}"), e)
            })?;
        }
        let beyond = root_kill(uid, start + deadline);
        let live = procfs::live_processes_of(uid);
        let ipc = procfs::ipc_of(uid);
        if live.is_empty() && ipc.is_empty() {
            if beyond > 0 {
                crate::log::info!(
                    "uid {uid}: {beyond} process(es) holding it only as effective or filesystem uid were killed by pidfd"
                );
            }
            wait_for_reaping(uid, Duration::from_secs(1));
            return Ok(());
        }
        if start.elapsed() > deadline {
            return Err(HelperError::Account(format!(
                "uid {uid} still has processes {live:?} and IPC objects {ipc:?} after {}s",
                deadline.as_secs()
            )));
        }
        // Killed processes stay zombies until their parents reap them (the
        // kernel's doing, not the user's): look again shortly.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Root's pass: stops every live process listed with any uid equal to
/// `uid`, pinned by pidfd, until a pass finds none new (or `until`), then
/// kills them all. Returns how many of them were out of the killer's
/// reach (neither real nor saved uid `uid`).
fn root_kill(uid: Uid, until: Instant) -> usize {
    let mut pinned: Vec<(OwnedFd, bool)> = Vec::new();
    let mut seen: BTreeSet<Pid> = BTreeSet::new();
    loop {
        let mut new = 0;
        for pid in procfs::live_processes_of(uid) {
            if !seen.insert(pid) {
                continue;
            }
            let Ok(fd) = sys::pidfd_open(pid) else {
                continue; // gone already
            };
            // The number is pinned to one process now. Read its uids
            // again, then make sure that process still lived after the
            // read (signal 0): a pid reused in between would fail it.
            let Some(ids) = procfs::uids_of(pid) else {
                continue;
            };
            if !ids.contains(&uid) || sys::pidfd_send_signal(&fd, 0).is_err() {
                continue;
            }
            if sys::pidfd_send_signal(&fd, libc::SIGSTOP).is_ok() {
                // Out of the killer's reach: neither its real nor its saved
                // uid is the user's.
                let beyond = ids[0] != uid && ids[2] != uid;
                pinned.push((fd, beyond));
                new += 1;
            }
        }
        if new == 0 || Instant::now() >= until {
            break;
        }
    }
    pinned
        .iter()
        .filter(|(fd, beyond)| sys::pidfd_send_signal(fd, libc::SIGKILL).is_ok() && *beyond)
        .count()
}

/// Gives the parents of killed processes a moment to reap them.
fn wait_for_reaping(uid: Uid, limit: Duration) {
    let end = Instant::now() + limit;
    while !procfs::processes_of(uid).is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
}
