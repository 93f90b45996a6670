//! The one-time token slot shared by a first login and every renewal:
//! arming it with a proof, checking a password against it, and its
//! deadlines; and the refusals of [`super::Entry`]'s transitions.

use super::types::{hex_array, hex_used, UnixTime};
use codext_core::token::{password_matches, proof_matches, PROOF_LEN};
use codext_wire::UserName;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One one-time token: what proves an answer, what checks the password,
/// and its deadlines. The first login and every renewal use this type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSlot {
    /// Puzzle id.
    #[serde(with = "hex_array")]
    pub puzzle_id: [u8; 16],
    /// Login hash of the token; `None` (written `""`) once it was used.
    #[serde(with = "hex_used")]
    pub login_hash: Option<[u8; 32]>,
    /// Expected proof.
    #[serde(with = "hex_array")]
    pub proof: [u8; PROOF_LEN],
    /// Deadline for a valid answer.
    pub answer_by: UnixTime,
    /// Deadline for the login, once armed.
    pub login_by: Option<UnixTime>,
}

/// Which token slot a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The puzzle that made the account.
    First,
    /// A further token for a live account.
    Renewal,
}

/// Why a transition did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The table does not permit the request in this phase (or the entry
    /// has no slot or account for it): the reason.
    OutOfPhase(&'static str),
    /// The renewal slot was answered already.
    AlreadyArmed,
    /// The slot's deadline passed; a renewal slot is cleared, a first
    /// login's entry is to be forgotten by the caller.
    Expired(Slot),
    /// The proof does not match (nothing is counted: the proof cannot be
    /// guessed, and counting would let anyone who writes to the channel
    /// burn other agents' puzzles).
    WrongProof(Slot),
    /// The password does not match; `exhausted` when that was the last
    /// attempt (a renewal slot is cleared, a first login's entry is to be
    /// forgotten by the caller).
    WrongPassword {
        /// Which slot.
        slot: Slot,
        /// Attempts so far.
        attempts: u32,
        /// The attempt limit is reached.
        exhausted: bool,
    },
}

impl Refused {
    /// The short reason given to the PAM module.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::OutOfPhase(why) => why,
            Refused::AlreadyArmed => "already armed",
            Refused::Expired(_) => "expired",
            Refused::WrongProof(_) => "wrong proof",
            Refused::WrongPassword { .. } => "wrong password",
        }
    }
}

impl TokenSlot {
    /// True once its deadline passed: the answer deadline while unarmed,
    /// the login deadline once armed.
    pub fn expired(&self, now: UnixTime) -> bool {
        now.past(self.login_by.unwrap_or(self.answer_by))
    }

    /// Arms the slot with a proof: login allowed until `now + armed_for`.
    pub(super) fn answer(
        &mut self,
        slot: Slot,
        proof: &[u8; PROOF_LEN],
        now: UnixTime,
        armed_for: Duration,
    ) -> Result<(), Refused> {
        if self.login_by.is_some() {
            return Err(Refused::AlreadyArmed);
        }
        if now.past(self.answer_by) {
            return Err(Refused::Expired(slot));
        }
        if !proof_matches(&self.proof, proof) {
            return Err(Refused::WrongProof(slot));
        }
        self.login_by = Some(now.plus(armed_for));
        Ok(())
    }

    /// Checks a password against an armed, unused, unexpired slot (the
    /// comparison is constant-time, of hashes).
    pub(super) fn check_password(
        &self,
        slot: Slot,
        user: &UserName,
        password: &[u8],
        now: UnixTime,
    ) -> Result<bool, Refused> {
        let Some(login_by) = self.login_by else {
            return Err(Refused::OutOfPhase("not armed"));
        };
        if now.past(login_by) {
            return Err(Refused::Expired(slot));
        }
        let Some(hash) = &self.login_hash else {
            return Err(Refused::OutOfPhase("token already used"));
        };
        Ok(password_matches(hash, user, password))
    }
}
