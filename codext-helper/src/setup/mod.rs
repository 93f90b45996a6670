//! `codext-helper setup` and `unsetup`: wiring a host into codext and back,
//! with one command each.
//!
//! `setup` computes every file change first (and refuses, changing nothing,
//! a PAM stack whose shape it does not recognise), prints the diff, writes
//! the files atomically, runs `sshd -t` and checks the effective sshd
//! configuration for a codext user, and only then keeps them; any failure
//! puts back the byte-identical previous files. Then it runs
//! [`Helper::init`](crate::lifecycle::Helper::init) (server key, group, system accounts).
//!
//! **The manifest comes first.** Every change is recorded in a manifest
//! under the state folder *before* it is made: the manifest is written as a
//! pending record before the first edit, updated before each file, the
//! module and each thing `init` makes (init says what it is about to make,
//! and only what it makes itself), and marked complete at the end. A crash
//! at any point (tested after every step: [`crash_point`]) leaves a
//! manifest that covers every change made, so `unsetup` removes exactly
//! that: previous files back byte for byte where nothing else changed
//! since, only codext's lines where the operator edited a file; a record
//! whose change never happened finds the file as it was before and leaves
//! it.
//!
//! The lines it adds are the ones the shipped files document:
//! `@include codext` as the first rule of `/etc/pam.d/sshd`,
//! `@include codext-session` just before its `pam_selinux.so open` rule,
//! and, in `/etc/pam.d/atd` and `/etc/pam.d/cron` where they exist, an
//! `account` rule that refuses members of the codext group (a temporary
//! user must leave no job behind for the next holder of its uid).

use crate::error::HelperError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

mod apply;
mod files;
mod host;
mod pam;
mod shipped;
mod sshd;
mod unsetup;

pub use apply::setup;
pub use files::load_manifest;
pub use host::{
    nss_problem, nss_systemd_installed, pam_module_dirs, resolve_module, root_only_path,
    systemd_running,
};
pub use pam::{
    job_rule, parse_pam_line, plan_job_stack, plan_pam_sshd, remove_lines, with_module, PamLine,
};
pub use shipped::{EXPECTED_RULES, USER_SSHD_SETTINGS};
pub use sshd::sshd_effective;
pub use unsetup::unsetup;

/// Where a package installs the shipped files (the layout of `pam.d/` in
/// the source tree: `codext`, `codext-session`, `sshd_config.d/codext.conf`,
/// `limits.d/codext.conf`).
pub const DEFAULT_DATA_DIR: &str = "/usr/share/codext";
/// sshd's PAM stack.
pub const PAM_SSHD: &str = "/etc/pam.d/sshd";
/// The sshd drop-in: `00-` so it is read first (sshd keeps the first value
/// it reads for each keyword, sshd_config(5)).
pub const SSHD_DROP_IN: &str = "/etc/ssh/sshd_config.d/00-codext.conf";
/// The limits file.
pub const LIMITS_FILE: &str = "/etc/security/limits.d/codext.conf";
/// PAM stacks of the job daemons codext users must be kept out of.
pub const JOB_STACKS: [&str; 2] = ["/etc/pam.d/atd", "/etc/pam.d/cron"];
/// The manifest's name in the state folder.
pub const MANIFEST: &str = "setup.json";
/// The auth line in `/etc/pam.d/sshd`.
pub const INCLUDE_AUTH: &str = "@include codext";
/// The session line in `/etc/pam.d/sshd`.
pub const INCLUDE_SESSION: &str = "@include codext-session";
const SSHD: &str = "/usr/sbin/sshd";
const SYSTEMCTL: &str = "/usr/bin/systemctl";
const UNIT: &str = "codext-helper.service";
/// The DigitalOcean channel's unit (unsetup stops it before removing its account).
const CHANNEL_UNIT: &str = "codext-channel.service";

/// What `setup` is asked to do.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// The shipped files (see [`DEFAULT_DATA_DIR`]).
    pub data_dir: PathBuf,
    /// The PAM module to reference by absolute path; `None`: `pam_codext.so`
    /// in the PAM module folder.
    pub module: Option<PathBuf>,
    /// A built module to install as `pam_codext.so` in the PAM module
    /// folder (then named by that name).
    pub install_module: Option<PathBuf>,
    /// Print the diff, change nothing.
    pub dry_run: bool,
}

/// One file as setup leaves it, recorded for `unsetup`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRecord {
    /// The file.
    pub path: PathBuf,
    /// Its content before the first setup (`None`: it did not exist).
    pub before: Option<String>,
    /// SHA-256 (hex) of the content setup wrote last (or is about to
    /// write: the record comes first).
    pub after_sha256: String,
    /// SHA-256 of contents an earlier setup wrote there, which a crash may
    /// have left in place of `after_sha256`'s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_sha256: Vec<String>,
    /// The lines setup inserted into an existing file (empty: setup wrote
    /// the whole file).
    pub added: Vec<String>,
}

/// What setup did, kept in the state folder for `unsetup`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version (1).
    pub version: u32,
    /// Setup is under way (or was interrupted): the records may name
    /// changes that were not made yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
    /// Files written or edited, in the order they were.
    pub files: Vec<FileRecord>,
    /// Accounts `init` created (each with its own group of the same name).
    pub users: Vec<String>,
    /// Groups `init` created.
    pub groups: Vec<String>,
    /// Files `init` created (the server key and its public half).
    pub created_files: Vec<PathBuf>,
    /// Folders `init` created.
    pub created_dirs: Vec<PathBuf>,
    /// The module setup installed, if it did.
    #[serde(default)]
    pub module: Option<ModuleRecord>,
}

/// `pam_codext.so` as setup installed it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ModuleRecord {
    /// Where (the PAM module folder).
    pub path: PathBuf,
    /// SHA-256 (hex) of what setup installed.
    pub after_sha256: String,
    /// A copy of the module it replaced, in the state folder.
    pub backup: Option<PathBuf>,
    /// SHA-256 of modules an earlier setup installed, which a crash may
    /// have left in place of `after_sha256`'s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_sha256: Vec<String>,
}

fn sha256_bytes(b: &[u8]) -> String {
    codext_core::encoding::hex(&Sha256::digest(b))
}

/// A change to one file.
#[derive(Debug, Clone)]
struct Change {
    path: PathBuf,
    before: Option<String>,
    after: String,
    added: Vec<String>,
}

fn sha256_hex(text: &str) -> String {
    codext_core::encoding::hex(&Sha256::digest(text.as_bytes()))
}

/// A point where `setup` (and `init` under it) has made one change. Debug
/// builds only, for the tests: with `CODEXT_SETUP_CRASH_AT=N` the process
/// kills itself with SIGKILL (as a power cut would: no unwinding, nothing
/// flushed) after the Nth such point, saying which on stderr. Release
/// builds compile this to nothing.
pub fn crash_point(what: &str) {
    #[cfg(debug_assertions)]
    {
        use std::sync::atomic::{AtomicU32, Ordering};
        static STEP: AtomicU32 = AtomicU32::new(0);
        let step = STEP.fetch_add(1, Ordering::SeqCst) + 1;
        let at = std::env::var("CODEXT_SETUP_CRASH_AT")
            .ok()
            .and_then(|v| v.parse::<u32>().ok());
        if at == Some(step) {
            eprintln!("codext-helper: crash injected after {what} (step {step})");
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = what;
}

fn refused(m: impl Into<String>) -> HelperError {
    HelperError::Refused(m.into())
}

fn sys(m: impl Into<String>) -> HelperError {
    HelperError::System(m.into())
}

#[cfg(test)]
mod tests;
