//! The channel socket's listener: the channel user, the socket and its
//! folder, the peer's uid checked on every connection, the cap on
//! connections, each connection's loop of frames, and the token bucket
//! every frame is charged to before it is decoded.

use super::types::{Conn, Shared};
use crate::config::Config;
use crate::error::{HelperError, Result};
use crate::ids::{Gid, Uid};
use crate::lifecycle::Helper;
use crate::log::{error, info, warn};
use codext_core::channel_wire::{ChannelRequest, Refusal, Reply};
use codext_wire::{read_frame, write_frame};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Channel connections served at once.
pub const MAX_CONNECTIONS: usize = 4;
/// Requests allowed in a burst.
pub const BURST: f64 = 64.0;
/// Requests allowed per second, sustained.
pub const PER_SECOND: f64 = 32.0;
/// A connection idle this long is closed (the channel reconnects each pass).
const IDLE: Duration = Duration::from_secs(30);

/// The comment `init` gives the channel user: the Debian package's purge
/// removes an account of that name only when it carries this comment.
pub const CHANNEL_USER_COMMENT: &str = "codext DigitalOcean channel (never logs in)";

/// Creates the channel process's system user (`init`, so `setup`),
/// whether or not the channel is on: the package ships
/// `codext-channel.service`, which runs as that user, and turning the
/// channel on later must not need another account-making step. The
/// account can do nothing by itself (no shell, no home, password locked;
/// the helper serves the channel socket only when the channel is on).
pub fn ensure_channel_user(cfg: &Config) -> Result<()> {
    let a = &cfg.accounts;
    crate::accounts::ensure_system_account(
        &cfg.digitalocean.channel_user,
        CHANNEL_USER_COMMENT,
        (a.uid_min, a.uid_max),
    )?;
    Ok(())
}

/// Serves the channel socket on a thread of its own; if it cannot (no
/// channel user yet) it says why and tries again later.
pub fn spawn(helper: Helper) {
    let _ = std::thread::Builder::new()
        .name("channel-socket".into())
        .stack_size(256 * 1024)
        .spawn(move || loop {
            if let Err(e) = serve(&helper) {
                error!("channel socket not served: {e}");
            }
            std::thread::sleep(
                helper
                    .cfg
                    .digitalocean
                    .poll_idle
                    .max(Duration::from_secs(1)),
            );
        });
}

fn serve(helper: &Helper) -> Result<()> {
    let d = &helper.cfg.digitalocean;
    let (uid, gid) = crate::accounts::killer_ids(&d.channel_user).map_err(|_| {
        HelperError::Config(format!(
            "the channel user {} is not in /etc/passwd: run `codext-helper init`",
            d.channel_user
        ))
    })?;
    let listener = bind(&d.channel_socket, gid)?;
    info!(
        "channel socket on {} for uid {uid}",
        d.channel_socket.display()
    );
    let shared = Arc::new(Shared {
        helper: helper.clone(),
        bucket: Mutex::new((BURST, Instant::now())),
        limited: AtomicUsize::new(0),
        open: AtomicUsize::new(0),
    });
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(IDLE));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(3)));
        let peer = getsockopt(&stream, PeerCredentials).map(|c| Uid::from_raw(c.uid()));
        if peer != Ok(uid) {
            match &peer {
                Ok(uid) => warn!("channel socket: refused a peer with uid {uid}"),
                Err(e) => warn!("channel socket: refused a peer without credentials ({e})"),
            }
            let reply =
                Reply::refused(Refusal::Foreign, "this socket serves the channel user only");
            let _ = write_frame(&mut stream, &reply.encode());
            continue;
        }
        if shared.open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            let reply = Reply::refused(Refusal::RateLimited, "too many channel connections");
            let _ = write_frame(&mut stream, &reply.encode());
            continue;
        }
        let s = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("channel-conn".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                s.connection(stream);
                s.open.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared.open.fetch_sub(1, Ordering::SeqCst);
        }
    }
    Ok(())
}

/// The socket: its folder root:`gid` 0750, itself root:`gid` 0660, with
/// no window in which it exists with looser permissions.
fn bind(path: &Path, gid: Gid) -> Result<UnixListener> {
    let dir = path
        .parent()
        .ok_or_else(|| HelperError::System(format!("{} has no folder", path.display())))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| HelperError::system(format!("cannot create {}", dir.display()), e))?;
    let group = Some(nix::unistd::Gid::from_raw(gid.as_raw()));
    nix::unistd::chown(dir, Some(nix::unistd::Uid::from_raw(0)), group)
        .map_err(|e| HelperError::system(format!("cannot chown {}", dir.display()), e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
        .map_err(|e| HelperError::system(format!("cannot chmod {}", dir.display()), e))?;
    let listener = crate::daemon::listen_fresh(path)?;
    nix::unistd::chown(path, None, group)
        .map_err(|e| HelperError::system(format!("cannot chown {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| HelperError::system(format!("cannot chmod {}", path.display()), e))?;
    Ok(listener)
}

impl Shared {
    fn connection(&self, mut stream: UnixStream) {
        let mut conn = Conn { channel: None };
        loop {
            let Ok(frame) = read_frame(&mut stream) else {
                return;
            };
            // Charged before the frame is even decoded: beyond the bucket
            // every frame is refused unread (PROTOCOL.md), whatever its verb.
            let reply = if !self.take_token() {
                let n = self.limited.fetch_add(1, Ordering::Relaxed);
                if n % 1000 == 0 {
                    warn!("channel socket: rate limit hit ({} so far)", n + 1);
                }
                Reply::refused(Refusal::RateLimited, "too many requests; slow down")
            } else {
                match ChannelRequest::decode(&frame) {
                    Err((code, reason)) => Reply::refused(code, reason),
                    Ok(req) => self.gate(&mut conn, req).unwrap_or_else(|e| {
                        error!("channel socket: {e}");
                        Reply::refused(Refusal::Failed, "helper error")
                    }),
                }
            };
            if write_frame(&mut stream, &reply.encode()).is_err() {
                return;
            }
        }
    }

    fn take_token(&self) -> bool {
        let Ok(mut b) = self.bucket.lock() else {
            return false;
        };
        let now = Instant::now();
        let refill = now.duration_since(b.1).as_secs_f64() * PER_SECOND;
        *b = ((b.0 + refill).min(BURST), now);
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }
}
