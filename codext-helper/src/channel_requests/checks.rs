//! What a request names, checked by the gate before its handler runs: a
//! key on the allow-list asking for a profile it may have, a user of this
//! server on this channel, a puzzle waiting to be published; and the
//! refusal that is counted in the audit trail's summaries, not written a
//! line each.

use super::types::{Checked, Checks, Shared};
use crate::error::Result;
use crate::lifecycle::Channel;
use codext_core::channel_wire::{Refusal, Reply, MAX_KEY_LINE};
use codext_core::{Answer, PublicKey};

impl Shared {
    /// Refuses a request (`key` or `user` names what it was about). The
    /// refusal changes nothing and whoever writes to the account can repeat
    /// it: it is counted in the audit trail's summaries, not written a line
    /// each.
    pub(super) fn refuse(
        &self,
        code: Refusal,
        channel: Channel,
        request: &str,
        key: Option<String>,
        user: Option<String>,
        reason: &str,
    ) -> Reply {
        self.helper.log_counted(crate::audit::Counted {
            request,
            user: user.as_deref(),
            key: key.as_deref(),
            result: reason,
            source: channel.as_str(),
        });
        Reply::refused(code, reason)
    }

    /// [`Names::AllowedKey`](super::types::Names::AllowedKey): a
    /// well-formed key on the allow-list, asking for a profile it may have.
    pub(super) fn allowed_key(
        &self,
        channel: Channel,
        line: &str,
        name: &str,
        profile: Option<&str>,
    ) -> Result<Checks> {
        if line.len() > MAX_KEY_LINE || name.len() > 255 {
            return Ok(Err(Reply::refused(
                Refusal::Malformed,
                "key line or name too long",
            )));
        }
        let Ok(key) = PublicKey::from_openssh(line) else {
            return Ok(Err(Reply::refused(
                Refusal::Malformed,
                "not an OpenSSH public key line",
            )));
        };
        let fp = key.fingerprint().to_string();
        let Some(d) = self.helper.cfg.channel(channel) else {
            return Ok(Err(Reply::refused(
                Refusal::NotAllowed,
                format!("the channel {channel} is not configured"),
            )));
        };
        let named = name.to_ascii_lowercase().starts_with("codext-");
        // The profile asked for; none: shell.
        let profile = match profile.map(codext_core::ProfileName::parse) {
            None => codext_core::ProfileName::shell(),
            Some(Ok(p)) => p,
            Some(Err(_)) => {
                return Ok(Err(Reply::refused(
                    Refusal::Malformed,
                    "not a profile name",
                )))
            }
        };
        // The key's own profiles; the opt-in for any codext key gives
        // shell only.
        let may: Vec<String> = match d.allowed_keys.profiles_of(&fp) {
            Some(p) => p,
            None if d.issue_to_any_codext_key && named => {
                vec![codext_core::profile::SHELL.to_owned()]
            }
            None => {
                return Ok(Err(self.refuse(
                    Refusal::NotAllowed,
                    channel,
                    "puzzle",
                    Some(fp),
                    None,
                    "key not on the allow-list",
                )))
            }
        };
        if !may.iter().any(|p| p == profile.as_str()) {
            return Ok(Err(self.refuse(
                Refusal::NotAllowed,
                channel,
                "puzzle",
                Some(fp),
                None,
                &format!(
                    "the key may not ask for the profile {profile} (allowed: {})",
                    may.join(", ")
                ),
            )));
        }
        Ok(Ok(Checked::Key {
            key: Box::new(key),
            fp,
            profile,
        }))
    }

    /// [`Names::ChannelUser`](super::types::Names::ChannelUser): an answer
    /// text naming a user of this server whose puzzle went out on this
    /// channel.
    pub(super) fn channel_user(&self, channel: Channel, text: &str) -> Result<Checks> {
        let Ok(answer) = Answer::parse(text) else {
            return Ok(Err(Reply::refused(
                Refusal::Malformed,
                "not an answer text",
            )));
        };
        let user = answer.user.to_string();
        let known = self
            .helper
            .status()?
            .into_iter()
            .find(|e| e.user().as_str() == user)
            .map(|e| e.channel() == channel);
        Ok(match known {
            None => {
                self.helper.log_stranger(
                    crate::audit::Stranger::UnknownUser,
                    &user,
                    channel.as_str(),
                );
                Err(Reply::refused(
                    Refusal::Foreign,
                    format!("{user} is not a user of this server"),
                ))
            }
            Some(false) => Err(self.refuse(
                Refusal::Foreign,
                channel,
                "answer",
                None,
                Some(user),
                "the user's puzzle went out on another channel",
            )),
            Some(true) => Ok(Checked::User(user)),
        })
    }

    /// [`Names::WaitingPuzzle`](super::types::Names::WaitingPuzzle): the
    /// puzzle `id` of `user`, of this channel, waiting to be published.
    pub(super) fn waiting_puzzle(&self, channel: Channel, user: &str, id: &str) -> Result<Checks> {
        let waiting = self
            .helper
            .unpublished(channel)?
            .into_iter()
            .any(|(u, i, _)| {
                u == user && codext_core::encoding::hex(&i) == id.to_ascii_lowercase()
            });
        Ok(if waiting {
            Ok(Checked::User(user.to_owned()))
        } else {
            Err(Reply::refused(
                Refusal::OutOfPhase,
                "no puzzle of that user and id is waiting to be published",
            ))
        })
    }
}
