//! One connection's request: the frame read under timeouts, the version
//! and service checks, the lifecycle decision, the reply; and the
//! per-source failure count that rate-limits verifications.

use super::{Daemon, IO_TIMEOUT};
use crate::error::{HelperError, Result};
use crate::ids::Pid;
use crate::lifecycle::session::Closed;
use crate::lifecycle::{Entry, UnixTime, Verdict};
use crate::log::{debug, error, warn};
use codext_wire::{
    read_frame, write_frame, FrameError, Received, Reply, ReplyStatus, Request, PROTOCOL_VERSION,
    PROTOCOL_VERSION_1,
};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

impl Daemon {
    pub(super) fn handle(&self, mut stream: UnixStream, n: usize, pid: i32) {
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        let frame = match read_frame(&mut stream) {
            Ok(f) => f,
            Err(e) => {
                // A peer that connects and closes without a word (a
                // readiness check) is not worth a warning.
                if matches!(e, FrameError::Truncated) {
                    debug!("connection {n} (pid {pid}): {e}");
                } else {
                    warn!("connection {n} (pid {pid}): {e}");
                }
                return;
            }
        };
        let received = match Request::decode_any(&frame) {
            Ok(r) => r,
            Err(e) => {
                warn!("connection {n} (pid {pid}): bad request: {e}");
                // A module of the previous release reads only its version.
                let version = match frame.first() {
                    Some(&PROTOCOL_VERSION_1) => PROTOCOL_VERSION_1,
                    _ => PROTOCOL_VERSION,
                };
                let _ = write_frame(
                    &mut stream,
                    &Reply::new(ReplyStatus::BadRequest, e.to_string()).encode_in(version),
                );
                return;
            }
        };
        drop(frame);
        let Received {
            version,
            request: req,
            claimed_pid,
        } = received;
        debug!(
            "connection {n} (pid {pid}): {} (protocol {version})",
            req.kind_name()
        );
        // The session's process is the peer the kernel names. A version-1
        // module also claims a pid: it is never used (an honest module
        // claims its own pid, which is the peer's unless the two live in
        // different PID namespaces, where the claim means nothing here);
        // a different one is only logged.
        if let Some(claimed) = claimed_pid.filter(|c| i64::from(*c) != i64::from(pid)) {
            warn!(
                "connection {n} (pid {pid}): {} claims pid {claimed}; the peer's pid is used",
                req.kind_name()
            );
        }
        let login = match &req {
            Request::Authenticate { user, rhost, .. } => Some((user.clone(), rhost.clone())),
            _ => None,
        };
        // A PAM module that gave up waiting (the helper was stopped or
        // slow) has closed its end: its login already failed, so the token
        // must not be consumed nor an account made for it now.
        if let Some((user, rhost)) = &login {
            if peer_gone(&stream) {
                self.helper.log_refusal(
                    req.kind_name(),
                    user.as_str(),
                    "the PAM module stopped waiting",
                    rhost,
                );
                return;
            }
        }
        let reply = self.dispatch(req, Pid::from_kernel(pid));
        if let Err(e) = write_frame(&mut stream, &reply.encode_in(version)) {
            warn!("connection {n}: cannot reply: {e}");
            // The module never heard that the login succeeded: sshd denied
            // it, so the account just made must not stay.
            if let (Some((user, _)), ReplyStatus::Ok) = (&login, reply.status) {
                if let Err(e) = self.helper.revoke(
                    user,
                    "the PAM module did not get the answer",
                    UnixTime::now(),
                ) {
                    error!("revoking {user}: {e}");
                }
            }
        }
    }

    /// `peer` is the connecting process, when the kernel could name it
    /// (`SO_PEERCRED` gives 0 for a process outside the helper's PID
    /// namespace).
    fn dispatch(&self, req: Request, peer: Option<Pid>) -> Reply {
        match self.decide(&req, peer) {
            Ok(Verdict::Ok(why)) => Reply::new(ReplyStatus::Ok, why),
            Ok(Verdict::Denied(why)) => Reply::new(ReplyStatus::Denied, why),
            Ok(Verdict::CreateAccount(_)) => Reply::new(ReplyStatus::Unavailable, "internal error"),
            Err(e) => {
                error!("{} failed: {e}", req.kind_name());
                Reply::new(ReplyStatus::Unavailable, "helper error")
            }
        }
    }

    fn service_allowed(&self, req: &Request, service: &str, user: &str) -> bool {
        let ok = self.helper.cfg.pam_services.iter().any(|s| s == service);
        if !ok {
            self.helper.log_refusal(
                req.kind_name(),
                user,
                &format!("service {service:?} not allowed"),
                "",
            );
        }
        ok
    }

    fn decide(&self, req: &Request, peer: Option<Pid>) -> Result<Verdict> {
        match req {
            Request::Ping => Ok(Verdict::Ok("pong")),
            Request::Authenticate {
                service,
                user,
                rhost,
                password,
            } => {
                if !self.service_allowed(req, service, user.as_str()) {
                    return Ok(Verdict::Denied("service not allowed"));
                }
                if self.too_many_failures(rhost) {
                    self.helper.log_stranger(
                        crate::audit::Stranger::RateLimited,
                        user.as_str(),
                        rhost,
                    );
                    return Ok(Verdict::Denied("too many failures from this source"));
                }
                match self
                    .helper
                    .authenticate(user, password, rhost, UnixTime::now())?
                {
                    Verdict::CreateAccount(entry) => self.create(entry),
                    Verdict::Denied(why) => {
                        self.note_failure(rhost);
                        Ok(Verdict::Denied(why))
                    }
                    ok => Ok(ok),
                }
            }
            Request::Account { service, user, .. } => {
                if !self.service_allowed(req, service, user.as_str()) {
                    return Ok(Verdict::Denied("service not allowed"));
                }
                self.helper.account(user, UnixTime::now())
            }
            Request::KeyAccount {
                service,
                user,
                rhost,
                key,
            } => {
                if !self.service_allowed(req, service, user.as_str()) {
                    return Ok(Verdict::Denied("service not allowed"));
                }
                let (verdict, removal) =
                    self.helper.key_account(user, key, rhost, UnixTime::now())?;
                if let Some(r) = removal {
                    self.schedule(r);
                }
                Ok(verdict)
            }
            Request::OpenSession {
                service,
                user,
                rhost,
            } => {
                if !self.service_allowed(req, service, user.as_str()) {
                    return Ok(Verdict::Denied("service not allowed"));
                }
                // A session the helper cannot watch (no pid it can see)
                // could never be noticed ending: refuse it.
                let Some(pid) = peer else {
                    self.helper.log_refusal(
                        req.kind_name(),
                        user.as_str(),
                        "the peer's pid is not visible in the helper's PID namespace",
                        rhost,
                    );
                    return Ok(Verdict::Denied("session process not visible to the helper"));
                };
                self.helper
                    .open_session(user, pid.as_raw(), rhost, UnixTime::now())
            }
            Request::CloseSession { user, .. } => {
                // Closing is always honoured: it can only lead to removal.
                // It closes the caller's own session, never another's.
                if let Some(pid) = peer {
                    if let Some(r) =
                        self.helper
                            .close_session(user, pid.as_raw(), Closed::Closed)?
                    {
                        self.schedule(r);
                    }
                }
                Ok(Verdict::Ok("session closed"))
            }
        }
    }

    /// The creation lane, never behind a removal: the creation worker runs
    /// `useradd` for every login waiting (one batch per hold of the
    /// account lock); the rest of the login finishes on this thread.
    fn create(&self, entry: Box<Entry>) -> Result<Verdict> {
        let (tx, rx) = mpsc::channel();
        self.creations
            .lock()
            .map_err(|_| HelperError::System("creation lane lock poisoned".into()))?
            .send((entry.as_ref().clone(), tx))
            .map_err(|_| HelperError::System("the creation worker is gone".into()))?;
        let made = rx
            .recv()
            .map_err(|_| HelperError::System("the creation worker did not answer".into()))?;
        let verdict = self.helper.finish_creation(&entry, made)?;
        // (issue 26) A container grant's container starts now, in the
        // background: the login does not wait for docker.
        if matches!(verdict, Verdict::Ok(_)) {
            super::entry::start_soon(&self.helper, &entry);
        }
        Ok(verdict)
    }

    fn too_many_failures(&self, rhost: &str) -> bool {
        let limit = self.helper.cfg.limits.failures_per_source_per_minute as usize;
        let Ok(mut map) = self.failures.lock() else {
            return true;
        };
        let q = map.entry(rhost.to_owned()).or_default();
        let cutoff = Instant::now().checked_sub(Duration::from_secs(60));
        while q.front().is_some_and(|t| cutoff.is_some_and(|c| *t < c)) {
            q.pop_front();
        }
        q.len() >= limit
    }

    fn note_failure(&self, rhost: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.entry(rhost.to_owned())
                .or_default()
                .push_back(Instant::now());
            // Bound the table: forget sources idle for a minute.
            if map.len() > 4096 {
                let cutoff = Instant::now().checked_sub(Duration::from_secs(60));
                map.retain(|_, q| q.back().is_some_and(|t| cutoff.is_none_or(|c| *t >= c)));
            }
        }
    }
}

/// True when the peer has closed its end of `stream` (checked without
/// waiting).
fn peer_gone(stream: &UnixStream) -> bool {
    // Only POLLRDHUP is asked for (nix has no name for it; Linux sets it on
    // a Unix socket whose peer shut down or closed), and POLLHUP/POLLERR
    // are always reported: any readiness at all means the peer is gone.
    let mut fds = [PollFd::new(
        stream.as_fd(),
        PollFlags::from_bits_retain(libc::POLLRDHUP),
    )];
    poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) > 0
}
