//! The end of a user: revoke, the reaper's expiries, the removal worker
//! (kill, `userdel`, sweep, quarantine of a uid whose files remain), and
//! the reconcile that brings state, accounts and records back into
//! agreement after a crash.

use super::entry::Entry;
use super::table::Phase;
use super::types::UnixTime;
use super::{Helper, Removal};
use crate::accounts::sweep::Sweep;
use crate::audit::AuditEvent;
use crate::error::{HelperError, Result};
use crate::store::Quarantine;
use codext_wire::UserName;

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
    /// finish is recorded in the entry (`status` shows it) and retried by
    /// the reaper.
    pub fn remove_account(&self, user: &str, now: UnixTime) -> Result<()> {
        let _removals = self.store.lock_removals()?;
        let entry = {
            // Taking the account lock waits out a `useradd` in flight, so
            // the entry says for certain whether an account exists.
            let _accounts = self.store.lock_accounts()?;
            let mut locked = self.store.lock()?;
            let Some(e) = locked.state.users.get_mut(user) else {
                return Ok(());
            };
            if e.start_removal_attempt(now).is_err() {
                return Ok(());
            }
            if !e.account_created && self.accounts.is_ours_on_disk(e) {
                e.account_created = true;
            }
            let snapshot = e.clone();
            locked.save()?;
            snapshot
        };
        // At the last session's close the grant may linger.
        if self.linger_instead(&entry, now)? {
            return Ok(());
        }
        let removed = match entry.account_created {
            true => self.remove_created(&entry),
            false => Ok((None, Sweep::default())),
        };
        let (repaired, swept) = match removed {
            Ok(r) => r,
            Err(e) => {
                let mut locked = self.store.lock()?;
                if let Some(p) = locked
                    .state
                    .users
                    .get_mut(user)
                    .and_then(|x| x.removal.as_mut())
                {
                    p.last_error = Some(e.to_string());
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
        if let Some(what) = repaired {
            self.log(AuditEvent::Repair {
                user: user.to_owned(),
                what,
                account_created: None,
            });
        }
        self.records.withdraw(entry.user.as_str(), entry.uid)?;
        self.withdraw_grant_key(entry.user.as_str());
        let mut locked = self.store.lock()?;
        locked.state.users.remove(user);
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

    /// The first steps of every removal (and of a linger): checks the
    /// entry is codext's, removes its at jobs and crontab, then kills every
    /// process of the uid and its IPC objects.
    pub(crate) fn stop_everything_of(&self, entry: &Entry) -> Result<()> {
        let a = &self.cfg.accounts;
        crate::accounts::check_ours(entry, (a.uid_min, a.uid_max))?;
        self.accounts.stop_everything(entry)
    }

    /// Kills, deletes the record, sweeps (see [`crate::accounts`]); only
    /// the `userdel` step holds the account lock, so logins are never
    /// queued behind a slow kill or sweep.
    fn remove_created(&self, entry: &Entry) -> Result<(Option<String>, Sweep)> {
        self.stop_everything_of(entry)?;
        let repaired = {
            let _accounts = self.store.lock_accounts()?;
            self.accounts.delete_record(entry)?
        };
        let swept = self.accounts.sweep_leftovers(entry.uid, &entry.home);
        if swept.unfinished {
            return Err(HelperError::Account(format!(
                "the sweep of uid {}'s files did not finish within {}s ({} removed so far); the reaper continues",
                entry.uid,
                self.cfg.limits.sweep_time.as_secs(),
                swept.removed
            )));
        }
        Ok((repaired, swept))
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
            let swept = self.accounts.sweep_leftovers(uid, &q.home);
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
                removals.push(Removal::Remove(user.clone()));
                if reaped.grant_expired && entry.phase == Phase::Removing {
                    events.push(expire("active"));
                }
            }
        }
        for (user, uid) in &forget {
            self.records.withdraw(user, *uid)?;
            locked.state.users.remove(user);
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
            match entry.phase {
                Phase::Pending => {}
                Phase::Armed => {
                    if !self.records.announced(&user) && !entry.token.expired(now) {
                        self.records.announce(entry)?;
                        events.push(repair("userdb record announced again", None));
                    }
                }
                Phase::Active => {
                    if !entry.account_created {
                        if self.accounts.is_ours_on_disk(entry) {
                            entry.account_created = true;
                            events.push(repair("adopted an interrupted creation", None));
                        } else {
                            forget.push(user.clone());
                            events.push(repair("creation never happened; forgotten", None));
                            continue;
                        }
                    }
                    let before = entry.sessions.len();
                    entry.sessions.retain(|s| self.session_alive(s));
                    if entry.sessions.is_empty() && !entry.lingering(now) {
                        entry.phase = Phase::Removing;
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
                    entry.account_created = self.accounts.is_ours_on_disk(entry);
                    entry.phase = Phase::Removing;
                    removals.push(Removal::Remove(user.clone()));
                    events.push(repair(
                        "creation interrupted; removing",
                        Some(entry.account_created),
                    ));
                }
                Phase::Removing => removals.push(Removal::Remove(user.clone())),
            }
        }
        for user in forget {
            locked.state.users.remove(&user);
        }
        let armed: Vec<String> = locked
            .state
            .users
            .values()
            .filter(|e| e.phase == Phase::Armed)
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
