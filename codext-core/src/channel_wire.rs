//! The channel socket protocol, version 1: what the unprivileged
//! `codext-channel` process may ask the root `codext-helper`
//! (`docs/PROTOCOL.md`, "The channel socket").
//!
//! Frames are [`codext_wire::read_frame`]'s (4-byte length, at most 4 KiB);
//! each body is one JSON object. A connection starts with `hello` (the
//! version check) and then carries any number of requests, one reply each.
//! The helper re-validates every field, allows each verb only in the phase
//! it belongs to, and answers a refusal with a [`Refusal`] code that says
//! why; a refused request changes nothing.
//!
//! Nothing here is secret: tokens never cross this socket (the helper keeps
//! only their hashes, the channel sees only puzzles and answers, which are
//! public by design).

use serde::{Deserialize, Serialize};

/// The channel protocol version both sides speak.
pub const CHANNEL_PROTOCOL: u32 = 1;
/// Longest OpenSSH public key line accepted (an RSA-16384 key is ~2.8 KB).
pub const MAX_KEY_LINE: usize = 3000;
/// Longest wait a [`ChannelRequest::Wait`] may ask for (below the helper's
/// 30 s idle timeout of a connection and the channel's 20 s read timeout).
pub const MAX_WAIT_MS: u64 = 15_000;
/// Most entries of each list in a [`Reply::Live`].
pub const MAX_LIVE: usize = 40;

/// A request from the channel process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelRequest {
    /// First request of every connection.
    Hello {
        /// [`CHANNEL_PROTOCOL`].
        version: u32,
        /// The channel this process carries (`digitalocean`): the helper
        /// serves it only if that channel is configured, and records its
        /// name with what it issues. Absent (a channel process of an
        /// earlier release): `digitalocean`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
    },
    /// An agent asked for a puzzle (a request tag) and the account holds
    /// this `codext-…` key whose fingerprint matches; the helper checks
    /// its own allow-list.
    Request {
        /// The key's OpenSSH public key line, as the account lists it.
        key: String,
        /// The key's name in the account.
        name: String,
        /// The grant profile the request names; absent (an
        /// earlier channel process, or an agent that named none): `shell`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
    /// An answer text read from an answer tag.
    Answer {
        /// `user-<hex>-<proof>`.
        text: String,
    },
    /// The next puzzle to publish, if any.
    Next {},
    /// The puzzle `id` of `user` is now published.
    Published {
        /// The user the puzzle is for.
        user: String,
        /// Its puzzle id, 32 hex.
        id: String,
    },
    /// What stands behind the tags now: live puzzles and armed users.
    Live {},
    /// Waits up to `timeout_ms` (at most [`MAX_WAIT_MS`]) for a knock: an
    /// SSH attempt at an unknown codext name, which an agent makes right
    /// after posting its request or answer. Answered with [`Reply::Wait`].
    Wait {
        /// How long to wait, ms.
        timeout_ms: u64,
    },
}

impl ChannelRequest {
    /// The verb, for logs.
    pub fn verb(&self) -> &'static str {
        match self {
            ChannelRequest::Hello { .. } => "hello",
            ChannelRequest::Request { .. } => "request",
            ChannelRequest::Answer { .. } => "answer",
            ChannelRequest::Next {} => "next",
            ChannelRequest::Published { .. } => "published",
            ChannelRequest::Live {} => "live",
            ChannelRequest::Wait { .. } => "wait",
        }
    }

    /// Every verb of this version.
    pub const VERBS: [&'static str; 7] = [
        "hello",
        "request",
        "answer",
        "next",
        "published",
        "live",
        "wait",
    ];

    /// Decodes a frame body; a refusal says whether the verb is unknown
    /// or the request malformed.
    pub fn decode(body: &[u8]) -> Result<ChannelRequest, (Refusal, String)> {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| (Refusal::Malformed, format!("not a JSON object: {e}")))?;
        let verb = value
            .get("verb")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| (Refusal::Malformed, "no \"verb\" string".to_owned()))?;
        if !Self::VERBS.contains(&verb) {
            let shown: String = verb.chars().take(32).filter(|c| !c.is_control()).collect();
            return Err((Refusal::UnknownVerb, format!("unknown verb {shown:?}")));
        }
        serde_json::from_value(value).map_err(|e| (Refusal::Malformed, e.to_string()))
    }

    /// The frame body.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Why the helper refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Not JSON, a field missing or of the wrong type, a value out of range.
    Malformed,
    /// A verb this version does not have.
    UnknownVerb,
    /// Another protocol version.
    Version,
    /// Valid, but not now (before `hello`, a puzzle not waiting to be
    /// published, …).
    OutOfPhase,
    /// The key is not on the allow-list, or the channel `hello` names is
    /// not one this helper serves.
    NotAllowed,
    /// About a user this server does not know, or that is not on this
    /// channel.
    Foreign,
    /// Too many requests; try again later.
    RateLimited,
    /// The request was valid but failed (a wrong proof, the helper's own
    /// error).
    Failed,
}

/// One puzzle to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToPublish {
    /// The user it is for.
    pub user: String,
    /// Puzzle id, 32 hex.
    pub id: String,
    /// The puzzle's text form.
    pub text: String,
}

/// The helper's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// To `hello`: the channel's settings (not secret; the token is the
    /// channel's own).
    Hello {
        /// [`CHANNEL_PROTOCOL`].
        version: u32,
        /// API base URL.
        api_url: String,
        /// Metadata service base URL.
        metadata_url: String,
        /// The droplet; 0: ask the metadata service.
        droplet_id: u64,
        /// Poll period while something is in flight, ms.
        poll_busy_ms: u64,
        /// Poll period otherwise, ms.
        poll_idle_ms: u64,
        /// Stay at the busy period this long after anything happened, ms.
        hot_for_ms: u64,
        /// Share of the token's hourly budget this server may spend, %.
        budget_share_percent: u32,
        /// Requests always kept for publishing.
        budget_reserve: u64,
    },
    /// Done; `user` names the user concerned, if any.
    Ok {
        /// The user issued for, armed, or published.
        user: Option<String>,
        /// A note (e.g. "a puzzle for this key is already out").
        note: String,
    },
    /// To `next`.
    Next {
        /// The next puzzle to publish, if any.
        puzzle: Option<ToPublish>,
    },
    /// To `live`.
    Live {
        /// First 8 hex of every puzzle still waiting for its answer.
        puzzles: Vec<String>,
        /// First 32 hex of the fingerprints of the keys those puzzles are
        /// for.
        keys: Vec<String>,
        /// Every armed user (waiting for its login).
        armed: Vec<String>,
        /// False when a list was cut at [`MAX_LIVE`]: the channel must not
        /// withdraw anything this pass.
        complete: bool,
    },
    /// To `wait`.
    Wait {
        /// A knock came.
        woken: bool,
    },
    /// Refused; nothing changed.
    Refused {
        /// Why.
        code: Refusal,
        /// What happened, for the channel's log.
        reason: String,
    },
}

impl Reply {
    /// A refusal.
    pub fn refused(code: Refusal, reason: impl Into<String>) -> Reply {
        Reply::Refused {
            code,
            reason: reason.into(),
        }
    }

    /// The frame body.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a frame body.
    pub fn decode(body: &[u8]) -> Option<Reply> {
        serde_json::from_slice(body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_requests_then_round_trip_and_garbage_is_classified() {
        for r in [
            ChannelRequest::Hello {
                version: 1,
                channel: None,
            },
            ChannelRequest::Hello {
                version: 1,
                channel: Some("digitalocean".into()),
            },
            ChannelRequest::Request {
                key: "ssh-rsa AAAA".into(),
                name: "codext-a".into(),
                profile: None,
            },
            ChannelRequest::Request {
                key: "ssh-rsa AAAA".into(),
                name: "codext-a".into(),
                profile: Some("ci".into()),
            },
            ChannelRequest::Answer { text: "x".into() },
            ChannelRequest::Next {},
            ChannelRequest::Published {
                user: "u".into(),
                id: "00".into(),
            },
            ChannelRequest::Live {},
            ChannelRequest::Wait { timeout_ms: 5 },
        ] {
            assert_eq!(ChannelRequest::decode(&r.encode()).unwrap(), r);
        }
        let code = |b: &[u8]| ChannelRequest::decode(b).unwrap_err().0;
        assert_eq!(code(br#"{"verb":"useradd"}"#), Refusal::UnknownVerb);
        assert_eq!(code(b"\xff\x00"), Refusal::Malformed);
        assert_eq!(code(br#"{"verb":3}"#), Refusal::Malformed);
        assert_eq!(code(br#"{"verb":"answer"}"#), Refusal::Malformed);
        assert_eq!(code(br#"{"verb":"next","extra":1}"#), Refusal::Malformed);
        // A request of an earlier channel process (no profile) still decodes.
        assert_eq!(
            ChannelRequest::decode(br#"{"verb":"request","key":"k","name":"n"}"#).unwrap(),
            ChannelRequest::Request {
                key: "k".into(),
                name: "n".into(),
                profile: None
            }
        );
        // A hello of an earlier channel process (no channel) still
        // decodes, and one without a channel encodes as it did.
        let old = br#"{"verb":"hello","version":1}"#;
        assert_eq!(
            ChannelRequest::decode(old).unwrap(),
            ChannelRequest::Hello {
                version: 1,
                channel: None
            }
        );
        assert_eq!(ChannelRequest::decode(old).unwrap().encode(), old);
        let refused = Reply::refused(Refusal::Foreign, "no");
        assert_eq!(Reply::decode(&refused.encode()), Some(refused));
    }
}
