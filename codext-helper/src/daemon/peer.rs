//! The peer checks the recorder's sockets share: the recording socket
//! ([`super::recording`], whose module docs list them) and the container
//! enter socket ([`super::entry`]). A connection's peer, as the kernel
//! names it (`SO_PEERCRED`), is served only as the recorder of a session
//! of a live codext account ([`Peer`]).

use crate::lifecycle::{Entry, Helper, Session};
use std::os::unix::fs::MetadataExt;

/// How far up the process tree a session's sshd is looked for.
const MAX_DEPTH: usize = 64;

/// The checked peer.
pub(super) struct Peer {
    /// Its grant.
    pub(super) entry: Entry,
    /// The session it runs in.
    pub(super) session: Session,
}

/// A `/proc/PID/status` field's values.
fn status_field(status: &str, key: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The checks of the recording socket's module docs
/// ([`super::recording`]), in order, for a connection to any of the
/// recorder's sockets (the container entry socket too), `group`
/// the recorder's group; `Err` says which failed.
pub(super) fn check_peer_of(
    helper: &Helper,
    group: u32,
    pid: u32,
    uid: u32,
    gid: u32,
) -> Result<Peer, String> {
    let s = Peek { gid: group };
    if gid != s.gid {
        return Err(format!(
            "pid {pid} is not the session recorder: its group is {gid}, not the recorder's {}",
            s.gid
        ));
    }
    let entries = helper.status().map_err(|e| e.to_string())?;
    let entry = entries
        .into_iter()
        .find(|e| e.uid() == uid && e.is_live())
        .ok_or_else(|| format!("uid {uid} is no live codext account"))?;
    if entry.sessions().is_empty() {
        return Err(format!("{} has no open session", entry.user()));
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("pid {pid}: {e}"))?;
    let uids = status_field(&status, "Uid:");
    let gids = status_field(&status, "Gid:");
    if uids.len() != 4 || uids.iter().any(|u| *u != uid) {
        return Err(format!("pid {pid} changed its uids since it connected"));
    }
    if gids.get(1) != Some(&s.gid) {
        return Err(format!("pid {pid} no longer runs as the recorder's group"));
    }
    match status_field(&status, "TracerPid:").first() {
        Some(0) => {}
        Some(t) => return Err(format!("pid {pid} is traced by pid {t}")),
        None => return Err(format!("pid {pid}: no TracerPid")),
    }
    // The kernel makes the files in /proc/PID root's when the process is
    // not dumpable (`task_dump_owner`; the folder itself keeps the euid).
    let owner = std::fs::metadata(format!("/proc/{pid}/status"))
        .map(|m| m.uid())
        .map_err(|e| format!("pid {pid}: {e}"))?;
    if owner != 0 {
        return Err(format!(
            "pid {pid} is dumpable: its memory is open to uid {uid}"
        ));
    }
    let mut p = pid;
    for _ in 0..MAX_DEPTH {
        let st = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        p = match status_field(&st, "PPid:").first() {
            Some(pp) if *pp > 1 => *pp,
            _ => break,
        };
        if let Some(session) = entry.sessions().iter().find(|x| {
            x.pid == p
                && (x.start_time == 0
                    || crate::lifecycle::process_start_time(p) == Some(x.start_time))
        }) {
            return Ok(Peer {
                session: session.clone(),
                entry,
            });
        }
    }
    Err(format!(
        "pid {pid} runs in no ssh session of {}",
        entry.user()
    ))
}

/// The part of the recording socket's state the peer checks read.
struct Peek {
    gid: u32,
}
