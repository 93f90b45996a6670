//! One temporary user's entry and its transitions.
//!
//! Every transition is a method that first asks the table
//! ([`super::table::permit`]) whether its request is permitted in the
//! entry's phase, takes the time as `now`, and returns a `Result`: the
//! caller (holding the state lock) saves the entry, withdraws or writes
//! records and audits. No method here touches a file, the clock or an
//! account.
//!
//! The phase and whether codext made the account are private: only the
//! transitions here change them (a search for a phase assignment finds
//! only this file), and the rest of the helper reads them through
//! [`Entry::phase`] and [`Entry::account_created`]. Every other field is
//! the lifecycle's own (`pub(in crate::lifecycle)`): outside `lifecycle/`
//! an entry is read through its accessors ([`Entry::user`],
//! [`Entry::account`], [`Entry::sessions`], …) and changed only through
//! the lifecycle, and the account adapters are handed an [`Account`]
//! where the name, ids, home and shell are all they need.
//!
//! Its state-file layout is [`record`]'s.

mod issued;
mod record;

pub use issued::NewEntry;

use super::account::Account;
pub use super::slot::{Refused, Slot, TokenSlot};
use super::table::{permit, Phase, Request};
use super::types::{Channel, Linger, UnixTime};
use crate::ids::{Gid, Uid};
use codext_core::token::PROOF_LEN;
use codext_core::ProfileName;
use codext_wire::UserName;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One open PAM session, tied to the sshd process that opened it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// pid of the process that called `pam_open_session`.
    pub pid: u32,
    /// Its start time (field 22 of `/proc/<pid>/stat`), so a reused pid is
    /// not mistaken for it.
    pub start_time: u64,
    /// When it opened.
    pub opened_at: UnixTime,
}

/// A removal that has been tried and has not finished: shown by `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovalProgress {
    /// When the first attempt started.
    pub started_at: UnixTime,
    /// Attempts so far.
    pub attempts: u32,
    /// Why the last attempt did not finish.
    pub last_error: Option<String>,
    /// Not tried again before then (each failure doubles the wait, see
    /// [`retry_delay`]); `None` while an attempt may run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry: Option<UnixTime>,
}

/// The longest wait between two attempts at a stuck removal.
pub const MAX_RETRY_DELAY_SECS: u64 = 300;

/// How long a removal waits after its `failures`-th failed attempt: 2 s,
/// doubling, at most [`MAX_RETRY_DELAY_SECS`]. A removal that keeps
/// failing is retried ever less often, so it never crowds out the others.
pub fn retry_delay(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    (2u64 << doublings).min(MAX_RETRY_DELAY_SECS)
}

/// Everything the helper keeps about one temporary user. No secret: the
/// token is represented by two one-way hashes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "record::EntryRecord", into = "record::EntryRecord")]
pub struct Entry {
    /// The user name.
    pub(in crate::lifecycle) user: UserName,
    /// Announced and created uid.
    pub(in crate::lifecycle) uid: u32,
    /// Announced and created gid (the codext group).
    pub(in crate::lifecycle) gid: u32,
    /// Announced home folder.
    pub(in crate::lifecycle) home: PathBuf,
    /// Announced shell.
    pub(in crate::lifecycle) shell: PathBuf,
    /// Life phase: [`Entry::phase`].
    phase: Phase,
    /// The first login's token.
    pub(in crate::lifecycle) token: TokenSlot,
    /// Fingerprint of the agent key the puzzle was sealed to.
    pub(in crate::lifecycle) client_fingerprint: String,
    /// Channel the puzzle went out on.
    pub(in crate::lifecycle) channel: Channel,
    /// Issue time.
    pub(in crate::lifecycle) issued_at: UnixTime,
    /// When the account was created.
    pub(in crate::lifecycle) created_at: Option<UnixTime>,
    /// End of the grant, once logged in.
    pub(in crate::lifecycle) grant_until: Option<UnixTime>,
    /// Wrong passwords so far (both slots).
    pub(in crate::lifecycle) attempts: u32,
    /// Open sessions.
    pub(in crate::lifecycle) sessions: Vec<Session>,
    /// [`Entry::account_created`].
    account_created: bool,
    /// A further token for a live account (a second connection).
    pub(in crate::lifecycle) renewal: Option<TokenSlot>,
    /// How the removal is going, once one was attempted.
    pub(in crate::lifecycle) removal: Option<RemovalProgress>,
    /// The puzzle's text, kept (it is public) while a channel still has to
    /// publish it.
    pub(in crate::lifecycle) puzzle: Option<String>,
    /// True once the channel published the puzzle.
    pub(in crate::lifecycle) published: bool,
    /// The agent key the puzzle was sealed to, OpenSSH text form:
    /// authorised for key reconnects once the token login succeeded.
    pub(in crate::lifecycle) client_key: Option<String>,
    /// Linger state, see [`crate::grant_keys`].
    pub(in crate::lifecycle) linger: Option<Linger>,
    /// The grant's profile (what the account may do).
    pub(in crate::lifecycle) profile: ProfileName,
    /// The supplementary groups the account is made with (the
    /// profile's own group first), as the profile said at issue.
    pub(in crate::lifecycle) groups: Vec<String>,
    /// The sudo rules the account gets, as the profile said at
    /// issue.
    pub(in crate::lifecycle) sudo: Vec<String>,
    /// A container is started for the grant (and removed with
    /// it).
    pub(in crate::lifecycle) container: bool,
    /// The linger asked for through the gate (`codext-grant
    /// linger`) on a grant with no shell (a shell grant writes
    /// `~/.codext-linger`).
    pub(in crate::lifecycle) linger_asked: Option<u64>,
}

/// Which slot an answer or a password armed or used.
pub type Armed = Slot;

/// What one reaper pass decided for an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Forget the entry: its puzzle (pending) or login window (armed)
    /// expired; the phase it expired in.
    pub forget: Option<Phase>,
    /// The renewal slot expired and was cleared.
    pub renewal_expired: bool,
    /// Sessions whose sshd process is gone, dropped.
    pub dropped: usize,
    /// The entry moved to [`Phase::Removing`] (idle, or grant over).
    pub remove: bool,
    /// The grant ended (one cause of `remove`).
    pub grant_expired: bool,
}

/// How long an account may exist with no session before it is removed
/// (sshd opens the session right after authentication; a client that
/// vanished in between leaves an account nobody will close).
pub const LOGIN_GRACE_SECS: u64 = 60;

impl Entry {
    /// Where the entry is in its life.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// True once `useradd` created the account (or one found on disk
    /// exactly as announced was adopted): only then may the helper ever
    /// remove an account of this name.
    pub fn account_created(&self) -> bool {
        self.account_created
    }

    /// The user name.
    pub fn user(&self) -> &UserName {
        &self.user
    }

    /// The announced (and created) uid.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The announced (and created) gid: the codext group.
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// The announced home folder.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The channel the puzzle went out on (and its answer must come back
    /// on).
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// Fingerprint of the agent key the puzzle was sealed to.
    pub fn client_fingerprint(&self) -> &str {
        &self.client_fingerprint
    }

    /// The grant's profile.
    pub fn profile(&self) -> &ProfileName {
        &self.profile
    }

    /// The supplementary groups the account is made with.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// True when a container is started for the grant.
    pub fn container(&self) -> bool {
        self.container
    }

    /// The first login's token slot (its hashes and deadlines).
    pub fn token(&self) -> &TokenSlot {
        &self.token
    }

    /// The renewal's token slot, while a further token is out.
    pub fn renewal(&self) -> Option<&TokenSlot> {
        self.renewal.as_ref()
    }

    /// Wrong passwords so far (both slots).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The open sessions.
    pub fn sessions(&self) -> &[Session] {
        &self.sessions
    }

    /// End of the grant, once logged in.
    pub fn grant_until(&self) -> Option<UnixTime> {
        self.grant_until
    }

    /// How the removal is going, once one was attempted.
    pub fn removal(&self) -> Option<&RemovalProgress> {
        self.removal.as_ref()
    }

    /// The account it is announced and created as.
    pub fn account(&self) -> Account {
        Account {
            name: self.user.clone(),
            uid: Uid::from_raw(self.uid),
            gid: Gid::from_raw(self.gid),
            home: self.home.clone(),
            shell: self.shell.clone(),
        }
    }

    /// Asks the table.
    pub fn permit(&self, request: Request) -> Result<(), Refused> {
        permit(self.phase, request).map_err(Refused::OutOfPhase)
    }

    /// True for an account codext created whose grant is running or
    /// lingering: the only state in which PAM requests are answered.
    pub fn is_live(&self) -> bool {
        self.phase == Phase::Active && self.account_created
    }

    fn live(&self, request: Request) -> Result<(), Refused> {
        self.permit(request)?;
        if !self.account_created {
            return Err(Refused::OutOfPhase("not a live codext account"));
        }
        Ok(())
    }

    /// An answer's proof: arms the first login's slot (the entry becomes
    /// [`Phase::Armed`]; the caller announces the record) or the renewal's.
    pub fn arm(
        &mut self,
        proof: &[u8; PROOF_LEN],
        now: UnixTime,
        armed_for: Duration,
    ) -> Result<Armed, Refused> {
        self.permit(Request::Answer)?;
        if self.phase == Phase::Active {
            let renewal = self
                .renewal
                .as_mut()
                .ok_or(Refused::OutOfPhase("not waiting for an answer"))?;
            return match renewal.answer(Slot::Renewal, proof, now, armed_for) {
                Err(Refused::Expired(s)) => {
                    self.renewal = None;
                    Err(Refused::Expired(s))
                }
                other => other.map(|()| Slot::Renewal),
            };
        }
        self.token.answer(Slot::First, proof, now, armed_for)?;
        self.phase = Phase::Armed;
        Ok(Slot::First)
    }

    /// A password: on a match the token is consumed before anything else
    /// (a second use fails even if account creation is slow or fails).
    /// The first login's moves the entry to [`Phase::Creating`] with its
    /// grant running from `now`; a renewal's is cleared.
    pub fn consume_token(
        &mut self,
        password: &[u8],
        now: UnixTime,
        max_attempts: u32,
        grant: Duration,
    ) -> Result<Armed, Refused> {
        self.permit(Request::Authenticate)?;
        let slot = if self.phase == Phase::Active {
            Slot::Renewal
        } else {
            Slot::First
        };
        let token = match slot {
            Slot::Renewal => self
                .renewal
                .as_ref()
                .filter(|r| r.login_by.is_some())
                .ok_or(Refused::OutOfPhase("token already used"))?,
            Slot::First => &self.token,
        };
        match token.check_password(slot, &self.user, password, now) {
            Err(Refused::Expired(s)) => {
                if s == Slot::Renewal {
                    self.renewal = None;
                }
                Err(Refused::Expired(s))
            }
            Err(e) => Err(e),
            Ok(false) => {
                self.attempts += 1;
                let exhausted = self.attempts >= max_attempts;
                if exhausted && slot == Slot::Renewal {
                    self.renewal = None;
                }
                Err(Refused::WrongPassword {
                    slot,
                    attempts: self.attempts,
                    exhausted,
                })
            }
            Ok(true) => {
                match slot {
                    Slot::Renewal => self.renewal = None,
                    Slot::First => {
                        self.token.login_hash = None;
                        self.phase = Phase::Creating;
                        self.created_at = Some(now);
                        self.grant_until = Some(now.plus(grant));
                    }
                }
                Ok(slot)
            }
        }
    }

    /// May `useradd` run for this entry now? (A revoke that came first
    /// moved it on, and no account may be made for it then.)
    pub fn may_create(&self) -> Result<(), Refused> {
        self.permit(Request::CreateAccount)
    }

    /// `useradd` made the account: it is codext's to remove from now on,
    /// and live unless a revoke came in between.
    pub fn account_made(&mut self) {
        self.account_created = true;
        if self.phase == Phase::Creating {
            self.phase = Phase::Active;
        }
    }

    /// An account of this name is on disk exactly as announced although
    /// its creation was never recorded (the helper stopped between
    /// `useradd` and saving): it is codext's to remove from now on. The
    /// phase does not change.
    pub fn adopt_account(&mut self) {
        self.account_created = true;
    }

    /// `useradd` made the account but a later step of the login failed:
    /// the account is codext's, and the entry is handed to the removal
    /// (the reaper's next pass), whatever phase a revoke left it in. A
    /// failed login ends the user as a revoke does, and the table permits
    /// a revoke in every phase.
    pub fn creation_failed(&mut self) -> Result<(), Refused> {
        self.permit(Request::Revoke)?;
        self.account_created = true;
        self.phase = Phase::Removing;
        Ok(())
    }

    /// After a restart, for a creation that was under way (`useradd`
    /// running or about to run): whatever exists of the account
    /// (`on_disk`) is removed. Only in [`Phase::Creating`], the one phase
    /// the table lets an account be made in.
    pub fn creation_interrupted(&mut self, on_disk: bool) -> Result<(), Refused> {
        self.permit(Request::CreateAccount)?;
        self.account_created = on_disk;
        self.phase = Phase::Removing;
        Ok(())
    }

    /// After a restart, for a live account: drops the sessions whose sshd
    /// process is gone (`alive` says) — closed, as far as the table is
    /// concerned. With none left and no linger running the account is
    /// orphaned and its removal begins: returns how many sessions it had.
    /// `None` when the removal does not begin (or the entry is not
    /// active).
    pub fn orphaned(&mut self, now: UnixTime, alive: impl Fn(&Session) -> bool) -> Option<usize> {
        self.permit(Request::CloseSession).ok()?;
        if self.phase != Phase::Active {
            return None;
        }
        let before = self.sessions.len();
        self.sessions.retain(alive);
        if !self.sessions.is_empty() || self.lingering(now) {
            return None;
        }
        self.phase = Phase::Removing;
        Some(before)
    }

    /// The removal worker's turn, after the kill, for a last close that
    /// asked for a linger: the account stays live until `until` (the
    /// removal stops; the reaper resumes it when the linger is over).
    /// Refused unless the entry is still being removed for that close (no
    /// session came back, no revoke since cleared the close's flag).
    pub fn begin_linger(&mut self, until: UnixTime) -> Result<(), Refused> {
        self.permit(Request::Remove)?;
        if !self.sessions.is_empty() || !self.linger.as_ref().is_some_and(|l| l.at_last_close) {
            return Err(Refused::OutOfPhase("not removed for its last close"));
        }
        self.phase = Phase::Active;
        self.removal = None;
        self.linger = Some(Linger {
            at_last_close: false,
            until: Some(until),
        });
        Ok(())
    }

    /// Tests only: puts the entry in `phase` without a transition.
    #[cfg(test)]
    pub(super) fn force_phase(&mut self, phase: Phase) {
        self.phase = phase;
    }

    /// Tests only: sets `account_created` without a transition.
    #[cfg(test)]
    pub(super) fn force_account_created(&mut self, created: bool) {
        self.account_created = created;
    }

    /// PAM account management for the token login.
    pub fn check_account(&self, now: UnixTime) -> Result<(), Refused> {
        self.live(Request::Account)?;
        if self.grant_until.is_some_and(|t| now.past(t)) {
            return Err(Refused::OutOfPhase("grant expired"));
        }
        Ok(())
    }

    /// A key login: permitted for a live grant only; the caller compares
    /// the key.
    pub fn check_key_login(&self, now: UnixTime) -> Result<(), Refused> {
        self.live(Request::KeyAccount)?;
        if self.grant_until.is_none_or(|t| now.past(t)) {
            return Err(Refused::OutOfPhase("grant expired"));
        }
        Ok(())
    }

    /// The agent asked for a linger of `secs` through the gate
    /// (`codext-grant linger`, a grant with no shell): kept for the last
    /// close, which caps it. Only for a live account.
    pub fn ask_linger(&mut self, secs: u64) -> Result<(), Refused> {
        if !self.is_live() {
            return Err(Refused::OutOfPhase("not a live codext account"));
        }
        self.linger_asked = Some(secs);
        Ok(())
    }

    /// A further token for this live account.
    pub fn renew(&mut self, slot: TokenSlot) -> Result<(), Refused> {
        self.live(Request::Renew)?;
        self.renewal = Some(slot);
        Ok(())
    }

    /// The channel published the puzzle: its text is no longer kept.
    pub fn mark_published(&mut self) -> Result<(), Refused> {
        self.permit(Request::Publish)?;
        self.published = true;
        self.puzzle = None;
        Ok(())
    }

    /// A session opens in sshd process `pid` (started at `start_time`);
    /// returns how many are open. A session ends any linger.
    pub fn open_session(
        &mut self,
        pid: u32,
        start_time: u64,
        now: UnixTime,
    ) -> Result<usize, Refused> {
        self.live(Request::OpenSession)?;
        self.linger = None;
        self.sessions.retain(|s| s.pid != pid);
        self.sessions.push(Session {
            pid,
            start_time,
            opened_at: now,
        });
        Ok(self.sessions.len())
    }

    /// The session of `pid` closes: `None` when it was not open; else how
    /// many are left and whether this began the removal (the last one of
    /// a live account: the removal may become a linger).
    pub fn close_session(&mut self, pid: u32) -> Option<(usize, bool)> {
        self.permit(Request::CloseSession).ok()?;
        let before = self.sessions.len();
        self.sessions.retain(|s| s.pid != pid);
        if self.sessions.len() == before {
            return None;
        }
        let left = self.sessions.len();
        let removing = left == 0 && self.phase == Phase::Active;
        if removing {
            self.phase = Phase::Removing;
            self.linger = Some(Linger {
                at_last_close: true,
                until: None,
            });
        }
        Some((left, removing))
    }

    /// Begins the removal for a revoke (which never lingers). `Ok(true)`
    /// when an account may exist (the removal worker must run), `Ok(false)`
    /// when the entry is only to be forgotten (pending or armed).
    pub fn begin_removal(&mut self) -> Result<bool, Refused> {
        self.permit(Request::Revoke)?;
        match self.phase {
            Phase::Pending | Phase::Armed => Ok(false),
            Phase::Creating | Phase::Active | Phase::Removing => {
                self.phase = Phase::Removing;
                self.linger = None;
                Ok(true)
            }
        }
    }

    /// The removal worker's turn: counts the attempt (first one at `now`).
    pub fn start_removal_attempt(&mut self, now: UnixTime) -> Result<(), Refused> {
        self.permit(Request::Remove)?;
        let progress = self.removal.get_or_insert(RemovalProgress {
            started_at: now,
            attempts: 0,
            last_error: None,
            next_retry: None,
        });
        progress.attempts += 1;
        Ok(())
    }

    /// The attempt that [`Entry::start_removal_attempt`] counted failed at
    /// `now` with `error`: recorded for `status`, and the next attempt
    /// waits ([`retry_delay`]).
    pub fn removal_failed(&mut self, error: String, now: UnixTime) {
        if let Some(p) = self.removal.as_mut() {
            p.last_error = Some(error);
            p.next_retry = Some(now.plus_secs(retry_delay(p.attempts)));
        }
    }

    /// May a removal attempt run at `now` (no failure's wait pending)?
    pub fn removal_due(&self, now: UnixTime) -> bool {
        self.removal
            .as_ref()
            .and_then(|p| p.next_retry)
            .is_none_or(|t| now >= t)
    }

    /// Is it lingering at `now`?
    pub fn lingering(&self, now: UnixTime) -> bool {
        self.linger
            .as_ref()
            .and_then(|l| l.until)
            .is_some_and(|t| !now.past(t))
    }

    /// Did its linger end before `now`?
    pub fn linger_over(&self, now: UnixTime) -> bool {
        self.linger
            .as_ref()
            .and_then(|l| l.until)
            .is_some_and(|t| now.past(t))
    }

    /// One reaper pass at `now`; `alive` says whether a session's sshd
    /// process still runs.
    pub fn reap(&mut self, now: UnixTime, alive: impl Fn(&Session) -> bool) -> Reaped {
        let mut out = Reaped::default();
        match self.phase {
            Phase::Pending if self.token.expired(now) => out.forget = Some(Phase::Pending),
            Phase::Armed if self.token.expired(now) => out.forget = Some(Phase::Armed),
            Phase::Active if self.account_created => {
                if self.renewal.as_ref().is_some_and(|r| r.expired(now)) {
                    self.renewal = None;
                    out.renewal_expired = true;
                }
                let before = self.sessions.len();
                self.sessions.retain(&alive);
                out.dropped = before - self.sessions.len();
                let idle = self.sessions.is_empty()
                    && !self.lingering(now)
                    && (out.dropped > 0
                        || self
                            .created_at
                            .is_some_and(|t| now.past(t.plus_secs(LOGIN_GRACE_SECS)))
                        || self.linger_over(now));
                out.grant_expired = self.grant_until.is_some_and(|t| now.past(t));
                if idle || out.grant_expired {
                    self.phase = Phase::Removing;
                    out.remove = true;
                }
            }
            Phase::Removing => out.remove = true,
            _ => {}
        }
        out
    }
}
