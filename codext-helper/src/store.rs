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
const REMOVALS_LOCK_FILE: &str = "removals.lock";

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
