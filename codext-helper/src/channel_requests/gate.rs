//! The one gate of the channel socket (OpenSSH's `mon_table`): [`TABLE`]
//! has a row per verb, the stages of the connection it is allowed in and
//! what it must name; [`Shared::gate`] checks both for every verb alike
//! before the verb's handler runs, and a verb without a row is refused.

use super::types::{Checked, Checks, Conn, Names, Shared, Stage};
use crate::error::Result;
use codext_core::channel_wire::{ChannelRequest, Refusal, Reply};

impl Shared {
    /// The one gate of the channel socket: the request's row of [`TABLE`]
    /// says in which stages of the connection it is allowed and what it
    /// must name; both are checked here, for every verb alike, before its
    /// handler runs.
    pub(super) fn gate(&self, conn: &mut Conn, req: ChannelRequest) -> Result<Reply> {
        let Some(row) = TABLE.iter().find(|r| r.verb == req.verb()) else {
            return Ok(Reply::refused(
                Refusal::UnknownVerb,
                "not a verb this socket serves",
            ));
        };
        let stage = conn.stage();
        if !row.stages.contains(&stage) {
            return Ok(Reply::refused(Refusal::OutOfPhase, stage.refusal(row.verb)));
        }
        let checked = match self.check(row.names, conn, &req)? {
            Ok(c) => c,
            Err(refusal) => return Ok(refusal),
        };
        (row.handler)(self, conn, req, checked)
    }

    /// What a request names, checked ([`Names`]); `Err` is the refusal.
    fn check(&self, names: Names, conn: &Conn, req: &ChannelRequest) -> Result<Checks> {
        if names == Names::Nothing {
            return Ok(Ok(Checked::Nothing));
        }
        let channel = conn.greeted()?;
        match (names, req) {
            (Names::AllowedKey, ChannelRequest::Request { key, name, profile }) => {
                self.allowed_key(channel, key, name, profile.as_deref())
            }
            (Names::ChannelUser, ChannelRequest::Answer { text }) => {
                self.channel_user(channel, text)
            }
            (Names::WaitingPuzzle, ChannelRequest::Published { user, id }) => {
                self.waiting_puzzle(channel, user, id)
            }
            _ => Ok(Err(Reply::refused(Refusal::Failed, "internal: wrong row"))),
        }
    }
}

/// One row of the channel socket's dispatch table.
pub(super) struct Row {
    /// The verb (`ChannelRequest::verb`).
    verb: &'static str,
    /// The stages of the connection it is allowed in; in any other it is
    /// refused `out_of_phase`.
    stages: &'static [Stage],
    /// What it must name, checked before its handler.
    names: Names,
    /// What answers it once the checks above passed.
    handler: fn(&Shared, &mut Conn, ChannelRequest, Checked) -> Result<Reply>,
}

/// Every verb the channel socket serves and the checks made before each,
/// in one place (OpenSSH's `mon_table`): what is not here is refused. Every
/// frame, whatever its verb, is first charged to the token bucket
/// ([`Shared::connection`]).
pub(super) const TABLE: &[Row] = &[
    Row {
        verb: "hello",
        stages: &[Stage::BeforeHello],
        names: Names::Nothing,
        handler: Shared::hello,
    },
    Row {
        verb: "request",
        stages: &[Stage::AfterHello],
        names: Names::AllowedKey,
        handler: Shared::request,
    },
    Row {
        verb: "answer",
        stages: &[Stage::AfterHello],
        names: Names::ChannelUser,
        handler: Shared::answer,
    },
    Row {
        verb: "next",
        stages: &[Stage::AfterHello],
        names: Names::Nothing,
        handler: Shared::next,
    },
    Row {
        verb: "published",
        stages: &[Stage::AfterHello],
        names: Names::WaitingPuzzle,
        handler: Shared::published,
    },
    Row {
        verb: "live",
        stages: &[Stage::AfterHello],
        names: Names::Nothing,
        handler: Shared::live,
    },
    Row {
        verb: "wait",
        stages: &[Stage::AfterHello],
        names: Names::Nothing,
        handler: Shared::wait,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table, written out again: a change to any row shows here.
    #[test]
    fn given_the_channel_socket_table_then_every_verb_has_exactly_these_checks() {
        let rendered: Vec<String> = TABLE
            .iter()
            .map(|r| format!("{} stages={:?} names={:?}", r.verb, r.stages, r.names))
            .collect();
        assert_eq!(
            rendered,
            [
                "hello stages=[BeforeHello] names=Nothing",
                "request stages=[AfterHello] names=AllowedKey",
                "answer stages=[AfterHello] names=ChannelUser",
                "next stages=[AfterHello] names=Nothing",
                "published stages=[AfterHello] names=WaitingPuzzle",
                "live stages=[AfterHello] names=Nothing",
                "wait stages=[AfterHello] names=Nothing",
            ]
        );
    }

    #[test]
    fn given_every_verb_of_the_protocol_then_the_table_has_its_row_once() {
        for verb in ChannelRequest::VERBS {
            assert_eq!(TABLE.iter().filter(|r| r.verb == verb).count(), 1, "{verb}");
        }
        assert_eq!(TABLE.len(), ChannelRequest::VERBS.len());
    }
}
