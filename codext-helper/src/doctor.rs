//! `codext-helper doctor`: every condition codext needs on this host, one
//! line each — ok, warn or fail, and what to do. It changes nothing; a
//! reviewer runs it and gets the whole picture (`--json` for machines).
//!
//! What each check proves is listed in `docs/SECURITY_REVIEW.md`, with the
//! test that breaks the host on purpose and sees the check fail.
//!
//! The checks are grouped by what they look at, a file each: the login
//! path (`pam_sshd`), the daemon (`daemon`), the host's wiring (`host`),
//! the accounts (`accounts`) and the mounts they write to (`mounts`), the
//! DigitalOcean channel (`channel`, `token_scopes`), and the checks the
//! recording and profiles modules own (`hooks`); each adds lines to one
//! report (`report`), and [`run`] calls them in the host's checklist order.

mod accounts;
mod channel;
mod daemon;
mod hooks;
mod host;
mod mounts;
mod pam_sshd;
mod report;
mod token_scopes;

pub use pam_sshd::PROBE_USER;
pub use report::{print, Check, Status};

use crate::config::Config;
use accounts::{quarantine_check, uid_check};
use channel::digitalocean_check;
use daemon::{helper_check, memory_check, mode_checks};
use hooks::hook_checks;
use host::{clock_check, host_key_check, proc_check};
use mounts::mount_checks;
use pam_sshd::{nss_check, pam_checks, sshd_checks};
use report::Report;

/// Runs every check.
pub fn run(cfg: &Config) -> Vec<Check> {
    let mut r = Report::default();
    pam_checks(&mut r, &cfg.accounts.group);
    sshd_checks(&mut r, cfg.recording.enabled);
    nss_check(&mut r);
    let daemon = helper_check(&mut r, cfg);
    mode_checks(&mut r, cfg);
    proc_check(&mut r, daemon);
    memory_check(&mut r, daemon);
    uid_check(&mut r, cfg);
    quarantine_check(&mut r, cfg);
    mount_checks(&mut r, cfg);
    host_key_check(&mut r, cfg);
    digitalocean_check(&mut r, cfg);
    clock_check(&mut r, cfg);
    hook_checks(&mut r, cfg);
    r.0
}
