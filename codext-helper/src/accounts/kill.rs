//! Ending every process and System V IPC object of a temporary user, with
//! the killer child of [`crate::sys::kill_all_as`] (which the user cannot
//! signal, stop or trace), until `/proc` — checked to show everything —
//! shows nothing of the uid.

use crate::error::{HelperError, Result};
use crate::procfs;
use crate::sys::{self, KillerIds};
use std::time::{Duration, Instant};

/// Kills every process of `ids.target` and removes its IPC objects. The
/// killer runs at least once whatever `/proc` shows (`kill(-1)` cannot say
/// whether it reached anyone: it succeeds whenever any other process
/// exists), then again while anything of the uid is listed, until
/// `deadline`.
pub fn kill_everything(ids: KillerIds, deadline: Duration) -> Result<()> {
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
        sys::kill_all_as(ids, &ipc, left).map_err(|e| {
            HelperError::account(format!("cannot kill the processes of uid {uid}"), e)
        })?;
        let procs = procfs::processes_of(uid);
        let ipc = procfs::ipc_of(uid);
        if procs.is_empty() && ipc.is_empty() {
            return Ok(());
        }
        if start.elapsed() > deadline {
            return Err(HelperError::Account(format!(
                "uid {uid} still has processes {procs:?} and IPC objects {ipc:?} after {}s",
                deadline.as_secs()
            )));
        }
        // Killed processes stay zombies until their parents reap them (the
        // kernel's doing, not the user's): look again shortly.
        std::thread::sleep(Duration::from_millis(20));
    }
}
