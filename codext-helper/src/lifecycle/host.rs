//! What the lifecycle does to the machine, behind two traits: the account
//! tool ([`AccountTool`]: `useradd`, `userdel`, killing, sweeping, and the
//! account and process facts it reads) and the records NSS and sshd read
//! ([`Records`]: userdb drop-ins and grant keys). The real implementations
//! wrap [`crate::accounts`], [`crate::userdb`] and [`crate::grant_keys`];
//! the unit tests use fakes, so the whole lifecycle runs without root.

use super::entry::Entry;
use crate::accounts::{self, sweep::Sweep};
use crate::config::Config;
use crate::error::Result;
use crate::ids::Uid;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Names and uids the system already knows (one snapshot per issue).
pub trait KnownAccounts {
    /// True when NSS or `/etc/passwd` knows `uid`.
    fn uid_taken(&self, uid: u32) -> bool;
    /// True when NSS or `/etc/passwd` knows `name`.
    fn name_taken(&self, name: &str) -> bool;
}

impl KnownAccounts for accounts::Known {
    fn uid_taken(&self, uid: u32) -> bool {
        accounts::Known::uid_taken(self, Uid::from_raw(uid))
    }
    fn name_taken(&self, name: &str) -> bool {
        accounts::Known::name_taken(self, name)
    }
}

/// Accounts and processes.
pub trait AccountTool: Send + Sync + Debug {
    /// A snapshot of the known names and uids.
    fn known(&self) -> Box<dyn KnownAccounts>;
    /// The gid of `group`, if it exists.
    fn lookup_group(&self, group: &str) -> Result<Option<u32>>;
    /// `useradd` exactly as announced.
    fn create(&self, entry: &Entry) -> Result<()>;
    /// Checks that NSS now reports the account as announced.
    fn verify_created(&self, entry: &Entry) -> Result<()>;
    /// True when `/etc/passwd` has the entry's name with its uid.
    fn is_ours_on_disk(&self, entry: &Entry) -> bool;
    /// Removes the uid's jobs, then kills every process and IPC object of
    /// it (the entry was checked to be codext's).
    fn stop_everything(&self, entry: &Entry) -> Result<()>;
    /// `userdel -r` and its repair; a description of any repair made.
    fn delete_record(&self, entry: &Entry) -> Result<Option<String>>;
    /// Sweeps the uid's files from its home and the shared folders.
    fn sweep_leftovers(&self, uid: u32, home: &Path) -> Sweep;
    /// Sweeps the uid's files from the shared folders only (a linger keeps
    /// the home).
    fn sweep_shared(&self, uid: u32) -> Sweep;
    /// The linger the user asked for in its home, in seconds.
    fn read_linger(&self, home: &Path, uid: u32) -> u64;
    /// Start time of process `pid` (field 22 of its stat), if it runs.
    fn process_start_time(&self, pid: u32) -> Option<u64>;
}

/// The files that make a user visible to NSS (userdb records) and let its
/// agent key in (grant keys).
pub trait Records: Send + Sync + Debug {
    /// Writes the entry's userdb record and uid link.
    fn announce(&self, entry: &Entry) -> Result<()>;
    /// Removes `user`'s record and uid link (absent ones are fine).
    fn withdraw(&self, user: &str, uid: u32) -> Result<()>;
    /// True when `user`'s record exists.
    fn announced(&self, user: &str) -> bool;
    /// Codext records no name in `keep` stands behind: (name, uid).
    fn orphans(&self, keep: &[String]) -> Vec<(String, u32)>;
    /// Writes `user`'s grant key line.
    fn write_grant_key(&self, user: &str, line: &str) -> Result<()>;
    /// Removes `user`'s grant key: true when there was one.
    fn remove_grant_key(&self, user: &str) -> std::io::Result<bool>;
    /// Users that have a grant key file.
    fn grant_key_users(&self) -> Vec<String>;
}

/// The real account tool: the system's `useradd`/`userdel`, the killer,
/// the sweeps, `/proc`.
#[derive(Debug, Clone)]
pub struct SystemAccounts {
    uid_range: (u32, u32),
    killer_user: String,
    tool_timeout: Duration,
    sweep_time: Duration,
}

impl SystemAccounts {
    /// With the limits of `cfg`.
    pub fn new(cfg: &Config) -> SystemAccounts {
        SystemAccounts {
            uid_range: (cfg.accounts.uid_min, cfg.accounts.uid_max),
            killer_user: cfg.accounts.killer_user.clone(),
            tool_timeout: cfg.limits.tool_timeout,
            sweep_time: cfg.limits.sweep_time,
        }
    }
}

impl AccountTool for SystemAccounts {
    fn known(&self) -> Box<dyn KnownAccounts> {
        Box::new(accounts::Known::snapshot())
    }
    fn lookup_group(&self, group: &str) -> Result<Option<u32>> {
        Ok(accounts::lookup_group(group)?.map(|g| g.as_raw()))
    }
    fn create(&self, entry: &Entry) -> Result<()> {
        accounts::create(entry, self.tool_timeout)
    }
    fn verify_created(&self, entry: &Entry) -> Result<()> {
        accounts::verify_created(entry)
    }
    fn is_ours_on_disk(&self, entry: &Entry) -> bool {
        accounts::is_ours_on_disk(entry)
    }
    fn stop_everything(&self, entry: &Entry) -> Result<()> {
        accounts::check_ours(entry, self.uid_range)?;
        let killer = accounts::killer_ids(&self.killer_user)?;
        accounts::remove_jobs(entry, self.sweep_time);
        // On a host booted with systemd: logind's sessions and the user
        // manager ended through systemd around the killer.
        accounts::logind::around_kill(
            entry.user.as_str(),
            Uid::from_raw(entry.uid),
            self.tool_timeout,
            || accounts::kill(entry, killer, self.tool_timeout),
        )
    }
    fn delete_record(&self, entry: &Entry) -> Result<Option<String>> {
        accounts::delete_record(entry, self.tool_timeout)
    }
    fn sweep_leftovers(&self, uid: u32, home: &Path) -> Sweep {
        accounts::sweep_leftovers(Uid::from_raw(uid), home, self.sweep_time)
    }
    fn sweep_shared(&self, uid: u32) -> Sweep {
        let deadline = std::time::Instant::now() + self.sweep_time;
        let mut swept = Sweep::default();
        for dir in crate::paths::SWEEP_ROOTS {
            swept.merge(accounts::sweep::remove_owned(
                Path::new(dir),
                Uid::from_raw(uid),
                deadline,
            ));
        }
        swept
    }
    fn read_linger(&self, home: &Path, uid: u32) -> u64 {
        crate::grant_keys::read_linger(home, uid)
    }
    fn process_start_time(&self, pid: u32) -> Option<u64> {
        process_start_time(pid)
    }
}

/// Field 22 (starttime) of `/proc/<pid>/stat`.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The real records: userdb drop-ins in the configured folder, grant keys
/// in [`crate::grant_keys::KEYS_DIR`].
#[derive(Debug, Clone)]
pub struct SystemRecords {
    userdb_dir: PathBuf,
}

impl SystemRecords {
    /// With the userdb folder of `cfg`.
    pub fn new(cfg: &Config) -> SystemRecords {
        SystemRecords {
            userdb_dir: cfg.userdb_dir.clone(),
        }
    }
}

impl Records for SystemRecords {
    fn announce(&self, entry: &Entry) -> Result<()> {
        crate::userdb::announce(&self.userdb_dir, entry)
    }
    fn withdraw(&self, user: &str, uid: u32) -> Result<()> {
        crate::userdb::withdraw(&self.userdb_dir, user, uid)
    }
    fn announced(&self, user: &str) -> bool {
        self.userdb_dir.join(format!("{user}.user")).exists()
    }
    fn orphans(&self, keep: &[String]) -> Vec<(String, u32)> {
        crate::userdb::orphans(&self.userdb_dir, |n| keep.iter().any(|k| k == n))
    }
    fn write_grant_key(&self, user: &str, line: &str) -> Result<()> {
        crate::grant_keys::write_key(user, line)
    }
    fn remove_grant_key(&self, user: &str) -> std::io::Result<bool> {
        match std::fs::remove_file(Path::new(crate::grant_keys::KEYS_DIR).join(user)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
    fn grant_key_users(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(crate::grant_keys::KEYS_DIR) else {
            return Vec::new();
        };
        dir.flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}
