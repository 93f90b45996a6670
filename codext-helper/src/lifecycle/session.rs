//! PAM sessions: one per SSH connection, counted per user and tied to the
//! sshd process that opened it (its pid and start time), so the last close
//! — or the death of the last such process — begins the removal.

use super::entry::Session;
use super::types::UnixTime;
use super::{Helper, Removal, Verdict};
use crate::audit::AuditEvent;
use crate::error::Result;
use codext_wire::UserName;

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// `pam_close_session`.
    Closed,
    /// Its sshd process died without closing it.
    Lost,
}

impl Helper {
    /// A session opens in sshd process `pid` at `now`.
    pub fn open_session(
        &self,
        user: &UserName,
        pid: u32,
        source: &str,
        now: UnixTime,
    ) -> Result<Verdict> {
        let mut locked = self.store.lock()?;
        let Some(entry) = locked.state.users.get_mut(user.as_str()) else {
            return Ok(Verdict::Denied("not a live codext account"));
        };
        let start_time = self.accounts.process_start_time(pid).unwrap_or(0);
        let count = match entry.open_session(pid, start_time, now) {
            Ok(n) => n,
            Err(r) => return Ok(Verdict::Denied(r.reason())),
        };
        locked.save()?;
        drop(locked);
        self.log(AuditEvent::SessionOpen {
            user: user.to_string(),
            pid,
            sessions: count,
            source: source.to_owned(),
        });
        Ok(Verdict::Ok("session opened"))
    }

    /// The session of `pid` closes (or was lost). Returns the removal to
    /// schedule when it was the last one.
    pub fn close_session(&self, user: &UserName, pid: u32, how: Closed) -> Result<Option<Removal>> {
        let mut locked = self.store.lock()?;
        let Some(entry) = locked.state.users.get_mut(user.as_str()) else {
            return Ok(None);
        };
        let Some((left, removing)) = entry.close_session(pid) else {
            return Ok(None);
        };
        locked.save()?;
        drop(locked);
        self.log(match how {
            Closed::Closed => AuditEvent::SessionClose {
                user: user.to_string(),
                pid,
                sessions: left,
            },
            Closed::Lost => AuditEvent::SessionLost {
                user: user.to_string(),
                pid: Some(pid),
                sessions: left,
                dropped: None,
            },
        });
        Ok(removing.then(|| Removal::Remove(user.to_string())))
    }

    /// Every open session of a live user: (user, session).
    pub fn sessions(&self) -> Result<Vec<(UserName, Session)>> {
        let locked = self.store.lock()?;
        Ok(locked
            .state
            .users
            .values()
            .filter(|e| e.phase() == super::Phase::Active)
            .flat_map(|e| e.sessions.iter().map(|s| (e.user.clone(), s.clone())))
            .collect())
    }

    /// True when the sshd process of `s` still runs (and is the same one).
    pub(crate) fn session_alive(&self, s: &Session) -> bool {
        self.accounts
            .process_start_time(s.pid)
            .is_some_and(|t| s.start_time == 0 || t == s.start_time)
    }
}
