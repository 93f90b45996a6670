//! The checks of the host's wiring that codext relies on: `/proc` shows
//! every process to the helper, host keys exist to sign into puzzles, and
//! the clock is plausible.

use super::report::Report;
use crate::config::Config;
use std::os::unix::fs::MetadataExt;

/// The earliest plausible time (2025-01-01): a clock before it is wrong.
const EPOCH_FLOOR: u64 = 1_735_689_600;

pub(super) fn proc_check(r: &mut Report, daemon: Option<i32>) {
    // The daemon's own view when it runs (its mount namespace, its
    // capabilities); otherwise this process's mounts and the unit's
    // capability set, which has no CAP_SYS_PTRACE.
    let (mountinfo, status, whose) = match daemon {
        Some(pid) => (
            std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default(),
            std::fs::read_to_string(format!("/proc/{pid}/status")).ok(),
            format!("the daemon (pid {pid})"),
        ),
        None => (
            std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            None,
            "a helper with the unit's capabilities".to_owned(),
        ),
    };
    let viewer = status
        .as_deref()
        .map(crate::procfs::Viewer::from_status)
        .unwrap_or(crate::procfs::Viewer {
            sys_ptrace: false,
            groups: vec![0],
        });
    let problem = match crate::procfs::parse_proc_mount(&mountinfo) {
        None => Some("/proc is not a proc mount".to_owned()),
        Some(m) => crate::procfs::visibility_problem(&m, &viewer),
    };
    match problem {
        None => r.ok("proc", format!("/proc shows every process to {whose}")),
        Some(why) => r.fail(
            "proc",
            format!("{why}: teardown could miss a temporary user's processes"),
            "remount /proc without hidepid (or with gid= of a group the helper is in): mount -o remount,hidepid=0 /proc, and fix /etc/fstab",
        ),
    }
}

pub(super) fn host_key_check(r: &mut Report, cfg: &Config) {
    match codext_core::hostkeys::fingerprints(&cfg.host_key_dir, &cfg.host_keys) {
        Ok(f) if !f.is_empty() => r.ok(
            "hostkeys",
            format!("{} host key(s) to sign into puzzles", f.len()),
        ),
        Ok(_) => r.fail(
            "hostkeys",
            "no host key found",
            "ssh-keygen -A (or set host_keys in helper.toml)",
        ),
        Err(e) => r.fail(
            "hostkeys",
            e.to_string(),
            "ssh-keygen -A (or fix host_keys in helper.toml)",
        ),
    }
}

pub(super) fn clock_check(r: &mut Report, cfg: &Config) {
    let now = codext_core::time::now();
    let key_time = std::fs::metadata(&cfg.server_key)
        .ok()
        .map(|m| u64::try_from(m.mtime()).unwrap_or(0));
    if now < EPOCH_FLOOR {
        r.fail(
            "clock",
            format!(
                "the clock says {} (before 2025): puzzle expiry is meaningless",
                codext_core::time::rfc3339(now)
            ),
            "set the time (timedatectl set-ntp true, or date -s)",
        );
    } else if let Some(t) = key_time.filter(|t| *t > now + 300) {
        r.fail(
            "clock",
            format!(
                "the server key was written at {}, after now ({}): the clock went back",
                codext_core::time::rfc3339(t),
                codext_core::time::rfc3339(now)
            ),
            "set the time (timedatectl set-ntp true)",
        );
    } else {
        r.ok("clock", codext_core::time::rfc3339(now));
    }
}
