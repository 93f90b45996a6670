//! One grant, many connections: the lifecycle's side of key reconnects
//! and the linger (what they are and why: [`crate::grant_keys`], the
//! file adapter these methods reach through [`super::host::Records`] and
//! [`super::host::AccountTool`]). Authorising and withdrawing a grant's
//! key, the check before a key login's session, the linger asked through
//! the gate, and the removal's turn after the kill.

use super::entry::Entry;
use super::types::UnixTime;
use super::{Helper, Removal, Verdict};
use crate::audit::{AuditEvent, Stranger};
use crate::error::{HelperError, Result};
use crate::grant_keys::key_line;
use codext_core::keys::PublicKey;
use codext_wire::UserName;

impl Helper {
    /// After the first token login: authorises the grant's agent key for
    /// `entry`'s user until the grant ends. A failure is recorded; the
    /// login itself stands (the agent just cannot reconnect by key).
    pub fn authorize_grant_key(&self, entry: &Entry) {
        let made = (|| -> Result<String> {
            let text = entry
                .client_key
                .as_deref()
                .ok_or_else(|| HelperError::System("no agent key recorded".into()))?;
            let key = PublicKey::from_openssh(text)?;
            let until = entry
                .grant_until
                .ok_or_else(|| HelperError::System("no grant end recorded".into()))?;
            let line = key_line(&key, until.0, entry.user.as_str())?;
            self.records.write_grant_key(entry.user.as_str(), &line)?;
            Ok(key.fingerprint().to_string())
        })();
        let user = entry.user.to_string();
        self.log(match made {
            Ok(fp) => AuditEvent::KeyAuthorize {
                user,
                fingerprint: Some(fp),
                until: Some(entry.grant_until.map(|t| t.0)),
                result: None,
                error: None,
            },
            Err(e) => AuditEvent::KeyAuthorize {
                user,
                fingerprint: None,
                until: None,
                result: Some("failed"),
                error: Some(e.to_string()),
            },
        });
    }

    /// Withdraws `user`'s grant key (idempotent).
    pub fn withdraw_grant_key(&self, user: &str) {
        match self.records.remove_grant_key(user) {
            Ok(true) => self.log(AuditEvent::KeyWithdraw {
                user: user.to_owned(),
            }),
            Ok(false) => {}
            Err(e) => crate::log::error!("cannot remove the grant key of {user}: {e}"),
        }
    }

    /// (reconcile) Removes every grant key whose user is not a live grant
    /// (a crash between an account's removal and its key's).
    pub fn withdraw_stray_grant_keys(&self, live: &[String]) {
        for name in self.records.grant_key_users() {
            if !live.contains(&name) {
                self.withdraw_grant_key(&name);
            }
        }
    }

    /// The check before a key login's session (sshd names the key only
    /// then): allowed only for a live grant (account made by the token
    /// login, grant running) whose agent key `offered` is. Audited with the
    /// key's fingerprint either way. sshd lets a session whose PAM open
    /// failed go on, restricted, so a key that is *not* the grant's (sshd
    /// accepted it: someone wrote it into root's key folder) also revokes
    /// the grant: the removal returned kills every process of the user,
    /// that connection's too.
    pub fn key_account(
        &self,
        user: &UserName,
        offered: &str,
        source: &str,
        now: UnixTime,
    ) -> Result<(Verdict, Option<Removal>)> {
        let fp = PublicKey::from_openssh(offered)
            .map(|k| k.fingerprint().to_string())
            .ok();
        let mut removal = None;
        // A name codext does not know is a stranger's: counted, not a
        // line each (as for passwords), and never behind the state lock.
        let unknown = || {
            self.log_stranger(Stranger::UnknownUser, user.as_str(), source);
            Ok((Verdict::Denied("not a live codext account"), None))
        };
        if !self.store.may_know(user.as_str()) {
            return unknown();
        }
        let verdict = {
            let mut locked = self.store.lock()?;
            match locked.state.users.get_mut(user.as_str()) {
                None => {
                    drop(locked);
                    return unknown();
                }
                Some(e) => match e.check_key_login(now) {
                    Err(r) => Verdict::Denied(r.reason()),
                    Ok(()) if fp.as_deref() != Some(e.client_fingerprint.as_str()) => {
                        e.begin_removal()
                            .map_err(|r| HelperError::System(r.reason().into()))?;
                        removal = Some(Removal::Remove(e.user.to_string()));
                        locked.save()?;
                        Verdict::Denied("not the grant's agent key")
                    }
                    Ok(()) => Verdict::Ok("key login within the grant"),
                },
            }
        };
        let result = match &verdict {
            Verdict::Ok(_) => "ok",
            Verdict::Denied(why) => why,
        };
        let line = AuditEvent::KeyLogin {
            user: user.to_string(),
            fingerprint: fp,
            result: result.to_owned(),
            source: source.to_owned(),
        };
        let verdict = match verdict {
            // A key login is granted only once its line is durable.
            Verdict::Ok(why) => match self.log_for_login(line) {
                Ok(()) => Verdict::Ok(why),
                Err(_) => Verdict::Denied("audit trail unavailable"),
            },
            other => {
                self.log(line);
                other
            }
        };
        if removal.is_some() {
            self.log(AuditEvent::Revoke {
                user: user.to_string(),
                reason: "a key login with a key that is not the grant's".into(),
            });
        }
        Ok((verdict, removal))
    }

    /// `codext-grant linger SECONDS` through the gate of a
    /// grant with no shell: remembers the linger asked for (capped when
    /// the last session closes, as a file's would be) and returns the
    /// grant key line (its `expiry-time` tells the agent the grant's end).
    pub fn ask_linger(&self, user: &UserName, secs: u64) -> Result<String> {
        let mut locked = self.store.lock()?;
        let not_live = || HelperError::Refused(format!("{user} is not a live grant"));
        let e = locked
            .state
            .users
            .get_mut(user.as_str())
            .ok_or_else(not_live)?;
        e.ask_linger(secs).map_err(|_| not_live())?;
        let (key, until) = (e.client_key.clone(), e.grant_until);
        locked.save()?;
        drop(locked);
        let (Some(key), Some(until)) = (key, until) else {
            return Err(HelperError::Refused(format!("{user} has no grant key")));
        };
        let key = PublicKey::from_openssh(&key)?;
        key_line(&key, until.0, user.as_str())
    }

    /// The removal's turn after the kill: when `entry`'s last session
    /// closed and its agent asked for a linger (read now that nothing of
    /// the user runs: the file cannot change under us), sweeps the shared
    /// folders and keeps the account record and home until the linger
    /// ends. True when it lingers (the removal stops there). The kill
    /// itself is the removal's: it runs once either way.
    pub fn linger_after_kill(&self, entry: &Entry, now: UnixTime) -> Result<bool> {
        let cap = self.cfg.ttl.linger_max.as_secs();
        let grant_left = entry.grant_until.map_or(0, |t| now.until(t));
        if !entry.account_created()
            || !entry.linger.as_ref().is_some_and(|l| l.at_last_close)
            || cap == 0
            || grant_left == 0
        {
            return Ok(false);
        }
        // A grant with no shell asked through the gate; its
        // home is not a place it writes to.
        let asked = if entry.profile.is_shell() {
            self.accounts.read_linger(&entry.home, entry.uid)
        } else {
            entry.linger_asked.unwrap_or(0)
        };
        let linger = asked.min(cap).min(grant_left);
        if linger == 0 {
            return Ok(false);
        }
        let swept = self.accounts.sweep_shared(entry.uid);
        let until = now.plus_secs(linger);
        let mut locked = self.store.lock()?;
        let Some(e) = locked.state.users.get_mut(entry.user.as_str()) else {
            return Ok(false);
        };
        // A revoke since the close cleared the flag: remove after all.
        if e.begin_linger(until).is_err() {
            return Ok(false);
        }
        locked.save()?;
        drop(locked);
        self.log(AuditEvent::Linger {
            user: entry.user.to_string(),
            uid: entry.uid,
            asked,
            seconds: linger,
            until: until.0,
            swept: swept.removed,
            leftovers: swept.leftovers,
        });
        Ok(true)
    }
}
