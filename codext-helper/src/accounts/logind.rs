//! What systemd keeps of a temporary user — logind's sessions and user
//! record, the user manager and its units, the linger flag, journald's
//! per-uid files — ended through systemd itself, so the next holder of the
//! uid inherits none of it.
//!
//! On a host booted with systemd, Debian's `common-session` runs
//! `pam_systemd` for every login: a codext session is a logind session (a
//! `session-N.scope` in `user-U.slice`), and the user gets
//! `user-runtime-dir@U.service` (`/run/user/U`) and a user manager,
//! `user@U.service`, which it may ask to run services and timers
//! (`systemd-run --user`) and, where polkit allows it, to *linger*
//! (`loginctl enable-linger`: the manager keeps running without a session
//! and is started again at every boot). The killer alone ends every
//! process, but the manager it kills leaves `user@U.service` loaded in
//! state `failed`, and logind may still list the user (measured on a
//! booted Debian 12) — state the next holder of U inherits. So, around the
//! killer ([`around_kill`]):
//!
//! 1. linger off (`loginctl disable-linger U`; polkit allows root, and
//!    without polkit no user could have turned it on), then `loginctl
//!    terminate-user U`: logind stops the sessions' scopes and the user
//!    manager (asynchronously; a process that ignores `SIGTERM` would hold
//!    that up for the units' stop timeouts, which is why the killer
//!    follows at once);
//! 2. the killer ends whatever is left;
//! 3. `systemctl stop user-U.slice` waits until every unit of the uid has
//!    stopped, `systemctl reset-failed` forgets those that failed, and the
//!    helper waits until none of them is active or failed;
//! 4. the linger flag itself (`/var/lib/systemd/linger/<user>`) goes if
//!    logind did not remove it (no logind running, or no polkit).
//!
//! logind keeps its record of the user (state `closing`, the file
//! `/run/systemd/users/U` that sd-login reads) for `UserStopDelaySec=`
//! (10 s by default) after the last session, terminated or not
//! (`user_may_gc`), and a new session of the same uid within that time
//! would reuse it, with the old user's name. Removal does not wait for it
//! (a removal would take 10 s); instead the uid is not handed out again
//! while logind holds it ([`holds`], asked by [`super::Known::uid_taken`]).
//!
//! Steps 1 and 3 run only when systemd is the init system (`sd_booted(3)`:
//! `/run/systemd/system` exists); every tool is run by absolute path, with
//! a clean environment and a deadline ([`super::tools`]). A step that
//! fails only logs a warning when a later step covers it (the killer
//! covers step 1); what is still there at the end — a unit of the uid
//! active or failed, the linger flag — fails the removal, which the reaper
//! retries: the uid is not handed out meanwhile.
//!
//! journald (its default `SplitMode=uid`) writes the lines of every uid
//! ≥ 1000 to `user-U.journal`, and gives U read access to it through an
//! ACL entry — so the next holder of U read its predecessor's `logger`
//! lines with `journalctl --user` (measured). [`seal_journal_files`], part
//! of the sweep after the killer, first has journald write out everything
//! already sent (`journalctl --sync`: the uid has no process left to send
//! more), then takes the uid's files (`user-U.journal`, archived
//! `user-U@….journal`, set-aside `….journal~`, in `/var/log/journal/*/`
//! and `/run/log/journal/*/`) away from it: mode `0600`, which makes the
//! ACL's mask, hence U's entry, grant nothing; and the file journald writes
//! is renamed to the name journald itself gives a file it sets aside
//! (`user-U@<time>-<random>.journal~`), so that journald, on opening
//! `user-U.journal` again (after a rotation or a restart), makes a new
//! file with a fresh ACL instead of granting the next holder the old one.
//! The lines stay for root (and `journalctl` reads them; `journald`'s
//! vacuuming counts them). Deleting the files instead would throw that
//! record away, and journald, on finding a file it writes deleted, rotates
//! *every* journal file (`server_rotate`): one rotation of the system
//! journal per reuse of a uid, and with the default `SystemMaxFiles=100`
//! the system journal's history would shrink to the last hundred logins.
//! Until journald next rotates, the next holders' own lines go to the
//! renamed file: root's, never shown to them. The operator who wants no
//! per-uid file at all sets `SplitMode=none` in journald.conf (every line
//! then goes to the system journal, which only root and the `adm` and
//! `systemd-journal` groups read).

use super::sweep::Sweep;
use super::tools;
use crate::error::{HelperError, Result};
use crate::ids::Uid;
use crate::log::warn;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `loginctl`.
pub const LOGINCTL: &str = "/usr/bin/loginctl";
/// `systemctl`.
pub const SYSTEMCTL: &str = "/usr/bin/systemctl";
/// `journalctl`.
pub const JOURNALCTL: &str = "/usr/bin/journalctl";
/// Exists when systemd is the init system (`sd_booted(3)`).
const BOOTED: &str = "/run/systemd/system";
/// logind's record of each user it knows, by uid (what sd-login reads).
const LOGIND_USERS: &str = "/run/systemd/users";
/// One file per lingering user, by name (logind's `SetUserLinger`).
pub const LINGER_DIR: &str = "/var/lib/systemd/linger";
/// journald's persistent and volatile storage; each holds one folder per
/// machine id.
pub const JOURNAL_DIRS: &[&str] = &["/var/log/journal", "/run/log/journal"];

/// How often the end of the uid's units is looked for.
const POLL: Duration = Duration::from_millis(50);

/// True when systemd is the init system.
pub fn booted() -> bool {
    Path::new(BOOTED).is_dir()
}

/// Ends `user`'s (uid `uid`'s) logind sessions and user manager, runs
/// `kill` (the killer), then waits for every unit of the uid to be gone
/// and removes the linger flag; all within about twice `deadline` (one for
/// the steps before the killer, one after). The killer's error is
/// returned first; then what systemd still holds of the uid (logind's
/// record aside, see the module docs).
pub fn around_kill(
    user: &str,
    uid: Uid,
    deadline: Duration,
    kill: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let units = if booted() {
        end_user(user, uid, deadline)
    } else {
        Vec::new()
    };
    kill()?;
    let mut left = Vec::new();
    if booted() {
        left.extend(wait_for_units(uid, &units, deadline));
    }
    let flag = linger_file(user);
    match std::fs::remove_file(&flag) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => left.push(format!("{} ({e})", flag.display())),
    }
    if left.is_empty() {
        return Ok(());
    }
    Err(HelperError::Account(format!(
        "systemd still holds uid {uid} after the kill: {}",
        left.join("; ")
    )))
}

/// Step 1: linger off, the user terminated. Returns the units to wait
/// for: the user manager, the runtime folder's service, the slice and the
/// session scopes logind listed.
fn end_user(user: &str, uid: Uid, deadline: Duration) -> Vec<String> {
    let record = std::fs::read_to_string(logind_record(uid)).ok();
    let mut units = vec![
        format!("user@{uid}.service"),
        format!("user-runtime-dir@{uid}.service"),
        format!("user-{uid}.slice"),
    ];
    units.extend(
        record
            .as_deref()
            .map(sessions)
            .unwrap_or_default()
            .into_iter()
            .map(|s| format!("session-{s}.scope")),
    );
    let uid_text = uid.to_string();
    if linger_file(user).exists() {
        attempt(LOGINCTL, &["disable-linger", &uid_text], deadline);
    }
    if record.is_some() {
        attempt(LOGINCTL, &["terminate-user", &uid_text], deadline);
    }
    units
}

/// Step 3: every unit of the uid stopped (waited for), the failed ones
/// forgotten; what is not, by the deadline.
fn wait_for_units(uid: Uid, units: &[String], deadline: Duration) -> Vec<String> {
    let end = Instant::now() + deadline;
    let left = |now: Instant| {
        end.saturating_duration_since(now)
            .max(Duration::from_secs(1))
    };
    // A synchronous stop: systemctl returns when the stop job is done.
    attempt(
        SYSTEMCTL,
        &["stop", "--no-ask-password", &format!("user-{uid}.slice")],
        left(Instant::now()),
    );
    let mut args: Vec<&str> = vec!["--quiet", "--no-ask-password"];
    args.extend(units.iter().map(String::as_str));
    loop {
        // Not-loaded units make reset-failed exit non-zero: the checks
        // below judge, not its status.
        let _ = tools::run(
            SYSTEMCTL,
            &[&["reset-failed"], &args[..]].concat(),
            left(Instant::now()),
        );
        let mut held = Vec::new();
        for (verb, state) in [("is-active", "active"), ("is-failed", "failed")] {
            // Exit status 0: at least one of the units is in that state.
            match tools::run(
                SYSTEMCTL,
                &[&[verb], &args[..]].concat(),
                left(Instant::now()),
            ) {
                Ok(run) if run.success() => {
                    held.push(format!("a unit of {} is {state}", units.join(" ")))
                }
                Ok(_) => {}
                Err(e) => held.push(format!("systemctl {verb}: {e}")),
            }
        }
        if held.is_empty() || Instant::now() >= end {
            return held;
        }
        std::thread::sleep(POLL);
    }
}

/// Runs a step that a later one covers: a failure is only logged.
fn attempt(program: &str, args: &[&str], deadline: Duration) {
    match tools::run(program, args, deadline) {
        Ok(run) if run.success() => {}
        Ok(run) => warn!("{program} {}: {}", args.join(" "), run.describe()),
        Err(e) => warn!("{program} {}: {e}", args.join(" ")),
    }
}

/// True while logind keeps a record of `uid` (a session, a lingering
/// manager, or the `UserStopDelaySec=` after the last session): a new
/// session of the uid would inherit it, so the uid is not handed out.
pub fn holds(uid: Uid) -> bool {
    logind_record(uid).exists()
}

fn logind_record(uid: Uid) -> PathBuf {
    Path::new(LOGIND_USERS).join(uid.to_string())
}

/// `user`'s linger flag. The name is a codext name (`user-<hex>`), so it
/// is one path component.
pub fn linger_file(user: &str) -> PathBuf {
    Path::new(LINGER_DIR).join(user)
}

/// The session ids of a logind user record (`SESSIONS=` line, ids
/// separated by spaces); only ids that are plain letters and digits.
fn sessions(record: &str) -> Vec<String> {
    record
        .lines()
        .find_map(|l| l.strip_prefix("SESSIONS="))
        .map(|v| {
            v.split_whitespace()
                .filter(|s| s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric()))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// True for journald's files of `uid`: `user-U.journal` (the one it
/// writes), `user-U@….journal` (archived) and `user-U@….journal~` (set
/// aside, as journald does with a corrupt file and [`seal_journal_files`]
/// with the one it writes).
pub fn is_uid_journal(name: &str, uid: Uid) -> bool {
    let Some(rest) = name.strip_prefix(&format!("user-{uid}")) else {
        return false;
    };
    rest == ".journal"
        || (rest.starts_with('@') && (rest.ends_with(".journal") || rest.ends_with(".journal~")))
}

/// The name journald gives a file it sets aside (`journal_file_dispose`):
/// `user-U@<realtime µs, 16 hex>-<random, 16 hex>.journal~`, which
/// `journalctl` reads and journald's vacuuming recognises.
pub fn set_aside_name(uid: Uid, realtime_us: u64, random: u64) -> String {
    format!("user-{uid}@{realtime_us:016x}-{random:016x}.journal~")
}

/// Takes journald's files of `uid` away from it (see the module docs),
/// after `journalctl --sync` when systemd runs; a file that cannot be
/// sealed is a leftover.
pub fn seal_journal_files(uid: Uid, deadline: Duration) -> Sweep {
    use std::os::unix::fs::PermissionsExt;
    if booted() {
        attempt(JOURNALCTL, &["--sync"], deadline);
    }
    let mut swept = Sweep::default();
    let mut failed = |path: &Path, what: &str, e: std::io::Error| {
        swept.leftovers += 1;
        swept
            .named
            .push(format!("{} (cannot {what}: {e})", path.display()));
    };
    for root in JOURNAL_DIRS {
        let Ok(machines) = std::fs::read_dir(root) else {
            continue;
        };
        for machine in machines.flatten() {
            // Folders only (DirEntry::file_type does not follow symlinks);
            // only root and journald write here.
            if !machine.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(files) = std::fs::read_dir(machine.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name();
                let Some(name) = name.to_str().filter(|n| is_uid_journal(n, uid)) else {
                    continue;
                };
                if !file.file_type().is_ok_and(|t| t.is_file()) {
                    continue;
                }
                let path = file.path();
                if let Err(e) =
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                {
                    failed(&path, "chmod", e);
                    continue;
                }
                if name != format!("user-{uid}.journal") {
                    continue;
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
                    .unwrap_or(0);
                let random = codext_core::random::bytes::<8>()
                    .map(u64::from_le_bytes)
                    .unwrap_or(now);
                let to = machine.path().join(set_aside_name(uid, now, random));
                if let Err(e) = std::fs::rename(&path, &to) {
                    failed(&path, "rename", e);
                }
            }
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_journal_file_names_then_only_the_uids_own_match() {
        let u = Uid::from_raw(59000);
        for yes in [
            "user-59000.journal",
            "user-59000@0123456789abcdef0123456789abcdef-0000000000000001-0005f1e2d3c4b5a6.journal",
            "user-59000@0005f1e2d3c4b5a6-0123456789abcdef.journal~",
        ] {
            assert!(is_uid_journal(yes, u), "{yes}");
        }
        for no in [
            "user-590001.journal",
            "user-5900.journal",
            "user-59000.journal.tmp",
            "user-59000",
            "system.journal",
            "system@0123-0001.journal",
            "user-59000x.journal",
            "xuser-59000.journal",
            "user-59000@x.notjournal",
        ] {
            assert!(!is_uid_journal(no, u), "{no}");
        }
        let aside = set_aside_name(u, 0x0005_f1e2_d3c4_b5a6, 0xfeed);
        assert_eq!(
            aside,
            "user-59000@0005f1e2d3c4b5a6-000000000000feed.journal~"
        );
        assert!(is_uid_journal(&aside, u), "a sealed file is sealed again");
    }

    #[test]
    fn given_a_logind_user_record_then_its_session_ids_are_read_and_odd_ones_dropped() {
        let record = "# This is private data. Do not parse.\nNAME=user-abc\nSTATE=active\nSESSIONS=352 c7 ../x 12\nSEATS=\n";
        assert_eq!(sessions(record), ["352", "c7", "12"]);
        assert!(sessions("NAME=user-abc\n").is_empty());
    }

    #[test]
    fn given_a_codext_name_then_the_linger_flag_is_one_file_in_loginds_folder() {
        assert_eq!(
            linger_file("user-0123abcd"),
            Path::new("/var/lib/systemd/linger/user-0123abcd")
        );
    }
}
