//! Which request is permitted in which phase: one table, consulted by every
//! entry point of the lifecycle before it looks at anything else (the way
//! OpenSSH's monitor keeps one dispatch table per state of the privileged
//! side and refuses whatever the table does not list).
//!
//! A cell that permits a request only lets the request be looked at: the
//! token slot still checks deadlines, proofs and passwords, and a live
//! account still needs `account_created`.

use serde::{Deserialize, Serialize};

/// Where a temporary user is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Puzzle issued, no valid answer yet. The name does not resolve.
    Pending,
    /// Valid answer received: the userdb record announces the name.
    Armed,
    /// Password accepted (token consumed); `useradd` is about to run or
    /// running. Recorded (and fsynced) before `useradd` starts, so a crash
    /// or a revoke at any point leaves a state that says an account may
    /// exist.
    Creating,
    /// Password accepted, account created, sessions may be open.
    Active,
    /// Being removed (processes killed, `userdel`); only the removal
    /// worker touches it.
    Removing,
}

impl Phase {
    /// Every phase, in the table's column order.
    pub const ALL: [Phase; 5] = [
        Phase::Pending,
        Phase::Armed,
        Phase::Creating,
        Phase::Active,
        Phase::Removing,
    ];

    /// Lowercase name (state file, audit trail, `status`).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Armed => "armed",
            Phase::Creating => "creating",
            Phase::Active => "active",
            Phase::Removing => "removing",
        }
    }

    fn column(self) -> usize {
        match self {
            Phase::Pending => 0,
            Phase::Armed => 1,
            Phase::Creating => 2,
            Phase::Active => 3,
            Phase::Removing => 4,
        }
    }
}

/// Every request that reads or changes one user's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Request {
    /// An answer on a channel or the command line (arms a token slot).
    Answer,
    /// A password from the PAM module (consumes an armed token).
    Authenticate,
    /// `useradd` for a consumed token (the creation lane).
    CreateAccount,
    /// PAM account management for a token login.
    Account,
    /// A key login within the grant (PAM account + session for a key).
    KeyAccount,
    /// `pam_open_session`.
    OpenSession,
    /// `pam_close_session`, or a session's sshd process died.
    CloseSession,
    /// A further token for a logged-in user (`issue --user`).
    Renew,
    /// A channel marks the puzzle as published.
    Publish,
    /// The operator, a failed reply or a foreign key ends the user.
    Revoke,
    /// The removal worker removes the account.
    Remove,
}

impl Request {
    /// Every request, for tests and documentation.
    pub const ALL: [Request; 11] = [
        Request::Answer,
        Request::Authenticate,
        Request::CreateAccount,
        Request::Account,
        Request::KeyAccount,
        Request::OpenSession,
        Request::CloseSession,
        Request::Renew,
        Request::Publish,
        Request::Revoke,
        Request::Remove,
    ];
}

/// A cell: permitted, or the reason it is not (said to the PAM module,
/// the channel or the operator; never a secret).
pub type Cell = Result<(), &'static str>;

const OK: Cell = Ok(());
const NOT_LIVE: Cell = Err("not a live codext account");
const NOT_WAITING: Cell = Err("not waiting for an answer");
const NOT_ARMED: Cell = Err("not armed");
const USED: Cell = Err("token already used");
const NOT_CREATING: Cell = Err("revoked before its account was made");
const NOT_LOGGED_IN: Cell = Err("not logged in: nothing to renew");
const NOT_PENDING: Cell = Err("no puzzle waiting to be published");
const NOT_REMOVING: Cell = Err("not being removed");

/// The table: one row per request, one column per phase
/// (pending, armed, creating, active, removing).
fn row(request: Request) -> [Cell; 5] {
    match request {
        // Active: only a renewal slot waits for an answer there.
        Request::Answer => [OK, NOT_WAITING, NOT_WAITING, OK, NOT_WAITING],
        // Active: only an armed renewal slot takes a password there.
        Request::Authenticate => [NOT_ARMED, OK, USED, OK, USED],
        Request::CreateAccount => [NOT_CREATING, NOT_CREATING, OK, NOT_CREATING, NOT_CREATING],
        Request::Account => [NOT_LIVE, NOT_LIVE, NOT_LIVE, OK, NOT_LIVE],
        Request::KeyAccount => [NOT_LIVE, NOT_LIVE, NOT_LIVE, OK, NOT_LIVE],
        Request::OpenSession => [NOT_LIVE, NOT_LIVE, NOT_LIVE, OK, NOT_LIVE],
        // Closing is always honoured: it can only lead to removal.
        Request::CloseSession => [OK, OK, OK, OK, OK],
        Request::Renew => [
            NOT_LOGGED_IN,
            NOT_LOGGED_IN,
            NOT_LOGGED_IN,
            OK,
            NOT_LOGGED_IN,
        ],
        Request::Publish => [OK, NOT_PENDING, NOT_PENDING, NOT_PENDING, NOT_PENDING],
        // A revoke ends a user in any phase (forgotten before an account
        // can exist, removed after).
        Request::Revoke => [OK, OK, OK, OK, OK],
        Request::Remove => [NOT_REMOVING, NOT_REMOVING, NOT_REMOVING, NOT_REMOVING, OK],
    }
}

/// Is `request` permitted in `phase`? The only place that says so.
pub fn permit(phase: Phase, request: Request) -> Cell {
    row(request)[phase.column()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table, written out once more by hand: a change to a cell
    /// must change this list too.
    const EXPECTED: [(Request, [bool; 5]); 11] = [
        (Request::Answer, [true, false, false, true, false]),
        (Request::Authenticate, [false, true, false, true, false]),
        (Request::CreateAccount, [false, false, true, false, false]),
        (Request::Account, [false, false, false, true, false]),
        (Request::KeyAccount, [false, false, false, true, false]),
        (Request::OpenSession, [false, false, false, true, false]),
        (Request::CloseSession, [true, true, true, true, true]),
        (Request::Renew, [false, false, false, true, false]),
        (Request::Publish, [true, false, false, false, false]),
        (Request::Revoke, [true, true, true, true, true]),
        (Request::Remove, [false, false, false, false, true]),
    ];

    #[test]
    fn given_every_phase_and_request_then_the_table_permits_exactly_the_listed_pairs() {
        let mut pairs = 0;
        for (request, row) in EXPECTED {
            for (phase, want) in Phase::ALL.into_iter().zip(row) {
                assert_eq!(
                    permit(phase, request).is_ok(),
                    want,
                    "{request:?} in {phase:?}"
                );
                pairs += 1;
            }
        }
        assert_eq!(pairs, Phase::ALL.len() * Request::ALL.len());
        assert!(Request::ALL
            .iter()
            .all(|r| EXPECTED.iter().any(|(e, _)| e == r)));
    }

    #[test]
    fn given_a_refused_pair_then_the_reason_names_what_is_wrong() {
        assert_eq!(
            permit(Phase::Pending, Request::Authenticate),
            Err("not armed")
        );
        assert_eq!(
            permit(Phase::Creating, Request::Authenticate),
            Err("token already used")
        );
        assert_eq!(
            permit(Phase::Removing, Request::OpenSession),
            Err("not a live codext account")
        );
    }

    #[test]
    fn given_phases_then_their_text_is_the_state_files() {
        for p in Phase::ALL {
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
    }
}
