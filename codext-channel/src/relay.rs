//! The seam between the helper and a cloud: what every channel does, over
//! a [`Carrier`] that knows where agents post and read.
//!
//! One pass ([`relay`]):
//! 1. publishes the puzzles the helper has waiting (`next`, then the
//!    carrier publishes, then `published`);
//! 2. reads what agents posted ([`Carrier::read`]) and hands each answer
//!    (`answer`) and each request for a puzzle (`request`, once the
//!    carrier has found the key it names) to the helper, which re-checks
//!    everything;
//! 3. publishes what those requests just issued (an agent waits for it);
//! 4. asks the helper what is still live (`live`) and lets the carrier take
//!    down what was handled and whatever nothing live stands behind.
//!
//! The DigitalOcean pass ([`crate::pass::Pass`]) is one carrier; a second
//! cloud implements [`Carrier`] and reuses all of this (see
//! `docs/ARCHITECTURE.md`). The helper's side of every step is the same
//! channel socket whatever the carrier.

use crate::{ChannelError, Result};
use codext_core::channel_wire::{ChannelRequest, Reply, ToPublish};
use codext_core::encoding::hex;
use codext_do::budget::Activity;

/// Puzzles published per pass at most.
pub const MAX_PUBLISH: usize = 16;

/// Something an agent posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// An answer (`user-<hex>-<proof>`), not yet checked.
    Answer {
        /// Its text.
        text: String,
        /// The carrier's own name for it (to take it down).
        item: String,
    },
    /// A request for a puzzle for the key with this fingerprint prefix.
    Request {
        /// The first 16 bytes of the key's SHA-256 fingerprint.
        key_prefix: [u8; 16],
        /// The grant profile asked for (`shell` when the
        /// request names none).
        profile: codext_core::ProfileName,
        /// The carrier's own name for it.
        item: String,
    },
}

impl Posted {
    /// The carrier's name for the item.
    pub fn item(&self) -> &str {
        match self {
            Posted::Answer { item, .. } | Posted::Request { item, .. } => item,
        }
    }
}

/// What the helper says is still live (`live`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// Ids (first 8 hex) of the puzzles still waiting for an answer.
    pub puzzles: Vec<String>,
    /// Users armed and not yet logged in.
    pub armed: Vec<String>,
    /// Fingerprint prefixes (32 hex) of keys with a puzzle out.
    pub keys: Vec<String>,
    /// True when the lists are the whole truth (false: only a part, and
    /// nothing may be taken down for not being in them).
    pub complete: bool,
}

/// Where agents post and read: the cloud side of a channel.
pub trait Carrier {
    /// Makes `puzzle` readable by its agent.
    fn publish(&mut self, puzzle: &ToPublish) -> Result<()>;
    /// What agents posted since the last pass.
    fn read(&mut self) -> Result<Vec<Posted>>;
    /// The public key (OpenSSH line) and name of the key whose fingerprint
    /// starts with `prefix`, if the cloud knows one; the helper decides
    /// from its own allow-list whether it gets a puzzle.
    fn find_key(&mut self, prefix: &[u8; 16]) -> Result<Option<(String, String)>>;
    /// The helper accepted `answer` for `user` (a carrier may tell the
    /// agent so).
    fn accepted(&mut self, _answer: &Posted, _user: &str) -> Result<()> {
        Ok(())
    }
    /// Takes down what was `handled` and what nothing in `live` stands
    /// behind; says whether a login is in flight.
    fn clear(&mut self, handled: &[Posted], live: &Live) -> Result<bool>;
}

/// The helper's channel socket, as the relay uses it (the real one is
/// [`crate::link::Link`]).
pub trait HelperLink {
    /// One request, its reply.
    fn call(&mut self, req: &ChannelRequest) -> Result<Reply>;
}

impl HelperLink for crate::link::Link {
    fn call(&mut self, req: &ChannelRequest) -> Result<Reply> {
        crate::link::Link::call(self, req)
    }
}

fn unexpected(verb: &str, r: &Reply) -> ChannelError {
    ChannelError::Helper(format!("{verb}: unexpected reply {r:?}"))
}

/// One pass (see the module's text): whether anything happened, whether a
/// login is in flight.
pub fn relay(carrier: &mut impl Carrier, helper: &mut impl HelperLink) -> Result<Activity> {
    let mut happened = publish(carrier, helper)? > 0;
    let posted = carrier.read()?;
    for p in &posted {
        match p {
            Posted::Answer { text, .. } => take_answer(carrier, helper, p, text)?,
            Posted::Request {
                key_prefix,
                profile,
                ..
            } => take_request(carrier, helper, key_prefix, profile)?,
        }
    }
    happened |= !posted.is_empty();
    happened |= publish(carrier, helper)? > 0;
    let live = live(helper)?;
    let in_flight = carrier.clear(&posted, &live)?;
    Ok(Activity {
        happened,
        in_flight: in_flight || !live.puzzles.is_empty(),
    })
}

/// Publishes what waits; returns how many puzzles.
fn publish(carrier: &mut impl Carrier, helper: &mut impl HelperLink) -> Result<usize> {
    for n in 0..MAX_PUBLISH {
        let r = helper.call(&ChannelRequest::Next {})?;
        let Reply::Next { puzzle } = r else {
            return Err(unexpected("next", &r));
        };
        let Some(p) = puzzle else {
            return Ok(n);
        };
        carrier.publish(&p)?;
        let r = helper.call(&ChannelRequest::Published {
            user: p.user,
            id: p.id,
        })?;
        if let Reply::Refused { reason, .. } = r {
            codext_core::log_warn!("the helper refused \"published\": {reason}");
        }
    }
    Ok(MAX_PUBLISH)
}

fn take_answer(
    carrier: &mut impl Carrier,
    helper: &mut impl HelperLink,
    posted: &Posted,
    text: &str,
) -> Result<()> {
    match helper.call(&ChannelRequest::Answer {
        text: text.to_owned(),
    })? {
        Reply::Ok { user: Some(u), .. } => {
            if let Err(e) = carrier.accepted(posted, &u) {
                codext_core::log_warn!("telling the agent of {u} its answer was taken: {e}");
            }
        }
        Reply::Ok { .. } => {}
        Reply::Refused { code, reason } => {
            codext_core::log_info!("answer refused ({code:?}): {reason}")
        }
        other => return Err(unexpected("answer", &other)),
    }
    Ok(())
}

fn take_request(
    carrier: &mut impl Carrier,
    helper: &mut impl HelperLink,
    prefix: &[u8; 16],
    profile: &codext_core::ProfileName,
) -> Result<()> {
    // A key with a puzzle out needs no key lookup (the cloud may limit
    // them: DigitalOcean allows ten key listings a minute).
    if live(helper)?.keys.contains(&hex(prefix)) {
        return Ok(());
    }
    let Some((key, name)) = carrier.find_key(prefix)? else {
        codext_core::log_info!("a request for key {} the cloud does not know", hex(prefix));
        return Ok(());
    };
    // A shell request is sent as an earlier channel process sent it.
    let profile = (!profile.is_shell()).then(|| profile.to_string());
    match helper.call(&ChannelRequest::Request { key, name, profile })? {
        Reply::Ok { .. } => Ok(()),
        Reply::Refused { code, reason } => {
            codext_core::log_info!("request refused ({code:?}): {reason}");
            Ok(())
        }
        other => Err(unexpected("request", &other)),
    }
}

fn live(helper: &mut impl HelperLink) -> Result<Live> {
    match helper.call(&ChannelRequest::Live {})? {
        Reply::Live {
            puzzles,
            armed,
            keys,
            complete,
        } => Ok(Live {
            puzzles,
            armed,
            keys,
            complete,
        }),
        other => Err(unexpected("live", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A carrier with nothing of a cloud: an inbox agents post to and a
    /// board puzzles are pinned on.
    #[derive(Default)]
    struct Inbox {
        posted: Vec<Posted>,
        board: BTreeMap<String, String>,
        keys: BTreeMap<[u8; 16], (String, String)>,
        told: Vec<String>,
    }

    impl Carrier for Inbox {
        fn publish(&mut self, p: &ToPublish) -> Result<()> {
            self.board.insert(p.id[..8].to_owned(), p.text.clone());
            Ok(())
        }
        fn read(&mut self) -> Result<Vec<Posted>> {
            Ok(self.posted.clone())
        }
        fn find_key(&mut self, prefix: &[u8; 16]) -> Result<Option<(String, String)>> {
            Ok(self.keys.get(prefix).cloned())
        }
        fn accepted(&mut self, _: &Posted, user: &str) -> Result<()> {
            self.told.push(user.to_owned());
            Ok(())
        }
        fn clear(&mut self, handled: &[Posted], live: &Live) -> Result<bool> {
            self.posted.retain(|p| !handled.contains(p));
            if live.complete {
                self.board.retain(|id, _| live.puzzles.contains(id));
            }
            Ok(false)
        }
    }

    /// The helper's side, scripted: one puzzle issued per request of an
    /// allowed key, armed by the right answer.
    #[derive(Default)]
    struct Helper {
        waiting: Vec<ToPublish>,
        out: Vec<(String, String)>,
        armed: Vec<String>,
        calls: Vec<String>,
    }

    impl HelperLink for Helper {
        fn call(&mut self, req: &ChannelRequest) -> Result<Reply> {
            self.calls.push(req.verb().to_owned());
            Ok(match req {
                ChannelRequest::Next {} => Reply::Next {
                    puzzle: self.waiting.pop(),
                },
                ChannelRequest::Published { .. } => Reply::Ok {
                    user: None,
                    note: String::new(),
                },
                ChannelRequest::Request { name, .. } if name == "codext-allowed" => {
                    self.waiting.push(ToPublish {
                        user: "user-00112233aabb".into(),
                        id: "0123456789abcdef0123456789abcdef".into(),
                        text: "cdx1puzzle".into(),
                    });
                    self.out
                        .push(("01234567".into(), "user-00112233aabb".into()));
                    Reply::Ok {
                        user: None,
                        note: String::new(),
                    }
                }
                ChannelRequest::Answer { text } if text.starts_with("user-00112233aabb-") => {
                    self.out.clear();
                    self.armed.push("user-00112233aabb".into());
                    Reply::Ok {
                        user: Some("user-00112233aabb".into()),
                        note: String::new(),
                    }
                }
                ChannelRequest::Live {} => Reply::Live {
                    puzzles: self.out.iter().map(|(id, _)| id.clone()).collect(),
                    armed: self.armed.clone(),
                    keys: Vec::new(),
                    complete: true,
                },
                _ => Reply::refused(
                    codext_core::channel_wire::Refusal::NotAllowed,
                    "not in the script",
                ),
            })
        }
    }

    #[test]
    fn given_an_in_memory_inbox_then_a_request_is_published_answered_and_cleared_through_the_seam()
    {
        let mut inbox = Inbox::default();
        let mut helper = Helper::default();
        inbox
            .keys
            .insert([7; 16], ("ssh-rsa AAAA…".into(), "codext-allowed".into()));
        // The agent asks.
        let request = Posted::Request {
            key_prefix: [7; 16],
            profile: codext_core::ProfileName::shell(),
            item: "q7".into(),
        };
        inbox.posted.push(request);
        let a = relay(&mut inbox, &mut helper).unwrap();
        assert!(a.happened && a.in_flight);
        assert_eq!(
            inbox.board.get("01234567").map(String::as_str),
            Some("cdx1puzzle")
        );
        assert!(
            inbox.posted.is_empty(),
            "the handled request was taken down"
        );
        // The agent answers: the helper arms, the carrier is told, the
        // puzzle no longer waits and comes down.
        inbox.posted.push(Posted::Answer {
            text: "user-00112233aabb-0011".into(),
            item: "a1".into(),
        });
        let a = relay(&mut inbox, &mut helper).unwrap();
        assert!(a.happened && !a.in_flight);
        assert_eq!(inbox.told, ["user-00112233aabb"]);
        assert!(inbox.board.is_empty() && inbox.posted.is_empty());
        // Nothing posted: nothing happens, and no key lookup is asked.
        let before = helper.calls.len();
        let a = relay(&mut inbox, &mut helper).unwrap();
        assert!(!a.happened);
        assert_eq!(helper.calls[before..], ["next", "next", "live"]);
    }

    #[test]
    fn given_a_request_for_a_key_the_cloud_does_not_know_or_a_refused_answer_then_nothing_is_published(
    ) {
        let mut inbox = Inbox::default();
        let mut helper = Helper::default();
        inbox.posted.push(Posted::Request {
            key_prefix: [9; 16],
            profile: codext_core::ProfileName::shell(),
            item: "q9".into(),
        });
        inbox.posted.push(Posted::Answer {
            text: "user-ffffffffffff-00".into(),
            item: "a9".into(),
        });
        let a = relay(&mut inbox, &mut helper).unwrap();
        assert!(a.happened && !a.in_flight);
        assert!(inbox.board.is_empty() && inbox.told.is_empty());
        assert!(!helper.calls.iter().any(|c| c == "request"));
    }
}
