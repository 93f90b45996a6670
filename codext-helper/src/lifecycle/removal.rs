//! The end of a user: revoke, the reaper's expiries, the removal worker
//! (kill, `userdel`, sweep, quarantine of a uid whose files remain), and
//! the reconcile that brings state, accounts and records back into
//! agreement after a crash.

use super::entry::Entry;
use super::table::Phase;
use super::types::UnixTime;
use super::{Helper, Removal};

/// How one removal attempt ended (when it did not fail).
enum Attempt {
    /// The agent asked for a linger: the account stays for a while, with
    /// no process.
    Lingering,
    /// The account is gone.
    Removed(Removed),
}

/// What a finished removal did.
#[derive(Default)]
struct Removed {
    /// A repair `userdel` needed.
    repaired: Option<String>,
    /// The sweep of the home's rest and the shared folders.
    swept: Sweep,
    /// Kernel keys of the uid still linked somewhere.
    keys_left: u64,
}
use crate::accounts::sweep::Sweep;
use crate::audit::AuditEvent;
use crate::error::{HelperError, Result};
use crate::store::Quarantine;
use codext_wire::UserName;

/// How a leftover container is named in a quarantine (the recheck tries
/// to remove it again).
pub const CONTAINER_LEFT: &str = "docker container ";

impl Helper {
    /// Revokes `user` at `now`: a pending or armed user is forgotten (its
    /// record withdrawn); a user that may have an account has its sessions
    /// ended and its account removed.
    pub fn revoke(&self, user: &UserName, reason: &str, now: UnixTime) -> Result<()> {
        let mut locked = self.store.lock()?;
        let Some(entry) = locked.state.users.get_mut(user.as_str()) else {
            return Err(HelperError::UnknownUser(user.to_string()));
        };
        let has_account = entry
            .begin_removal()
            .map_err(|r| HelperError::Refused(format!("{user}: {}", r.reason())))?;
        if !has_account {
            let uid = entry.uid;
            self.records.withdraw(user.as_str(), uid)?;
            locked.state.users.remove(user.as_str());
            locked.state.release_uid(uid, now.0);
        }
        locked.save()?;
        drop(locked);
        self.log(AuditEvent::Revoke {
            user: user.to_string(),
            reason: reason.to_owned(),
        });
        if has_account {
            self.remove_account(user.as_str(), now)?;
        }
        Ok(())
    }

    /// Removes the account of a user in [`Phase::Removing`] and forgets it.
    /// Idempotent: a user already gone is fine. An attempt that does not
    /// finish — whichever step fails, the kill before a linger included —
    /// is recorded in the entry (`status` shows it with its next retry),
    /// audited as a failed removal, and retried by the reaper once its
    /// wait is over ([`super::entry::retry_delay`]).
    ///
    /// Removals of different users run side by side (only the killer
    /// passes take turns); one user's removal holds that user's lock.
    pub fn remove_account(&self, user: &str, now: UnixTime) -> Result<()> {
        let held = self.store.lock_removal_of(user)?;
        let entry = {
            // Taking the account lock waits out a `useradd` in flight, so
            // the entry says for certain whether an account exists.
            let _accounts = self.store.lock_accounts()?;
            let mut locked = self.store.lock()?;
            let Some(e) = locked.state.users.get_mut(user) else {
                held.finish();
                return Ok(());
            };
            if e.start_removal_attempt(now).is_err() {
                return Ok(());
            }
            if !e.account_created() && self.accounts.is_ours_on_disk(e) {
                e.adopt_account();
            }
            let snapshot = e.clone();
            locked.save()?;
            snapshot
        };
        let removed = match self.remove_attempt(&entry, now) {
            Ok(Attempt::Lingering) => return Ok(()),
            Ok(Attempt::Removed(r)) => r,
            Err(e) => {
                let mut locked = self.store.lock()?;
                if let Some(x) = locked.state.users.get_mut(user) {
                    x.removal_failed(e.to_string(), now);
                }
                locked.save()?;
                drop(locked);
                self.log(AuditEvent::Remove {
                    user: user.to_owned(),
                    uid: None,
                    result: "failed",
                    swept: None,
                    leftovers: None,
                    error: Some(e.to_string()),
                });
                return Err(e);
            }
        };
        if let Some(what) = removed.repaired {
            self.log(AuditEvent::Repair {
                user: user.to_owned(),
                what,
                account_created: None,
            });
        }
        let mut swept = removed.swept;
        if removed.keys_left > 0 {
            // Keys of the uid someone else's keyring still holds: the next
            // holder of the uid would own them.
            swept.leftovers += removed.keys_left;
            swept.named.push(format!(
                "{} kernel key(s) of uid {} still linked somewhere (/proc/key-users)",
                removed.keys_left, entry.uid
            ));
        }
        self.records.withdraw(entry.user.as_str(), entry.uid)?;
        self.withdraw_grant_key(entry.user.as_str());
        let mut locked = self.store.lock()?;
        locked.state.users.remove(user);
        locked.state.release_uid(entry.uid, now.0);
        let clean = swept.is_clean();
        if !clean {
            // Files of the uid remain: it is not handed out again until a
            // later sweep finds nothing or the operator releases it.
            locked.state.quarantine.insert(
                entry.uid,
                Quarantine {
                    user: entry.user.to_string(),
                    home: entry.home.clone(),
                    since: now.0,
                    leftovers: swept.leftovers,
                    named: swept.named.clone(),
                },
            );
        }
        locked.save()?;
        drop(locked);
        held.finish();
        self.store.forget_container_lock(user);
        self.log(AuditEvent::Remove {
            user: user.to_owned(),
            uid: Some(entry.uid),
            result: if clean { "ok" } else { "incomplete" },
            swept: Some(swept.removed),
            leftovers: (!clean).then_some(swept.leftovers),
            error: None,
        });
        if !clean {
            self.log(AuditEvent::Quarantine {
                uid: entry.uid,
                user: user.to_owned(),
                leftovers: swept.leftovers,
                named: swept.named,
            });
        }
        Ok(())
    }

    /// One attempt, in this order: (issue 26) the sudo rules removed and
    /// the grant's container stopped and removed, then the kill (once),
    /// then either the linger the agent asked for (its sudo rules back) or
    /// the rest of the removal — the home's setuid files defused,
    /// `userdel -r` (the only step under the account lock, so logins never
    /// queue behind a slow kill or sweep), every group left, the uid's
    /// keyrings cleared, the shared folders swept, and no container of
    /// the grant left (a container that could not be removed quarantines
    /// the uid: it would run as the next holder).
    fn remove_attempt(&self, entry: &Entry, now: UnixTime) -> Result<Attempt> {
        if !entry.account_created() {
            return Ok(Attempt::Removed(Removed::default()));
        }
        let user = &entry.user;
        // No sudo may start while the account goes.
        if !entry.sudo.is_empty() {
            crate::log::debug!("removing {user}: sudo rules");
            self.accounts.remove_sudo(entry)?;
        }
        // The container's processes run as the uid: docker stops them and
        // its own (the killer would leave docker a dead container whose
        // restart runs as the next holder). A docker that fails here does
        // not hold the kill up: the check at the end catches what is left.
        let container = if entry.container {
            let _held = self.store.lock_container_of(user.as_str())?;
            crate::log::debug!("removing {user}: container");
            self.accounts.stop_container(user.as_str()).err()
        } else {
            None
        };
        crate::log::debug!("removing {user}: kill");
        self.stop_everything_of(entry)?;
        crate::log::debug!("removing {user}: killed");
        if self.linger_after_kill(entry, now)? {
            // The account stays for a reconnect: its sudo rules with it.
            if !entry.sudo.is_empty() {
                self.accounts.grant_extras(entry)?;
            }
            return Ok(Attempt::Lingering);
        }
        let defused = self.accounts.defuse_home(entry);
        if !defused.is_clean() {
            return Err(HelperError::Account(format!(
                "cannot clear the setuid/setgid bits of every file in {} ({}{}); not removing it yet",
                entry.home.display(),
                defused.named.join(", "),
                if defused.unfinished { "; out of time" } else { "" }
            )));
        }
        crate::log::debug!("removing {user}: userdel");
        let repaired = {
            let _accounts = self.store.lock_accounts()?;
            self.accounts.delete_record(entry)?
        };
        let mut repaired = repaired;
        if !entry.groups.is_empty() {
            crate::log::debug!("removing {user}: groups");
            let left = self.accounts.leave_groups(entry)?;
            if !left.is_empty() {
                let what = format!(
                    "took {user} out of the groups userdel left: {}",
                    left.join(", ")
                );
                repaired = Some(match repaired {
                    Some(r) => format!("{r}; {what}"),
                    None => what,
                });
            }
        }
        crate::log::debug!("removing {user}: keyrings");
        let keys_left = self.accounts.clear_keyrings(entry.uid)?;
        crate::log::debug!("removing {user}: sweep");
        let mut swept = self.accounts.sweep_leftovers(entry.uid, &entry.home);
        if swept.unfinished {
            return Err(HelperError::Account(format!(
                "the sweep of uid {}'s files did not finish within {}s ({} removed so far); the reaper continues",
                entry.uid,
                self.cfg.limits.sweep_time.as_secs(),
                swept.removed
            )));
        }
        swept.defused += defused.defused;
        if entry.container {
            crate::log::debug!("removing {user}: containers left");
            let left = self.accounts.containers_left(user.as_str());
            match (left, container) {
                (Ok(names), _) if names.is_empty() => {}
                (Ok(names), _) => {
                    swept.leftovers += names.len() as u64;
                    swept
                        .named
                        .extend(names.iter().map(|n| format!("{CONTAINER_LEFT}{n}")));
                }
                (Err(e), why) => {
                    swept.leftovers += 1;
                    swept.named.push(format!(
                        "{CONTAINER_LEFT}{} (docker: {e}{})",
                        crate::profiles::container::name_of(user.as_str()),
                        why.map(|w| format!("; at the stop: {w}"))
                            .unwrap_or_default()
                    ));
                }
            }
        }
        Ok(Attempt::Removed(Removed {
            repaired,
            swept,
            keys_left,
        }))
    }

    /// The first steps of every removal (and of a linger): checks the
    /// entry is codext's, removes its at jobs and crontab, then kills every
    /// process of the uid and its IPC objects.
    pub(crate) fn stop_everything_of(&self, entry: &Entry) -> Result<()> {
        let a = &self.cfg.accounts;
        crate::accounts::check_ours(entry, (a.uid_min, a.uid_max))?;
        self.accounts.stop_everything(entry)
    }

    /// Looks again at every quarantined uid (reaper pass): one whose files
    /// are all gone now is released.
    pub fn recheck_quarantine(&self) -> Result<()> {
        let held: Vec<(u32, Quarantine)> = self
            .store
            .lock()?
            .state
            .quarantine
            .iter()
            .map(|(u, q)| (*u, q.clone()))
            .collect();
        for (uid, q) in held {
            // (issue 26) A container of the grant that could not be
            // removed: again now.
            if q.named.iter().any(|n| n.starts_with(CONTAINER_LEFT)) {
                let _held = self.store.lock_container_of(&q.user)?;
                let _ = self.accounts.stop_container(&q.user);
            }
            let mut swept = self.accounts.sweep_leftovers(uid, &q.home);
            if q.named.iter().any(|n| n.starts_with(CONTAINER_LEFT)) {
                match self.accounts.containers_left(&q.user) {
                    Ok(names) => {
                        swept.leftovers += names.len() as u64;
                        swept
                            .named
                            .extend(names.iter().map(|n| format!("{CONTAINER_LEFT}{n}")));
                    }
                    Err(e) => {
                        swept.leftovers += 1;
                        swept.named.push(format!(
                            "{CONTAINER_LEFT}{} (docker: {e})",
                            crate::profiles::container::name_of(&q.user)
                        ));
                    }
                }
            }
            let keys = self.accounts.keys_of(uid);
            if keys > 0 {
                swept.leftovers += keys;
                swept
                    .named
                    .push(format!("{keys} kernel key(s) (/proc/key-users)"));
            }
            let mut locked = self.store.lock()?;
            if swept.is_clean() {
                locked.state.quarantine.remove(&uid);
                locked.save()?;
                drop(locked);
                self.log(AuditEvent::QuarantineRelease {
                    uid,
                    user: q.user,
                    by: "sweep",
                    removed: Some(swept.removed),
                    leftovers_at_last_look: None,
                });
            } else if let Some(held) = locked.state.quarantine.get_mut(&uid) {
                held.leftovers = swept.leftovers;
                held.named = swept.named;
                locked.save()?;
            }
        }
        Ok(())
    }

    /// Cleans or quarantines every uid of the range that something still
    /// belongs to although no entry and no account stands behind it —
    /// what left it was forgotten (a purge deleted the state and its
    /// quarantine list, the state file was lost, or an earlier release
    /// never cleared keyrings): kernel keys are cleared as a removal
    /// clears them; a uid that still owns a key or a file in the home base
    /// or a swept folder is quarantined. `init` and the daemon's start run
    /// this before any uid is handed out. Returns the uids quarantined now.
    pub fn rescan_range(&self, now: UnixTime) -> Result<Vec<u32>> {
        let (min, max) = (self.cfg.accounts.uid_min, self.cfg.accounts.uid_max);
        let known = self.accounts.known();
        let claimed = |locked: &crate::store::Locked, uid: u32| {
            locked.state.users.values().any(|e| e.uid == uid)
                || locked.state.quarantine.contains_key(&uid)
                || known.uid_taken(uid)
        };
        let mut found = self.accounts.leftovers_in_range(min..=max);
        let with_keys: Vec<u32> = (min..=max)
            .filter(|u| self.accounts.keys_of(*u) > 0)
            .collect();
        if !with_keys.is_empty() {
            // Cleared under the state lock, so no issue hands the uid out
            // meanwhile (a quick fork per uid).
            let locked = self.store.lock()?;
            for uid in with_keys {
                if claimed(&locked, uid) {
                    continue;
                }
                let left = self.accounts.clear_keyrings(uid).unwrap_or_else(|e| {
                    crate::log::error!("{e}");
                    self.accounts.keys_of(uid)
                });
                if left > 0 {
                    let f = found.entry(uid).or_default();
                    f.count += left;
                    f.named.push(format!(
                        "{left} kernel key(s) still linked somewhere (/proc/key-users)"
                    ));
                }
            }
        }
        let mut locked = self.store.lock()?;
        let in_use: std::collections::BTreeSet<u32> =
            locked.state.users.values().map(|e| e.uid).collect();
        let mut added = Vec::new();
        for (uid, f) in found {
            // An account of someone else's in the range is never handed
            // out anyway, and its files are not ours to judge.
            if in_use.contains(&uid)
                || locked.state.quarantine.contains_key(&uid)
                || known.uid_taken(uid)
            {
                continue;
            }
            let home = f
                .named
                .iter()
                .map(std::path::PathBuf::from)
                .find(|p| p.parent() == Some(self.cfg.accounts.home_base.as_path()))
                .unwrap_or_else(|| {
                    self.cfg
                        .accounts
                        .home_base
                        .join(format!(".codext-unknown-{uid}"))
                });
            locked.state.quarantine.insert(
                uid,
                Quarantine {
                    user: "(unknown: found by init)".into(),
                    home,
                    since: now.0,
                    leftovers: f.count,
                    named: f.named.clone(),
                },
            );
            added.push((uid, f));
        }
        if !added.is_empty() {
            locked.save()?;
        }
        drop(locked);
        for (uid, f) in &added {
            self.log(AuditEvent::Quarantine {
                uid: *uid,
                user: "(unknown: found by init)".into(),
                leftovers: f.count,
                named: f.named.clone(),
            });
        }
        Ok(added.into_iter().map(|(u, _)| u).collect())
    }

    /// The quarantined uids.
    pub fn quarantined(&self) -> Result<std::collections::BTreeMap<u32, Quarantine>> {
        Ok(self.store.lock()?.state.quarantine.clone())
    }

    /// Releases quarantined `uid` by the operator's word (after looking).
    pub fn release_quarantine(&self, uid: u32) -> Result<Quarantine> {
        let mut locked = self.store.lock()?;
        let q = locked
            .state
            .quarantine
            .remove(&uid)
            .ok_or_else(|| HelperError::Refused(format!("uid {uid} is not quarantined")))?;
        locked.save()?;
        drop(locked);
        self.log(AuditEvent::QuarantineRelease {
            uid,
            user: q.user.clone(),
            by: "operator",
            removed: None,
            leftovers_at_last_look: Some(q.leftovers),
        });
        Ok(q)
    }

    /// One pass of the reaper at `now`: expires puzzles, armed users,
    /// renewals and grants, drops sessions whose sshd process is gone, and
    /// returns the removals to run.
    pub fn reap(&self, now: UnixTime) -> Result<Vec<Removal>> {
        if let Err(e) = self.audit.flush_summaries(now.0) {
            crate::log::error!("{e}");
        }
        let mut locked = self.store.lock()?;
        let mut events = Vec::new();
        let mut removals = Vec::new();
        let mut forget = Vec::new();
        for entry in locked.state.users.values_mut() {
            let user = entry.user.to_string();
            let expire = |phase: &'static str| AuditEvent::Expire {
                user: user.clone(),
                phase,
            };
            let reaped = entry.reap(now, |s| self.session_alive(s));
            if let Some(phase) = reaped.forget {
                forget.push((user.clone(), entry.uid));
                events.push(expire(phase.as_str()));
                continue;
            }
            if reaped.renewal_expired {
                events.push(expire("renewal"));
            }
            if reaped.dropped > 0 {
                events.push(AuditEvent::SessionLost {
                    user: user.clone(),
                    pid: None,
                    sessions: entry.sessions.len(),
                    dropped: Some(reaped.dropped),
                });
            }
            if reaped.remove {
                // A failed attempt waits out its retry delay.
                if entry.removal_due(now) {
                    removals.push(Removal::Remove(user.clone()));
                }
                if reaped.grant_expired && entry.phase() == Phase::Removing {
                    events.push(expire("active"));
                }
            }
        }
        for (user, uid) in &forget {
            self.records.withdraw(user, *uid)?;
            locked.state.users.remove(user);
            locked.state.release_uid(*uid, now.0);
        }
        locked.save()?;
        drop(locked);
        for event in events {
            self.log(event);
        }
        Ok(removals)
    }

    /// Brings state, accounts and userdb records back into agreement after a
    /// crash or a reboot (run when the daemon starts, at `now`):
    /// * an account codext created with no live session is removed;
    /// * an account whose creation was interrupted is removed (whatever
    ///   exists of it);
    /// * an active entry that never recorded its account is adopted if
    ///   `/etc/passwd` shows it exactly as announced, else forgotten;
    /// * an armed user whose record vanished (empty `/run` after a reboot)
    ///   is announced again;
    /// * a codext userdb record no armed user stands behind is removed;
    /// * removals that were under way are run again.
    pub fn reconcile(&self, now: UnixTime) -> Result<Vec<Removal>> {
        let mut locked = self.store.lock()?;
        let mut removals = Vec::new();
        let mut events = Vec::new();
        let mut forget = Vec::new();
        for entry in locked.state.users.values_mut() {
            let user = entry.user.to_string();
            let repair = |what: &str, account_created: Option<bool>| AuditEvent::Repair {
                user: user.clone(),
                what: what.to_owned(),
                account_created,
            };
            match entry.phase() {
                Phase::Pending => {}
                Phase::Armed => {
                    if !self.records.announced(&user) && !entry.token.expired(now) {
                        self.records.announce(entry)?;
                        events.push(repair("userdb record announced again", None));
                    }
                }
                Phase::Active => {
                    if !entry.account_created() {
                        if self.accounts.is_ours_on_disk(entry) {
                            entry.adopt_account();
                            events.push(repair("adopted an interrupted creation", None));
                        } else {
                            forget.push((user.clone(), entry.uid));
                            events.push(repair("creation never happened; forgotten", None));
                            continue;
                        }
                    }
                    if let Some(before) = entry.orphaned(now, |s| self.session_alive(s)) {
                        removals.push(Removal::Remove(user.clone()));
                        events.push(AuditEvent::Orphan {
                            user: user.clone(),
                            uid: entry.uid,
                            sessions_lost: before,
                        });
                    }
                }
                Phase::Creating => {
                    // The helper stopped while `useradd` ran (or was about
                    // to): whatever exists now is removed.
                    let on_disk = self.accounts.is_ours_on_disk(entry);
                    if entry.creation_interrupted(on_disk).is_ok() {
                        removals.push(Removal::Remove(user.clone()));
                        events.push(repair("creation interrupted; removing", Some(on_disk)));
                    }
                }
                Phase::Removing => removals.push(Removal::Remove(user.clone())),
            }
        }
        for (user, uid) in forget {
            locked.state.users.remove(&user);
            locked.state.release_uid(uid, now.0);
        }
        let armed: Vec<String> = locked
            .state
            .users
            .values()
            .filter(|e| e.phase() == Phase::Armed)
            .map(|e| e.user.to_string())
            .collect();
        // A grant key only while its account lives.
        let live: Vec<String> = locked
            .state
            .users
            .values()
            .filter(|e| e.is_live())
            .map(|e| e.user.to_string())
            .collect();
        self.withdraw_stray_grant_keys(&live);
        // (issue 26) Sudo rules and containers no live grant stands behind
        // (a crash between making and recording them, or while removing).
        for what in self.accounts.remove_strays(&live) {
            events.push(AuditEvent::Repair {
                user: what.clone(),
                what: format!("stray {what} removed"),
                account_created: None,
            });
        }
        for (name, uid) in self.records.orphans(&armed) {
            self.records.withdraw(&name, uid)?;
            events.push(AuditEvent::Repair {
                user: name,
                what: "stray userdb record removed".into(),
                account_created: None,
            });
        }
        locked.save()?;
        drop(locked);
        for event in events {
            self.log(event);
        }
        Ok(removals)
    }
}
