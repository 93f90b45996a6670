//! The pending state: who is pending, armed, logged in or being removed
//! ([`crate::lifecycle::Entry`]), with token *hashes* only, shared by the
//! daemon and the CLI verbs.
//!
//! One exclusive `flock` on `<state_dir>/state.lock` guards every
//! read-modify-write, whichever process does it; the state file is replaced
//! atomically (write a temporary file, fsync, rename, fsync the folder), so
//! a crash leaves either the old or the new state, never a torn one.
//!
//! Because the file is only ever replaced whole, a reader without the lock
//! still sees one complete version: [`Store::may_know`] answers "is this
//! name in the state at all?" from the names of the version last read,
//! re-read only when the file was replaced. A flood of attempts at names
//! codext never issued is refused without queueing on the lock in front
//! of real logins.

use crate::error::{HelperError, Result};
use crate::lifecycle::Entry;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "state.lock";
const ACCOUNTS_LOCK_FILE: &str = "accounts.lock";
/// Killers share one uid and would kill each other: one at a time across
/// the daemon and the CLI (see [`crate::sys`]).
pub const KILLER_LOCK_FILE: &str = "killer.lock";
/// Per-user removal locks live here (`<user>.lock`).
const REMOVING_DIR: &str = "removing";
/// The folder of the per-user container locks.
const CONTAINERS_DIR: &str = "containers";

/// The whole state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// File format version.
    pub version: u32,
    /// Where the next never-used uid is looked for (moves forward,
    /// wrapping within the range); uids below it that [`State::freed`]
    /// does not name were handed out before it existed.
    pub next_uid: Option<u32>,
    /// When each uid was last given back (seconds since the epoch): the
    /// uid free the longest is handed out first, after the never-used
    /// ones (see `lifecycle::issue`'s allocation).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub freed: BTreeMap<u32, u64>,
    /// Entries by user name.
    pub users: BTreeMap<String, Entry>,
    /// uids whose removal left files behind: never handed out while here.
    #[serde(default)]
    pub quarantine: BTreeMap<u32, Quarantine>,
}

impl State {
    /// `uid` is free again from `at` (seconds since the epoch).
    pub fn release_uid(&mut self, uid: u32, at: u64) {
        self.freed.insert(uid, at);
    }
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
            freed: BTreeMap::new(),
            users: BTreeMap::new(),
            quarantine: BTreeMap::new(),
        }
    }
}

/// The state folder.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    names: Arc<Mutex<Names>>,
}

/// Which version of the state file a snapshot was read from: every save
/// is a new file (a new inode), and the times and size tell apart a
/// reused inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// The user names of the state version last read without the lock.
#[derive(Debug, Default)]
struct Names {
    version: Option<Version>,
    users: BTreeSet<String>,
}

/// Only the names, for [`Store::may_know`].
#[derive(Deserialize)]
struct NamesOnly {
    users: BTreeMap<String, serde::de::IgnoredAny>,
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
            names: Arc::default(),
        })
    }

    /// False only when the current state names no user `user`, read
    /// without the state lock (see the module's text); true when it does
    /// or when the file cannot be read (the caller then takes the lock,
    /// which reports the problem). A name armed after this returned false
    /// was armed after the request that asked.
    pub fn may_know(&self, user: &str) -> bool {
        let path = self.dir.join(STATE_FILE);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Err(_) => return true,
        };
        let Ok(m) = file.metadata() else {
            return true;
        };
        let version = Version {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        };
        let Ok(mut names) = self.names.lock() else {
            return true;
        };
        if names.version != Some(version) {
            let mut bytes = Vec::new();
            let Ok(parsed) = file
                .read_to_end(&mut bytes)
                .map_err(drop)
                .and_then(|_| serde_json::from_slice::<NamesOnly>(&bytes).map_err(drop))
            else {
                return true;
            };
            names.users = parsed.users.into_keys().collect();
            names.version = Some(version);
        }
        names.users.contains(user)
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

    /// Takes `user`'s removal lock: one removal of a user at a time across
    /// the daemon and the CLI, while removals of different users run side
    /// by side (only their killer passes take turns, under
    /// [`lock_killer`]). Lock order: a user's removal, then accounts, then
    /// state. The lock file goes with [`RemovalLock::finish`]; a process
    /// that opened it before then finds the user gone once it holds it.
    pub fn lock_removal_of(&self, user: &str) -> Result<RemovalLock> {
        // The name becomes a file name: only a codext name may.
        let user = codext_wire::UserName::parse(user)
            .map_err(|_| HelperError::State(format!("{user:?} is not a codext user name")))?;
        let dir = self.dir.join(REMOVING_DIR);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(HelperError::state(
                    format!("cannot create {}", dir.display()),
                    e,
                ))
            }
        }
        let path = dir.join(format!("{user}.lock"));
        Ok(RemovalLock {
            _lock: lock_file(&path)?,
            path,
        })
    }

    /// Takes `user`'s container lock: starting the grant's
    /// container (and entering it) and removing it never overlap, across
    /// the daemon and the CLI. Lock order: a user's removal, its
    /// container, then accounts, then state. The lock file goes with the
    /// user ([`Store::forget_container_lock`]); whoever holds it then finds
    /// the user gone.
    pub fn lock_container_of(&self, user: &str) -> Result<ContainerLock> {
        let user = codext_wire::UserName::parse(user)
            .map_err(|_| HelperError::State(format!("{user:?} is not a codext user name")))?;
        let dir = self.dir.join(CONTAINERS_DIR);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(HelperError::state(
                    format!("cannot create {}", dir.display()),
                    e,
                ))
            }
        }
        Ok(ContainerLock {
            _lock: lock_file(&dir.join(format!("{user}.lock")))?,
        })
    }

    /// Removes `user`'s container lock file (the user is gone).
    pub fn forget_container_lock(&self, user: &str) {
        if codext_wire::UserName::parse(user).is_ok() {
            let _ =
                std::fs::remove_file(self.dir.join(CONTAINERS_DIR).join(format!("{user}.lock")));
        }
    }

    /// The killer lock's path (see [`lock_killer`]).
    pub fn killer_lock_path(&self) -> PathBuf {
        self.dir.join(KILLER_LOCK_FILE)
    }
}

/// A user's container lock ([`Store::lock_container_of`]).
#[derive(Debug)]
pub struct ContainerLock {
    _lock: Flock<File>,
}

/// One user's removal lock (see [`Store::lock_removal_of`]).
#[derive(Debug)]
pub struct RemovalLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl RemovalLock {
    /// The user is gone from the state: its lock file goes too (while
    /// still held, so nobody takes it in between and acts on a stale
    /// view: whoever waits on the unlinked file finds the user gone).
    pub fn finish(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes the killer lock at `path` (exclusive `flock`): held for one
/// killer pass at a time.
pub fn lock_killer(path: &Path) -> Result<Flock<File>> {
    lock_file(path)
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
