//! What the parts of the channel socket share: the connection's stage and
//! state, what a request must name and what the gate found it names, and
//! the state every connection shares (the helper, the token bucket).

use crate::error::{HelperError, Result};
use crate::lifecycle::{Channel, Helper};
use codext_core::channel_wire::{Refusal, Reply};
use codext_core::PublicKey;
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use std::time::Instant;

/// What every connection of the socket shares.
pub(super) struct Shared {
    pub(super) helper: Helper,
    pub(super) bucket: Mutex<(f64, Instant)>,
    pub(super) limited: AtomicUsize,
    pub(super) open: AtomicUsize,
}

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Connected; only `hello` may come.
    BeforeHello,
    /// `hello` accepted: the connection's version is known.
    AfterHello,
}

impl Stage {
    /// Why a verb not allowed now is refused.
    pub(super) fn refusal(self, verb: &str) -> String {
        match self {
            Stage::BeforeHello => format!("{verb} before hello"),
            // Only `hello`'s row leaves this stage out.
            Stage::AfterHello => format!("{verb} twice"),
        }
    }
}

/// One connection's state.
pub(super) struct Conn {
    /// The channel its `hello` announced; `None` before it.
    pub(super) channel: Option<Channel>,
}

impl Conn {
    pub(super) fn stage(&self) -> Stage {
        match self.channel {
            None => Stage::BeforeHello,
            Some(_) => Stage::AfterHello,
        }
    }

    /// The announced channel, for a verb allowed only after `hello` (the
    /// gate has checked the stage).
    pub(super) fn greeted(&self) -> Result<Channel> {
        self.channel.ok_or_else(|| {
            HelperError::System("internal: a verb of after hello ran before it".into())
        })
    }
}

/// What a request must name, checked by the gate before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Names {
    /// Nothing beyond its fields' types.
    Nothing,
    /// A well-formed key on the allow-list, and a profile that key may ask
    /// for (refused `malformed` or `not_allowed`).
    AllowedKey,
    /// A user of this server whose puzzle went out on this channel
    /// (refused `malformed` or `foreign`).
    ChannelUser,
    /// A puzzle of this channel waiting to be published, by user and id
    /// (refused `out_of_phase`).
    WaitingPuzzle,
}

/// A check's outcome: what the request names, or its refusal.
pub(super) type Checks = std::result::Result<Checked, Reply>;

/// What the gate found a request names, for its handler.
pub(super) enum Checked {
    /// [`Names::Nothing`].
    Nothing,
    /// [`Names::AllowedKey`]: the key, its fingerprint, the profile.
    Key {
        key: Box<PublicKey>,
        fp: String,
        profile: codext_core::ProfileName,
    },
    /// [`Names::ChannelUser`] and [`Names::WaitingPuzzle`]: the user.
    User(String),
}

pub(super) fn wrong_row() -> Reply {
    Reply::refused(Refusal::Failed, "internal: wrong row")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_stage_then_its_refusal_says_why() {
        assert_eq!(Stage::BeforeHello.refusal("live"), "live before hello");
        assert_eq!(Stage::AfterHello.refusal("hello"), "hello twice");
    }
}
