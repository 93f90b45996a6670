//! From an answer to a live account: arming a token slot ([`Helper::answer`]),
//! consuming it with the password ([`Helper::authenticate`]), `useradd`
//! ([`Helper::create_accounts`], [`Helper::finish_creation`]) and PAM
//! account management ([`Helper::account`]). The first login and a renewal
//! go through the same code: only the slot differs.

use super::entry::{Entry, Refused, Slot};
use super::types::UnixTime;
use super::{Helper, LoginOutcome, Verdict};
use crate::audit::{AuditEvent, Counted, Stranger};
use crate::error::{HelperError, Result};
use crate::lifecycle::table::Phase;
use codext_core::Answer;
use codext_wire::{Secret, UserName};

impl Helper {
    /// Checks an answer at `now` and arms its slot: for a first login the
    /// userdb record appears.
    pub fn answer(&self, text: &str, source: &str, now: UnixTime) -> Result<Entry> {
        let answer = Answer::parse(text)?;
        let user = answer.user.to_string();
        let log = |result: &'static str, renewal: bool, uid: Option<u32>| AuditEvent::Answer {
            user: user.clone(),
            result,
            uid,
            renewal,
            source: source.to_owned(),
        };
        // A refusal that changed nothing: the operator's is worth a line,
        // a channel's (open to anyone who learnt the name) is counted.
        let refused = |result: &'static str, renewal: bool| {
            if source == "cli" {
                self.log(log(result, renewal, None));
            } else {
                self.log_counted(Counted {
                    request: "answer",
                    user: Some(&user),
                    key: None,
                    result,
                    source,
                });
            }
        };
        let mut locked = self.store.lock()?;
        let Some(entry) = locked.state.users.get_mut(&user) else {
            drop(locked);
            // An operator's typo is worth a line; a channel is open to
            // strangers, whose answers are counted.
            if source == "cli" {
                self.log(log("unknown user", false, None));
            } else {
                self.log_stranger(Stranger::UnknownUser, &user, source);
            }
            return Err(HelperError::UnknownUser(user));
        };
        let armed_for = self.cfg.ttl.armed;
        match entry.arm(&answer.proof, now, armed_for) {
            Ok(slot) => {
                let armed = entry.clone();
                if slot == Slot::First {
                    self.records.announce(&armed)?;
                }
                locked.save()?;
                drop(locked);
                let uid = (slot == Slot::First).then_some(armed.uid);
                self.log(log("armed", slot == Slot::Renewal, uid));
                Ok(armed)
            }
            Err(Refused::OutOfPhase(_)) => {
                let phase = entry.phase().as_str();
                drop(locked);
                refused("not pending", false);
                Err(HelperError::Refused(format!(
                    "{user} is {phase}, not waiting for an answer"
                )))
            }
            Err(Refused::AlreadyArmed) => Err(HelperError::Refused(format!(
                "the renewal for {user} is already armed"
            ))),
            Err(Refused::Expired(Slot::Renewal)) => {
                locked.save()?;
                Err(HelperError::Refused(format!(
                    "the renewal puzzle for {user} expired"
                )))
            }
            Err(Refused::Expired(Slot::First)) => {
                locked.state.users.remove(&user);
                locked.save()?;
                drop(locked);
                self.log(AuditEvent::Expire {
                    user: user.clone(),
                    phase: "pending",
                });
                Err(HelperError::Refused(format!(
                    "the puzzle for {user} expired"
                )))
            }
            Err(Refused::WrongProof(slot)) | Err(Refused::WrongPassword { slot, .. }) => {
                drop(locked);
                refused("wrong proof", slot == Slot::Renewal);
                Err(HelperError::Refused(format!("wrong proof for {user}")))
            }
        }
    }

    /// PAM authentication at `now`: checks the password; on success the
    /// token is consumed (and, for a first login, the record withdrawn and
    /// the account is to be created: [`LoginOutcome::CreateAccount`]).
    pub fn authenticate(
        &self,
        user: &UserName,
        password: &Secret,
        source: &str,
        now: UnixTime,
    ) -> Result<LoginOutcome> {
        let name = user.to_string();
        let verify =
            |result: &'static str, renewal: bool, attempts: Option<u32>| AuditEvent::Verify {
                user: name.clone(),
                result,
                renewal,
                attempts,
                source: source.to_owned(),
            };
        // Names nobody issued (most of what strangers try) are refused
        // without waiting on the state lock behind real logins.
        if !self.store.may_know(&name) {
            crate::wake::knock();
            self.log_stranger(Stranger::UnknownUser, &name, source);
            return Ok(LoginOutcome::Reply(Verdict::Denied("unknown user")));
        }
        let mut locked = self.store.lock()?;
        let Some(entry) = locked.state.users.get_mut(&name) else {
            drop(locked);
            crate::wake::knock();
            self.log_stranger(Stranger::UnknownUser, &name, source);
            return Ok(LoginOutcome::Reply(Verdict::Denied("unknown user")));
        };
        let (max, grant) = (self.cfg.limits.max_attempts, self.cfg.ttl.grant);
        let uid = entry.uid;
        match entry.consume_token(password.expose(), now, max, grant) {
            Ok(Slot::First) => {
                // The record goes before `useradd`, which refuses a name
                // NSS already reports.
                self.records.withdraw(&name, uid)?;
                let snapshot = entry.clone();
                locked.save()?;
                drop(locked);
                if self.log_for_login(verify("ok", false, None)).is_err() {
                    // No account without its line: nothing was made yet,
                    // and the token is spent, so the user is forgotten
                    // (the agent asks for a new puzzle once there is room).
                    self.forget_unmade(&name)?;
                    return Ok(LoginOutcome::Reply(Verdict::Denied(
                        "audit trail unavailable",
                    )));
                }
                Ok(LoginOutcome::CreateAccount(Box::new(snapshot)))
            }
            Ok(Slot::Renewal) => {
                locked.save()?;
                drop(locked);
                if self.log_for_login(verify("ok", true, None)).is_err() {
                    return Ok(LoginOutcome::Reply(Verdict::Denied(
                        "audit trail unavailable",
                    )));
                }
                Ok(LoginOutcome::Reply(Verdict::Ok("further session allowed")))
            }
            Err(Refused::Expired(slot)) => {
                if slot == Slot::First {
                    self.records.withdraw(&name, uid)?;
                    locked.state.users.remove(&name);
                }
                locked.save()?;
                drop(locked);
                let phase = if slot == Slot::First {
                    "armed"
                } else {
                    "renewal"
                };
                self.log(AuditEvent::Expire {
                    user: name.clone(),
                    phase,
                });
                Ok(LoginOutcome::Reply(Verdict::Denied("expired")))
            }
            Err(Refused::WrongPassword {
                slot,
                attempts,
                exhausted,
            }) => {
                let revoked = exhausted && slot == Slot::First;
                if revoked {
                    self.records.withdraw(&name, uid)?;
                    locked.state.users.remove(&name);
                }
                locked.save()?;
                drop(locked);
                self.log(verify(
                    "wrong password",
                    slot == Slot::Renewal,
                    Some(attempts),
                ));
                if revoked {
                    self.log(AuditEvent::Revoke {
                        user: name.clone(),
                        reason: "too many wrong passwords".into(),
                    });
                }
                Ok(LoginOutcome::Reply(Verdict::Denied("wrong password")))
            }
            Err(refused) => {
                // Not armed, token already used, ...: nothing changed, and
                // anyone who learnt the name can ask again from anywhere.
                drop(locked);
                let reason = refused.reason();
                self.log_counted(Counted {
                    request: "verify",
                    user: Some(&name),
                    key: None,
                    result: reason,
                    source,
                });
                Ok(LoginOutcome::Reply(Verdict::Denied(reason)))
            }
        }
    }

    /// Second half of a successful login: creates the account announced by
    /// `entry` (the token is already consumed). On failure the user is
    /// forgotten and the login denied.
    pub fn finish_login(&self, entry: &Entry) -> Result<Verdict> {
        let made = self.create_accounts(std::slice::from_ref(entry)).pop();
        self.finish_creation(
            entry,
            made.unwrap_or_else(|| Err(HelperError::System("no result".into()))),
        )
    }

    /// What follows `useradd` for one login (its result in `made`): the
    /// check that the account is the announced one and the audit line; on
    /// failure the user is forgotten, or its half-made account handed to
    /// the reaper.
    pub fn finish_creation(&self, entry: &Entry, made: Result<()>) -> Result<Verdict> {
        // The login is granted only once its `create` line is durable; if
        // it cannot be written the made account goes to removal like any
        // half-made one.
        let recorded = made
            .and_then(|()| self.accounts.verify_created(&entry.account()))
            // What the profile adds (sudo rules, the transfer folder) is
            // part of making the account: without it, no login.
            .and_then(|()| self.accounts.grant_extras(entry))
            .and_then(|()| {
                self.log_for_login(AuditEvent::Create {
                    user: entry.user.to_string(),
                    uid: entry.uid,
                    gid: entry.gid,
                    home: entry.home.clone(),
                    profile: entry.profile.to_string(),
                    groups: entry.groups.clone(),
                    sudo: entry.sudo.clone(),
                })
            });
        match recorded {
            Ok(()) => {
                // The agent key may now reconnect within the grant.
                self.authorize_grant_key(entry);
                Ok(Verdict::Ok("account created"))
            }
            Err(e) => {
                crate::log::error!("{e}");
                self.log(AuditEvent::CreateFailed {
                    user: entry.user.to_string(),
                    result: "failed",
                    error: e.to_string(),
                });
                let mut locked = self.store.lock()?;
                // If useradd did create it (and something after failed),
                // it is ours to remove: the reaper's next pass does that.
                // A revoke that came first already handed it to the
                // remover. Otherwise there is nothing to clean up.
                let name = entry.user.as_str();
                match locked.state.users.get_mut(name) {
                    Some(e) if self.accounts.is_ours_on_disk(&entry.account()) => {
                        if let Err(r) = e.creation_failed() {
                            crate::log::error!("{name}: {}", r.reason());
                        }
                    }
                    Some(e) if e.phase() == Phase::Removing => {}
                    _ => {
                        locked.state.users.remove(name);
                    }
                }
                locked.save()?;
                Err(e)
            }
        }
    }

    /// Runs `useradd` for each of `entries` (logins whose token was just
    /// consumed), under one hold of the account lock and two of the state
    /// lock for the whole batch: a burst of logins costs one `useradd`
    /// each and little else. Only what must be exclusive happens here —
    /// the table's check (a revoke that came first moved the user on, and
    /// no account may be made for it now), `useradd`, and the record of its
    /// success (a remover waiting for the lock then sees the account).
    pub fn create_accounts(&self, entries: &[Entry]) -> Vec<Result<()>> {
        let fail = |e: &HelperError| HelperError::System(e.to_string());
        let _accounts = match self.store.lock_accounts() {
            Ok(l) => l,
            Err(e) => return entries.iter().map(|_| Err(fail(&e))).collect(),
        };
        let permitted: Vec<Result<()>> = match self.store.lock() {
            Ok(locked) => entries
                .iter()
                .map(|e| match locked.state.users.get(e.user.as_str()) {
                    Some(now) if now.may_create().is_ok() => self.groups_safe(e),
                    _ => Err(HelperError::Refused(format!(
                        "{} was revoked before its account was made",
                        e.user
                    ))),
                })
                .collect(),
            Err(e) => return entries.iter().map(|_| Err(fail(&e))).collect(),
        };
        let mut results: Vec<Result<()>> = entries
            .iter()
            .zip(permitted)
            .map(|(entry, ok)| ok.and_then(|()| self.accounts.create(entry)))
            .collect();
        let saved = self.store.lock().and_then(|mut locked| {
            for (entry, _) in entries.iter().zip(&results).filter(|(_, r)| r.is_ok()) {
                if let Some(e) = locked.state.users.get_mut(entry.user.as_str()) {
                    e.account_made();
                }
            }
            locked.save()
        });
        if let Err(e) = saved {
            // The accounts exist but the state does not say so: reported
            // as failures, whose handling marks them for removal.
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(fail(&e));
            }
        }
        results
    }

    /// Forgets `name` after its token was consumed but before any account
    /// was made (its login line could not be recorded). A user a revoke
    /// already handed to removal, or one whose account exists, is left to
    /// the remover.
    fn forget_unmade(&self, name: &str) -> Result<()> {
        let mut locked = self.store.lock()?;
        let unmade = locked
            .state
            .users
            .get(name)
            .is_some_and(|e| e.phase() == Phase::Creating && !e.account_created());
        if unmade {
            locked.state.users.remove(name);
            locked.save()?;
        }
        Ok(())
    }

    /// Refuses to make an account with a group that reaches
    /// root on this host as it is now (the configuration was checked by
    /// name; a group may have been given the docker socket since).
    fn groups_safe(&self, e: &Entry) -> Result<()> {
        let given: Vec<String> = e
            .groups
            .iter()
            .filter(|g| !g.starts_with(crate::profiles::GROUP_PREFIX))
            .cloned()
            .collect();
        if given.is_empty() {
            return Ok(());
        }
        let bad = crate::profiles::groups::dangerous(&given, &self.cfg.containers.socket());
        if bad.is_empty() {
            Ok(())
        } else {
            Err(HelperError::Refused(format!(
                "{}: the profile {} gives groups that reach root on this host: {}",
                e.user,
                e.profile,
                bad.join("; ")
            )))
        }
    }

    /// PAM account management at `now`: only an account codext created
    /// and whose grant runs is valid.
    pub fn account(&self, user: &UserName, now: UnixTime) -> Result<Verdict> {
        let locked = self.store.lock()?;
        Ok(match locked.state.users.get(user.as_str()) {
            None => Verdict::Denied("not a live codext account"),
            Some(e) => match e.check_account(now) {
                Ok(()) => Verdict::Ok("account valid"),
                Err(r) => Verdict::Denied(r.reason()),
            },
        })
    }
}
