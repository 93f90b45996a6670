//! Quarantined uids: rechecked by the reaper, found by the range's
//! rescan, listed and released by the operator.

use crate::audit::AuditEvent;
use crate::error::{HelperError, Result};
use crate::lifecycle::types::UnixTime;
use crate::lifecycle::Helper;
use crate::store::Quarantine;

/// How a leftover container is named in a quarantine (the recheck tries
/// to remove it again).
pub const CONTAINER_LEFT: &str = "docker container ";

impl Helper {
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
            // A container of the grant that could not be
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
}
