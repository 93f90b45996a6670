//! The reaper's pass: expiries, lost sessions, and the removals due.

use crate::audit::AuditEvent;
use crate::error::Result;
use crate::lifecycle::table::Phase;
use crate::lifecycle::types::UnixTime;
use crate::lifecycle::{Helper, Removal};

impl Helper {
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
}
