//! The handler of each verb, run once the gate's checks passed; and the
//! channel a `hello` announces, which every later verb of the connection
//! acts for.

use super::types::{wrong_row, Checked, Conn, Shared};
use crate::config::Config;
use crate::error::Result;
use crate::lifecycle::{Channel, Entry, Phase, UnixTime};
use crate::log::warn;
use codext_core::channel_wire::{
    ChannelRequest, Refusal, Reply, ToPublish, CHANNEL_PROTOCOL, MAX_LIVE, MAX_WAIT_MS,
};
use codext_core::Fingerprint;
use std::time::Duration;

/// Most puzzles out on this channel (pending or armed) at once.
pub const MAX_PENDING: usize = 32;

impl Shared {
    fn channel_entries(&self, channel: Channel) -> Result<Vec<Entry>> {
        Ok(self
            .helper
            .status()?
            .into_iter()
            .filter(|e| {
                e.channel() == channel && matches!(e.phase(), Phase::Pending | Phase::Armed)
            })
            .collect())
    }

    pub(super) fn hello(&self, conn: &mut Conn, req: ChannelRequest, _: Checked) -> Result<Reply> {
        let ChannelRequest::Hello { version, channel } = req else {
            return Ok(wrong_row());
        };
        if version != CHANNEL_PROTOCOL {
            return Ok(Reply::refused(
                Refusal::Version,
                format!("this helper speaks channel protocol {CHANNEL_PROTOCOL}, not {version}"),
            ));
        }
        let (channel, d) = match announced(&self.helper.cfg, channel.as_deref()) {
            Ok(c) => c,
            Err(why) => {
                warn!("channel socket: refused a hello: {why}");
                return Ok(Reply::refused(Refusal::NotAllowed, why));
            }
        };
        conn.channel = Some(channel);
        let ms = |t: Duration| u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        Ok(Reply::Hello {
            version: CHANNEL_PROTOCOL,
            api_url: d.api_url.clone(),
            metadata_url: d.metadata_url.clone(),
            droplet_id: d.droplet_id,
            poll_busy_ms: ms(d.poll_busy),
            poll_idle_ms: ms(d.poll_idle),
            hot_for_ms: ms(d.hot_for),
            budget_share_percent: d.budget_share,
            budget_reserve: d.budget_reserve,
        })
    }

    pub(super) fn request(
        &self,
        conn: &mut Conn,
        _: ChannelRequest,
        checked: Checked,
    ) -> Result<Reply> {
        let Checked::Key { key, fp, profile } = checked else {
            return Ok(wrong_row());
        };
        let channel = conn.greeted()?;
        let live = self.channel_entries(channel)?;
        if live.iter().any(|e| e.client_fingerprint() == fp) {
            return Ok(Reply::Ok {
                user: None,
                note: "a puzzle for this key is already out".into(),
            });
        }
        if live.len() >= MAX_PENDING {
            return Ok(self.refuse(
                Refusal::RateLimited,
                channel,
                "puzzle",
                Some(fp),
                None,
                "too many puzzles out on this channel",
            ));
        }
        match self
            .helper
            .issue_profile(&key, None, channel, None, &profile, UnixTime::now())
        {
            Ok(issued) => Ok(Reply::Ok {
                user: Some(issued.user),
                note: "issued".into(),
            }),
            Err(e) => Ok(Reply::refused(Refusal::Failed, e.to_string())),
        }
    }

    pub(super) fn answer(
        &self,
        conn: &mut Conn,
        req: ChannelRequest,
        checked: Checked,
    ) -> Result<Reply> {
        let (ChannelRequest::Answer { text }, Checked::User(_)) = (req, checked) else {
            return Ok(wrong_row());
        };
        let channel = conn.greeted()?;
        match self.helper.answer(&text, channel.as_str(), UnixTime::now()) {
            Ok(entry) => Ok(Reply::Ok {
                user: Some(entry.user().to_string()),
                note: "armed".into(),
            }),
            Err(e) => Ok(Reply::refused(Refusal::Failed, e.to_string())),
        }
    }

    pub(super) fn next(&self, conn: &mut Conn, _: ChannelRequest, _: Checked) -> Result<Reply> {
        let channel = conn.greeted()?;
        let puzzle =
            self.helper
                .unpublished(channel)?
                .into_iter()
                .next()
                .map(|(user, id, text)| ToPublish {
                    user,
                    id: codext_core::encoding::hex(&id),
                    text,
                });
        Ok(Reply::Next { puzzle })
    }

    pub(super) fn published(
        &self,
        _: &mut Conn,
        _: ChannelRequest,
        checked: Checked,
    ) -> Result<Reply> {
        let Checked::User(user) = checked else {
            return Ok(wrong_row());
        };
        self.helper.mark_published(&user)?;
        Ok(Reply::Ok {
            user: Some(user),
            note: "published".into(),
        })
    }

    pub(super) fn live(&self, conn: &mut Conn, _: ChannelRequest, _: Checked) -> Result<Reply> {
        let entries = self.channel_entries(conn.greeted()?)?;
        let mut puzzles = Vec::new();
        let mut keys = Vec::new();
        let mut armed = Vec::new();
        for e in &entries {
            if let Some(fp) = Fingerprint::parse(e.client_fingerprint()) {
                keys.push(codext_core::encoding::hex(&fp.0[..16]));
            }
            match e.phase() {
                Phase::Pending => {
                    puzzles.push(codext_core::encoding::hex(&e.token().puzzle_id[..4]))
                }
                _ => armed.push(e.user().to_string()),
            }
        }
        let complete =
            puzzles.len() <= MAX_LIVE && keys.len() <= MAX_LIVE && armed.len() <= MAX_LIVE;
        for l in [&mut puzzles, &mut keys, &mut armed] {
            l.truncate(MAX_LIVE);
        }
        Ok(Reply::Live {
            puzzles,
            keys,
            armed,
            complete,
        })
    }

    pub(super) fn wait(&self, _: &mut Conn, req: ChannelRequest, _: Checked) -> Result<Reply> {
        let ChannelRequest::Wait { timeout_ms } = req else {
            return Ok(wrong_row());
        };
        Ok(Reply::Wait {
            woken: crate::wake::wait(Duration::from_millis(timeout_ms.min(MAX_WAIT_MS))),
        })
    }
}

/// The channel a `hello` announces (none: `digitalocean`, as a channel
/// process of an earlier release means), with its settings; refused, with
/// the reason, unless it is a channel this helper knows and whose table
/// (`[channels.<name>]`) is on.
fn announced<'c>(
    cfg: &'c Config,
    name: Option<&str>,
) -> std::result::Result<(Channel, &'c crate::config::DigitalOcean), String> {
    let name = name.unwrap_or(Channel::DigitalOcean.as_str());
    let channel = match Channel::parse(name) {
        // The manual channel has no process: `issue` and `answer` are its.
        Some(c) if c != Channel::Manual => c,
        _ => {
            let shown: String = name.chars().take(32).filter(|c| !c.is_control()).collect();
            return Err(format!(
                "unknown channel {shown:?}: this helper serves only the channel {}",
                Channel::DigitalOcean
            ));
        }
    };
    match cfg.channel(channel) {
        Some(settings) => Ok((channel, settings)),
        None => Err(format!(
            "the channel {channel} is not configured here ([channels.{channel}] enabled = true in helper.toml)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        Config::from_toml_str(text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn given_a_hello_without_a_channel_then_it_means_digitalocean() {
        let on = config("[channels.digitalocean]\nenabled = true\ndroplet_id = 7\n");
        let (channel, settings) = announced(&on, None).unwrap();
        assert_eq!(channel, Channel::DigitalOcean);
        assert_eq!(settings.droplet_id, 7);
        let (channel, _) = announced(&on, Some("digitalocean")).unwrap();
        assert_eq!(channel, Channel::DigitalOcean);
        // The earlier spelling of the table is the same channel.
        let earlier = config("[digitalocean]\nenabled = true\n");
        assert_eq!(announced(&earlier, None).unwrap().0, Channel::DigitalOcean);
    }

    #[test]
    fn given_a_hello_naming_an_unknown_channel_then_refused_with_the_reason() {
        let on = config("[channels.digitalocean]\nenabled = true\n");
        for name in ["aws", "manual", "", "digitalocean\n", "DigitalOcean"] {
            let why = announced(&on, Some(name)).unwrap_err();
            assert!(why.starts_with("unknown channel"), "{name:?}: {why}");
            assert!(why.contains("only the channel digitalocean"), "{why}");
        }
        let long = "x".repeat(4000);
        assert!(announced(&on, Some(&long)).unwrap_err().len() < 128);
    }

    #[test]
    fn given_a_hello_naming_a_channel_not_configured_then_refused_with_the_reason() {
        for off in [
            "",
            "[channels.digitalocean]\nenabled = false\n",
            "[digitalocean]\nenabled = false\n",
        ] {
            for name in [None, Some("digitalocean")] {
                let why = announced(&config(off), name).unwrap_err();
                assert_eq!(
                    why,
                    "the channel digitalocean is not configured here \
                     ([channels.digitalocean] enabled = true in helper.toml)"
                );
            }
        }
    }
}
