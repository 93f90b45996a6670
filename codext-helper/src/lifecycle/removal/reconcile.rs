//! The reconcile after a crash or a reboot: state, accounts and userdb
//! records brought back into agreement.

use crate::audit::AuditEvent;
use crate::error::Result;
use crate::lifecycle::table::Phase;
use crate::lifecycle::types::UnixTime;
use crate::lifecycle::{Helper, Removal};

impl Helper {
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
                        if self.accounts.is_ours_on_disk(&entry.account()) {
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
                    let on_disk = self.accounts.is_ours_on_disk(&entry.account());
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
        // Sudo rules and containers no live grant stands behind
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
