//! The channel's end of the helper's channel socket: one connection per
//! pass, `hello` first, then one request and one reply at a time
//! ([`codext_core::channel_wire`]).

use crate::{ChannelError, Result};
use codext_core::channel_wire::{ChannelRequest, Refusal, Reply, CHANNEL_PROTOCOL};
use codext_wire::{read_frame, write_frame};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// What the helper's `hello` told.
#[derive(Debug, Clone)]
pub struct Settings {
    /// API base URL.
    pub api_url: String,
    /// Metadata service base URL.
    pub metadata_url: String,
    /// The droplet; 0: ask the metadata service.
    pub droplet_id: u64,
    /// Poll period while something is in flight.
    pub poll_busy: Duration,
    /// Poll period otherwise.
    pub poll_idle: Duration,
    /// The polling policy.
    pub policy: crate::budget::Policy,
}

/// A connection to the helper.
#[derive(Debug)]
pub struct Link {
    stream: UnixStream,
}

impl Link {
    /// Connects and says `hello` as `channel` (the channel's name in the
    /// helper's configuration, `[channels.<channel>]`).
    pub fn connect(path: &Path, channel: &str) -> Result<(Link, Settings)> {
        let stream = UnixStream::connect(path)
            .map_err(|e| ChannelError::Helper(format!("cannot reach {}: {e}", path.display())))?;
        Link::over(stream, channel)
    }

    /// Says `hello` as `channel` over a connected stream (the fleet
    /// benchmark's stand-in helpers serve one end of a socket pair).
    pub fn over(stream: UnixStream, channel: &str) -> Result<(Link, Settings)> {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let mut link = Link { stream };
        let hello = |channel: Option<&str>| ChannelRequest::Hello {
            version: CHANNEL_PROTOCOL,
            channel: channel.map(str::to_owned),
        };
        let mut reply = link.call(&hello(Some(channel)))?;
        // A helper of an earlier release knows no `channel` field and
        // refuses such a hello as malformed (changing nothing); to it every
        // channel process is the DigitalOcean one, so that one says hello
        // again without its name.
        if channel == crate::CHANNEL
            && matches!(
                reply,
                Reply::Refused {
                    code: Refusal::Malformed,
                    ..
                }
            )
        {
            reply = link.call(&hello(None))?;
        }
        match reply {
            Reply::Hello {
                api_url,
                metadata_url,
                droplet_id,
                poll_busy_ms,
                poll_idle_ms,
                hot_for_ms,
                budget_share_percent,
                budget_reserve,
                ..
            } => Ok((
                link,
                Settings {
                    api_url,
                    metadata_url,
                    droplet_id,
                    poll_busy: Duration::from_millis(poll_busy_ms),
                    poll_idle: Duration::from_millis(poll_idle_ms),
                    policy: crate::budget::Policy {
                        busy: Duration::from_millis(poll_busy_ms),
                        idle: Duration::from_millis(poll_idle_ms),
                        hot_for: Duration::from_millis(hot_for_ms),
                        share: f64::from(budget_share_percent.clamp(1, 100)) / 100.0,
                        reserve: budget_reserve,
                    },
                },
            )),
            other => Err(ChannelError::Helper(format!("hello: {other:?}"))),
        }
    }

    /// One request, its reply.
    pub fn call(&mut self, req: &ChannelRequest) -> Result<Reply> {
        write_frame(&mut self.stream, &req.encode())
            .map_err(|e| ChannelError::Helper(format!("{}: {e}", req.verb())))?;
        let body = read_frame(&mut self.stream)
            .map_err(|e| ChannelError::Helper(format!("{}: {e}", req.verb())))?;
        Reply::decode(&body)
            .ok_or_else(|| ChannelError::Helper(format!("{}: an unreadable reply", req.verb())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in helper: answers each hello with `answer(channel)`, then
    /// stops.
    fn helper(stream: UnixStream, answer: fn(Option<String>) -> Reply) -> Vec<Option<String>> {
        let mut stream = stream;
        let mut seen = Vec::new();
        while let Ok(body) = read_frame(&mut stream) {
            let Ok(ChannelRequest::Hello { channel, .. }) = ChannelRequest::decode(&body) else {
                break;
            };
            seen.push(channel.clone());
            let reply = answer(channel);
            let done = matches!(reply, Reply::Hello { .. });
            if write_frame(&mut stream, &reply.encode()).is_err() || done {
                break;
            }
        }
        seen
    }

    fn settings() -> Reply {
        Reply::Hello {
            version: CHANNEL_PROTOCOL,
            api_url: "http://api".into(),
            metadata_url: String::new(),
            droplet_id: 7,
            poll_busy_ms: 1000,
            poll_idle_ms: 15000,
            hot_for_ms: 60000,
            budget_share_percent: 50,
            budget_reserve: 250,
        }
    }

    #[test]
    fn given_a_helper_then_hello_names_the_channel() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let h = std::thread::spawn(move || helper(theirs, |_| settings()));
        let (_, s) = Link::over(ours, crate::CHANNEL).unwrap();
        assert_eq!(s.droplet_id, 7);
        assert_eq!(h.join().unwrap(), [Some("digitalocean".to_owned())]);
    }

    #[test]
    fn given_a_helper_of_an_earlier_release_then_hello_is_said_again_without_the_name() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let h = std::thread::spawn(move || {
            helper(theirs, |channel| match channel {
                Some(_) => Reply::refused(Refusal::Malformed, "unknown field `channel`"),
                None => settings(),
            })
        });
        let (_, s) = Link::over(ours, crate::CHANNEL).unwrap();
        assert_eq!(s.droplet_id, 7);
        assert_eq!(h.join().unwrap(), [Some("digitalocean".to_owned()), None]);
    }
}
