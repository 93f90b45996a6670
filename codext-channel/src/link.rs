//! The channel's end of the helper's channel socket: one connection per
//! pass, `hello` first, then one request and one reply at a time
//! ([`codext_core::channel_wire`]).

use crate::{ChannelError, Result};
use codext_core::channel_wire::{ChannelRequest, Reply, CHANNEL_PROTOCOL};
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
    /// Connects and says `hello`.
    pub fn connect(path: &Path) -> Result<(Link, Settings)> {
        let stream = UnixStream::connect(path)
            .map_err(|e| ChannelError::Helper(format!("cannot reach {}: {e}", path.display())))?;
        Link::over(stream)
    }

    /// Says `hello` over a connected stream (the fleet benchmark's
    /// stand-in helpers serve one end of a socket pair).
    pub fn over(stream: UnixStream) -> Result<(Link, Settings)> {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let mut link = Link { stream };
        match link.call(&ChannelRequest::Hello {
            version: CHANNEL_PROTOCOL,
        })? {
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
