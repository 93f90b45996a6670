//! The pending state: who is pending, armed, logged in or being removed,
//! with token *hashes* only, shared by the daemon and the CLI verbs.
//!
//! One exclusive `flock` on `<state_dir>/state.lock` guards every
//! read-modify-write, whichever process does it; the state file is replaced
//! atomically (write a temporary file, fsync, rename, fsync the folder), so
//! a crash leaves either the old or the new state, never a torn one.

use crate::error::{HelperError, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "state.lock";
const ACCOUNTS_LOCK_FILE: &str = "accounts.lock";
const REMOVALS_LOCK_FILE: &str = "removals.lock";

/// Where a temporary user is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Puzzle issued, no valid answer yet. The name does not resolve.
    Pending,
    /// Valid answer received: the userdb record announces the name.
    Armed,
    /// Password accepted (token consumed); `useradd` is about to run or
    /// running. Recorded (and fsynced) before `useradd` starts, so a crash
    /// or a revoke at any point leaves a state that says an account may
    /// exist.
    Creating,
    /// Password accepted, account created, sessions may be open.
    Active,
    /// Being removed (processes killed, `userdel`); only the removal
    /// worker touches it.
    Removing,
}

/// One open PAM session, tied to the sshd process that opened it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// pid of the process that called `pam_open_session`.
    pub pid: u32,
    /// Its start time (field 22 of `/proc/<pid>/stat`), so a reused pid is
    /// not mistaken for it.
    pub start_time: u64,
    /// When it opened (seconds since the epoch).
    pub opened_at: u64,
}

/// Everything the helper keeps about one temporary user. No secret: the
/// token is represented by two one-way hashes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The user name.
    pub user: String,
    /// Announced and created uid.
    pub uid: u32,
    /// Announced and created gid (the codext group).
    pub gid: u32,
    /// Announced home folder.
    pub home: PathBuf,
    /// Announced shell.
    pub shell: PathBuf,
    /// Life phase.
    pub phase: Phase,
    /// Puzzle id, hex.
    pub puzzle_id: String,
    /// Login hash of the token, hex; emptied once the token is used.
    pub login_hash: String,
    /// Expected proof, hex.
    pub proof: String,
    /// Fingerprint of the agent key the puzzle was sealed to.
    pub client_fingerprint: String,
    /// Channel the puzzle went out on (`manual`, `digitalocean`).
    pub channel: String,
    /// Issue time.
    pub issued_at: u64,
    /// Deadline for a valid answer.
    pub answer_by: u64,
    /// Deadline for the login, once armed.
    pub login_by: Option<u64>,
    /// When the account was created.
    pub created_at: Option<u64>,
    /// End of the grant, once logged in.
    pub grant_until: Option<u64>,
    /// Wrong answers and passwords so far.
    pub attempts: u32,
    /// Open sessions.
    pub sessions: Vec<Session>,
    /// True once `useradd` created the account: only then may the helper
    /// ever remove an account of this name.
    pub account_created: bool,
    /// A further token for a live account (a second connection).
    #[serde(default)]
    pub renewal: Option<Renewal>,
    /// How the removal is going, once one was attempted.
    #[serde(default)]
    pub removal: Option<RemovalProgress>,
    /// The puzzle's text, kept (it is public) while a channel still has to
    /// publish it.
    #[serde(default)]
    pub puzzle: Option<String>,
    /// True once the channel published the puzzle.
    #[serde(default)]
    pub published: bool,
    /// (issue 15) The agent key the puzzle was sealed to, OpenSSH text
    /// form: authorised for key reconnects once the token login succeeded.
    #[serde(default)]
    pub client_key: Option<String>,
    /// (issue 15) Linger state, see [`crate::grant_keys`].
    #[serde(default)]
    pub linger: Option<crate::grant_keys::Linger>,
}

/// A removal that has been tried and has not finished: shown by `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovalProgress {
    /// When the first attempt started.
    pub started_at: u64,
    /// Attempts so far.
    pub attempts: u32,
    /// Why the last attempt did not finish.
    pub last_error: Option<String>,
}

/// A further one-time token for a user that is already logged in, so the
/// agent can open another connection: same account, new puzzle, same
/// rules (proof to arm, single use, attempt limit, time limits).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Renewal {
    /// Puzzle id, hex.
    pub puzzle_id: String,
    /// Login hash of the new token, hex.
    pub login_hash: String,
    /// Expected proof, hex.
    pub proof: String,
    /// Deadline for the answer.
    pub answer_by: u64,
    /// Deadline for the login, once armed.
    pub login_by: Option<u64>,
}

/// The whole state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// File format version.
    pub version: u32,
    /// Next uid to try (monotonic, wraps within the range).
    pub next_uid: Option<u32>,
    /// Entries by user name.
    pub users: BTreeMap<String, Entry>,
    /// uids whose removal left files behind: never handed out while here.
    #[serde(default)]
    pub quarantine: BTreeMap<u32, Quarantine>,
}

/// A uid held back because its last holder left files the sweep could not
/// remove (they would act for, or be readable by, the next holder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quarantine {
    /// The user that held it.
    pub user: String,
    /// Its home (checked again with the shared folders).
    pub home: PathBuf,
    /// Since when.
    pub since: u64,
    /// How many entries remained at the last look.
    pub leftovers: u64,
    /// The first few of them, with why.
    pub named: Vec<String>,
}

impl Default for State {
    fn default() -> State {
        State {
            version: 1,
            next_uid: None,
            users: BTreeMap::new(),
            quarantine: BTreeMap::new(),
        }
    }
}

/// The state folder.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// The state, read under the exclusive lock; dropping it releases the lock.
#[derive(Debug)]
pub struct Locked {
    _lock: Flock<File>,
    dir: PathBuf,
    /// The state as read; change it and call [`Locked::save`].
    pub state: State,
}

/// The account lock: held while `useradd` or `userdel` runs (they refuse
/// to run while another holds the password files), so no two account
/// tools of the daemon or a CLI verb ever overlap. It is held for
/// milliseconds, never across killing or sweeping.
#[derive(Debug)]
pub struct AccountsLock {
    _lock: Flock<File>,
}

fn lock_file(path: &Path) -> Result<Flock<File>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| HelperError::state(format!("cannot open {}", path.display()), e))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| HelperError::state(format!("cannot lock {}", path.display()), e))
}

impl Store {
    /// Opens (creating it 0700 if missing) the state folder. Refuses a
    /// folder that is not root's or that others can write.
    pub fn open(dir: &Path) -> Result<Store> {
        match std::fs::symlink_metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| {
                        HelperError::state(format!("cannot create {}", dir.display()), e)
                    })?;
            }
            Err(e) => {
                return Err(HelperError::state(
                    format!("cannot stat {}", dir.display()),
                    e,
                ))
            }
            Ok(m) => {
                if !m.is_dir() {
                    return Err(HelperError::State(format!(
                        "{} is not a folder",
                        dir.display()
                    )));
                }
                if m.uid() != nix::unistd::geteuid().as_raw() || m.mode() & 0o022 != 0 {
                    return Err(HelperError::State(format!(
                        "{} must belong to this user and not be writable by others",
                        dir.display()
                    )));
                }
            }
        }
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the state lock and reads the state.
    pub fn lock(&self) -> Result<Locked> {
        let lock = lock_file(&self.dir.join(LOCK_FILE))?;
        let path = self.dir.join(STATE_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                HelperError::state_data(
                    format!("{} is corrupt", path.display()),
                    e,
                    "move it away to start afresh",
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                return Err(HelperError::state(
                    format!("cannot read {}", path.display()),
                    e,
                ))
            }
        };
        Ok(Locked {
            _lock: lock,
            dir: self.dir.clone(),
            state,
        })
    }

    /// Takes the account lock.
    pub fn lock_accounts(&self) -> Result<AccountsLock> {
        Ok(AccountsLock {
            _lock: lock_file(&self.dir.join(ACCOUNTS_LOCK_FILE))?,
        })
    }

    /// Takes the removal lock: one removal at a time across the daemon and
    /// the CLI (killers share one uid and would kill each other). Lock
    /// order: removals, then accounts, then state.
    pub fn lock_removals(&self) -> Result<AccountsLock> {
        Ok(AccountsLock {
            _lock: lock_file(&self.dir.join(REMOVALS_LOCK_FILE))?,
        })
    }
}

impl Locked {
    /// Writes the state atomically: temporary file, fsync, rename, fsync of
    /// the folder.
    pub fn save(&self) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| HelperError::state_data("cannot encode state", e, ""))?;
        write_atomic(&self.dir, STATE_FILE, &bytes, 0o600)
    }
}

/// Replaces `dir/name` atomically with `bytes` (mode `mode`).
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let fail = |what: &str, e: std::io::Error| {
        HelperError::state(format!("cannot {what} {}", tmp.display()), e)
    };
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| fail("create", e))?;
    f.write_all(bytes).map_err(|e| fail("write", e))?;
    // The mode asked for, whatever the umask (a userdb record must be
    // world-readable for NSS to serve it to everyone).
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| fail("chmod", e))?;
    f.sync_all().map_err(|e| fail("sync", e))?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name)).map_err(|e| fail("rename", e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("sync the folder of", e))
}
