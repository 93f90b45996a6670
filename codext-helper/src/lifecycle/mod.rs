//! The lifecycle of a temporary user, shared by the CLI verbs and the
//! daemon: issue a puzzle ([`issue`]), accept an answer and a password and
//! create the account ([`login`]), track sessions ([`session`]), key
//! reconnects and the linger ([`reconnect`]), revoke, expire, reconcile and
//! remove ([`removal`]).
//!
//! * Which request is permitted in which phase is said once, in
//!   [`table`]; every entry point asks it through an [`Entry`] transition
//!   ([`entry`]) before it changes anything.
//! * Nothing here reads the clock: every entry point takes `now`.
//! * The machine is reached only through [`host::AccountTool`] and
//!   [`host::Records`], so the unit tests (`tests.rs`) drive the whole
//!   lifecycle as a normal user against a temporary folder and fakes.
//! * Every state change happens under the state lock ([`crate::store`]);
//!   account creation and removal happen under the account lock, which is
//!   never taken while the state lock is held (lock order: removals,
//!   accounts, state), so the daemon and the verbs cannot deadlock or race.

pub mod account;
pub mod entry;
pub mod host;
mod issue;
mod login;
mod reconnect;
mod removal;
pub mod session;
pub mod slot;
pub mod table;
pub mod types;
pub mod uids;

#[cfg(test)]
mod tests;

pub use account::Account;
pub use entry::{Entry, Refused, RemovalProgress, Session, Slot, TokenSlot, LOGIN_GRACE_SECS};
pub use host::process_start_time;
pub use issue::{InitMade, InitReport, Issued};
pub use table::{Phase, Request};
pub use types::{Channel, Linger, UnixTime};

use crate::audit::{Audit, AuditEvent, Counted, Stranger};
use crate::config::Config;
use crate::error::Result;
use crate::store::Store;
use host::{AccountTool, Records, SystemAccounts, SystemRecords};
use std::sync::Arc;

/// The helper: configuration, state, audit trail, and the machine it acts
/// on.
#[derive(Debug, Clone)]
pub struct Helper {
    /// The configuration in force.
    pub cfg: Config,
    /// The shared state.
    pub store: Store,
    /// The audit trail.
    pub audit: Audit,
    /// `useradd`, `userdel`, killing, sweeping.
    pub(crate) accounts: Arc<dyn AccountTool>,
    /// userdb records and grant keys.
    pub(crate) records: Arc<dyn Records>,
}

/// The helper's reply to a PAM request.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Granted.
    Ok(&'static str),
    /// Refused.
    Denied(&'static str),
}

/// What a password does ([`Helper::authenticate`]): a reply at once, or an
/// account to make before the reply. Only authentication can ask for an
/// account, so only its callers handle the second case.
#[derive(Debug, Clone)]
pub enum LoginOutcome {
    /// The reply, nothing to make.
    Reply(Verdict),
    /// The password was right and the token is consumed: the account must
    /// now be created ([`Helper::finish_login`]) by the account worker.
    CreateAccount(Box<Entry>),
}

/// Work for the account worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Remove this user's account (it is in [`Phase::Removing`]).
    Remove(String),
}

impl Helper {
    /// Opens the state folder named by `cfg`, acting on this machine.
    pub fn new(cfg: Config) -> Result<Helper> {
        let accounts = Arc::new(SystemAccounts::new(&cfg));
        let records = Arc::new(SystemRecords::new(&cfg));
        Helper::with_host(cfg, accounts, records)
    }

    /// Opens the state folder named by `cfg`, acting through `accounts`
    /// and `records`.
    pub fn with_host(
        cfg: Config,
        accounts: Arc<dyn AccountTool>,
        records: Arc<dyn Records>,
    ) -> Result<Helper> {
        let store = Store::open(&cfg.state_dir)?;
        let audit = Audit::new(&cfg.audit_log, &cfg.state_dir, &cfg.audit);
        // Recover the trail's end after a crash before anything is added.
        if let Err(e) = audit.check() {
            crate::log::error!("{e}");
        }
        Ok(Helper {
            cfg,
            store,
            audit,
            accounts,
            records,
        })
    }

    /// Appends an event to the audit trail (a failure is reported, not
    /// fatal: the action it records has happened — a removal, a session's
    /// end — and must not be undone for want of room to record it).
    pub(crate) fn log(&self, event: AuditEvent) {
        let (name, fields) = event.into_parts();
        let user = fields
            .get("user")
            .and_then(|u| u.as_str())
            .map(str::to_owned);
        if let Err(e) = self.audit.record(&name, fields) {
            crate::log::error!(
                "{e} (not recorded: {name}{})",
                user.map(|u| format!(" {u}")).unwrap_or_default()
            );
        }
    }

    /// Appends an event a login depends on: a login is granted only once
    /// its line is durable, so while the trail cannot be written (a full
    /// or read-only file system) every login is refused. Removals never
    /// come here: they go ahead unrecorded rather than leave an account
    /// behind (see docs/THREAT_MODEL.md, "The audit trail").
    pub(crate) fn log_for_login(&self, event: AuditEvent) -> Result<()> {
        let (name, fields) = event.into_parts();
        let user = fields
            .get("user")
            .and_then(|u| u.as_str())
            .map(str::to_owned);
        self.audit.record_durable(&name, fields).map_err(|e| {
            crate::log::error!(
                "{e}: refusing the login of {} (its {name} line cannot be recorded)",
                user.as_deref().unwrap_or("?")
            );
            e
        })
    }

    /// Counts an attempt by a stranger in the audit trail's summaries
    /// instead of writing a line for it (strangers must not grow the trail
    /// or the system log without bound).
    pub(crate) fn log_stranger(&self, what: Stranger, user: &str, source: &str) {
        if let Err(e) = self.audit.stranger(what, user, source) {
            crate::log::error!("{e}");
        }
    }

    /// Counts a refused attempt at a known name that changed nothing (see
    /// [`Counted`]) in the audit trail's summaries: anyone who learnt the
    /// name can repeat it from any number of sources.
    pub(crate) fn log_counted(&self, c: Counted<'_>) {
        if let Err(e) = self.audit.refused(c) {
            crate::log::error!("{e}");
        }
    }

    /// Records a PAM request that was refused before reaching the state
    /// (wrong service, rate limit).
    pub fn log_refusal(&self, kind: &str, user: &str, reason: &str, source: &str) {
        self.log(AuditEvent::Refuse {
            request: kind.to_owned(),
            user: Some(user.to_owned()),
            key: None,
            reason: reason.to_owned(),
            source: Some(source.to_owned()),
            channel: None,
        });
    }

    /// A snapshot of every entry.
    pub fn status(&self) -> Result<Vec<Entry>> {
        Ok(self.store.lock()?.state.users.values().cloned().collect())
    }
}
