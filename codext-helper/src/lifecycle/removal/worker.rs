//! Revoking a user and the removal worker: one attempt kills, runs
//! `userdel`, sweeps and checks for leftovers; a failed attempt is
//! recorded for the reaper to retry, leftovers quarantine the uid.

use super::quarantine::CONTAINER_LEFT;
use crate::accounts::sweep::Sweep;
use crate::audit::AuditEvent;
use crate::error::{HelperError, Result};
use crate::lifecycle::account::Account;
use crate::lifecycle::entry::Entry;
use crate::lifecycle::types::UnixTime;
use crate::lifecycle::Helper;
use crate::store::Quarantine;
use codext_wire::UserName;

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
            if !e.account_created() && self.accounts.is_ours_on_disk(&e.account()) {
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

    /// One attempt, in this order: the sudo rules removed and
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
        let account = entry.account();
        let user = &entry.user;
        // No sudo may start while the account goes.
        if !entry.sudo.is_empty() {
            crate::log::debug!("removing {user}: sudo rules");
            self.accounts.remove_sudo(&account)?;
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
        self.stop_everything_of(&account)?;
        crate::log::debug!("removing {user}: killed");
        if self.linger_after_kill(entry, now)? {
            // The account stays for a reconnect: its sudo rules with it.
            if !entry.sudo.is_empty() {
                self.accounts.grant_extras(entry)?;
            }
            return Ok(Attempt::Lingering);
        }
        let defused = self.accounts.defuse_home(&account);
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
            self.accounts.delete_record(&account)?
        };
        let mut repaired = repaired;
        if !entry.groups.is_empty() {
            crate::log::debug!("removing {user}: groups");
            let left = self.accounts.leave_groups(&account)?;
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
    /// account is codext's, removes its at jobs and crontab, then kills
    /// every process of the uid and its IPC objects.
    pub(crate) fn stop_everything_of(&self, account: &Account) -> Result<()> {
        let a = &self.cfg.accounts;
        crate::accounts::check_ours(account, (a.uid_min, a.uid_max))?;
        self.accounts.stop_everything(account)
    }
}
