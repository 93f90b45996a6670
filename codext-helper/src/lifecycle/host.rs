//! What the lifecycle does to the machine, behind two traits: the account
//! tool ([`AccountTool`]: `useradd`, `userdel`, killing, sweeping, and the
//! account and process facts it reads) and the records NSS and sshd read
//! ([`Records`]: userdb drop-ins and grant keys). The real implementations
//! wrap [`crate::accounts`], [`crate::userdb`] and [`crate::grant_keys`];
//! the unit tests use fakes, so the whole lifecycle runs without root.

use super::account::Account;
use super::entry::Entry;
use crate::accounts::{self, sweep::Found, sweep::Sweep};
use crate::config::Config;
use crate::error::Result;
use crate::ids::Uid;
use std::collections::BTreeMap;
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
    /// `useradd` exactly as announced. The whole entry: the account is
    /// made a member of the profile's groups too.
    fn create(&self, entry: &Entry) -> Result<()>;
    /// Checks that NSS now reports the account as announced.
    fn verify_created(&self, account: &Account) -> Result<()>;
    /// True when `/etc/passwd` has the account's name with its uid.
    fn is_ours_on_disk(&self, account: &Account) -> bool;
    /// Removes the uid's jobs, then kills every process and IPC object of
    /// it (the account was checked to be codext's).
    fn stop_everything(&self, account: &Account) -> Result<()>;
    /// Clears the setuid and setgid bits of the uid's files in its home
    /// (before `userdel -r` unlinks them).
    fn defuse_home(&self, account: &Account) -> Sweep;
    /// `userdel -r` and its repair; a description of any repair made.
    fn delete_record(&self, account: &Account) -> Result<Option<String>>;
    /// Clears and invalidates `uid`'s kernel keyrings (no process of it
    /// runs); how many keys of the uid are still left.
    fn clear_keyrings(&self, uid: u32) -> Result<u64>;
    /// Sweeps the uid's files from its home and the shared folders.
    fn sweep_leftovers(&self, uid: u32, home: &Path) -> Sweep;
    /// Sweeps the uid's files from the shared folders only (a linger keeps
    /// the home).
    fn sweep_shared(&self, uid: u32) -> Sweep;
    /// Kernel keys `uid` still owns.
    fn keys_of(&self, uid: u32) -> u64;
    /// Files that still belong to uids of `uids` (homes in the home base,
    /// anything in the swept folders), by uid.
    fn leftovers_in_range(&self, uids: std::ops::RangeInclusive<u32>) -> BTreeMap<u32, Found>;
    /// The linger the user asked for in its home, in seconds.
    fn read_linger(&self, home: &Path, uid: u32) -> u64;
    /// Start time of process `pid` (field 22 of its stat), if it runs.
    fn process_start_time(&self, pid: u32) -> Option<u64>;
    /// What the grant's profile adds once `useradd` made the
    /// account: its sudo rules and its transfer folder. The whole entry:
    /// the profile, its sudo rules and its container are the grant's.
    fn grant_extras(&self, entry: &Entry) -> Result<()>;
    /// Removes the account's sudo rules (before the kill).
    fn remove_sudo(&self, account: &Account) -> Result<()>;
    /// Stops and removes `user`'s container (before the kill:
    /// its processes are the uid's).
    fn stop_container(&self, user: &str) -> Result<()>;
    /// The containers of `user` still there.
    fn containers_left(&self, user: &str) -> Result<Vec<String>>;
    /// After `userdel`: the user is in no group any more;
    /// returns the groups a repair took it out of.
    fn leave_groups(&self, account: &Account) -> Result<Vec<String>>;
    /// Removes sudo rules and containers of codext users not in
    /// `live` (what a crash left); says what it removed.
    fn remove_strays(&self, live: &[String]) -> Vec<String>;
}

/// The files that make a user visible to NSS (userdb records) and let its
/// agent key in (grant keys).
pub trait Records: Send + Sync + Debug {
    /// Writes the entry's userdb record and uid link. The whole entry:
    /// its group memberships are announced with it.
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
    home_base: PathBuf,
    killer_user: String,
    killer_lock: PathBuf,
    tool_timeout: Duration,
    sweep_time: Duration,
    profiles: crate::profiles::Profiles,
    docker: crate::profiles::container::Docker,
}

impl SystemAccounts {
    /// With the limits of `cfg`.
    pub fn new(cfg: &Config) -> SystemAccounts {
        SystemAccounts {
            uid_range: (cfg.accounts.uid_min, cfg.accounts.uid_max),
            home_base: cfg.accounts.home_base.clone(),
            killer_user: cfg.accounts.killer_user.clone(),
            killer_lock: cfg.state_dir.join(crate::store::KILLER_LOCK_FILE),
            tool_timeout: cfg.limits.tool_timeout,
            sweep_time: cfg.limits.sweep_time,
            profiles: cfg.profiles.clone(),
            docker: cfg.containers.cli(),
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
        accounts::create(&entry.account(), &entry.groups, self.tool_timeout)
    }
    fn verify_created(&self, account: &Account) -> Result<()> {
        accounts::verify_created(account)
    }
    fn is_ours_on_disk(&self, account: &Account) -> bool {
        accounts::is_ours_on_disk(account)
    }
    fn stop_everything(&self, account: &Account) -> Result<()> {
        accounts::check_ours(account, self.uid_range)?;
        let killer = accounts::killer_ids(&self.killer_user)?;
        accounts::remove_jobs(account, self.sweep_time);
        // On a host booted with systemd: logind's sessions and the user
        // manager ended through systemd around the killer.
        accounts::logind::around_kill(
            account.name.as_str(),
            account.uid,
            self.tool_timeout,
            || accounts::kill(account, killer, &self.killer_lock, self.tool_timeout),
        )
    }
    fn defuse_home(&self, account: &Account) -> Sweep {
        accounts::defuse_home(account, self.sweep_time)
    }
    fn delete_record(&self, account: &Account) -> Result<Option<String>> {
        accounts::delete_record(account, self.tool_timeout)
    }
    fn clear_keyrings(&self, uid: u32) -> Result<u64> {
        if !(self.uid_range.0..=self.uid_range.1).contains(&uid) {
            return Err(crate::error::HelperError::Account(format!(
                "uid {uid} is not in codext's range; not touching its keyrings"
            )));
        }
        accounts::clear_keyrings(
            Uid::from_raw(uid),
            self.tool_timeout,
            Duration::from_secs(2),
        )
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
    fn keys_of(&self, uid: u32) -> u64 {
        // Where keyctl is filtered no user can hold a key, and
        // `/proc/key-users` may well show another kernel user's (a
        // container's host).
        if !crate::sys::keyrings_available() {
            return 0;
        }
        crate::procfs::keys_of(Uid::from_raw(uid))
    }
    fn leftovers_in_range(&self, uids: std::ops::RangeInclusive<u32>) -> BTreeMap<u32, Found> {
        accounts::leftovers_in_range(uids, &self.home_base, self.sweep_time)
    }
    fn read_linger(&self, home: &Path, uid: u32) -> u64 {
        crate::grant_keys::read_linger(home, uid)
    }
    fn process_start_time(&self, pid: u32) -> Option<u64> {
        process_start_time(pid)
    }
    fn grant_extras(&self, entry: &Entry) -> Result<()> {
        if !entry.sudo.is_empty() {
            crate::profiles::sudoers::install(
                entry.user.as_str(),
                entry.profile.as_str(),
                &entry.sudo,
                self.tool_timeout,
            )?;
        }
        if let Some(crate::profiles::Body::Commands(c)) =
            self.profiles.get(&entry.profile).map(|p| &p.body)
        {
            if !c.transfers.is_empty() {
                accounts::make_user_folder(&entry.account(), Path::new(&c.transfer_dir))?;
            }
        }
        Ok(())
    }
    fn remove_sudo(&self, account: &Account) -> Result<()> {
        crate::profiles::sudoers::remove(account.name.as_str()).map(|_| ())
    }
    fn stop_container(&self, user: &str) -> Result<()> {
        self.docker
            .remove(&crate::profiles::container::name_of(user))?;
        crate::profiles::container::forget_files(user);
        Ok(())
    }
    fn containers_left(&self, user: &str) -> Result<Vec<String>> {
        Ok(self
            .docker
            .containers_of(Some(user))?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }
    fn leave_groups(&self, account: &Account) -> Result<Vec<String>> {
        accounts::leave_groups(account.name.as_str(), self.tool_timeout)
    }
    fn remove_strays(&self, live: &[String]) -> Vec<String> {
        let mut done = Vec::new();
        for (user, _) in crate::profiles::sudoers::present() {
            if !live.contains(&user) && crate::profiles::sudoers::remove(&user).is_ok() {
                done.push(format!("sudo rules of {user}"));
            }
        }
        if self.profiles.any_container() {
            match self.docker.containers_of(None) {
                Ok(found) => {
                    for (name, user) in found {
                        if !live.contains(&user) && self.docker.remove(&name).is_ok() {
                            done.push(format!("container {name}"));
                        }
                    }
                }
                Err(e) => crate::log::warn!("cannot list codext containers: {e}"),
            }
            // The account files of containers no live grant has.
            if let Ok(dirs) = std::fs::read_dir(crate::profiles::container::FILES_DIR) {
                for d in dirs.flatten() {
                    let user = d.file_name().to_string_lossy().into_owned();
                    if !live.contains(&user) {
                        crate::profiles::container::forget_files(&user);
                    }
                }
            }
        }
        done
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
        crate::userdb::announce(&self.userdb_dir, &entry.account(), &entry.groups)
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
