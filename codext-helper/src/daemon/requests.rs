//! One connection's request: the frame read under timeouts, the version
//! and service checks, the lifecycle decision, the reply; and the
//! per-source failure count that rate-limits verifications.

use super::{Daemon, IO_TIMEOUT};
use crate::error::{HelperError, Result};
use crate::ids::Pid;
use crate::lifecycle::session::Closed;
use crate::lifecycle::{Entry, LoginOutcome, UnixTime, Verdict};
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

/// How much longer than one `useradd` a login waits for its account.
const CREATION_MARGIN: Duration = Duration::from_secs(5);

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
            Err(e) => {
                error!("{} failed: {e}", req.kind_name());
                Reply::new(ReplyStatus::Unavailable, "helper error")
            }
        }
    }

    fn service_allowed(&self, req: &Request, service: &str, user: &str) -> bool {
        let ok = self.helper.cfg.pam_services.iter().any(|s| s == service);
        if !ok {
            // Any local user can ask (`su user-…`): counted, not a line each.
            let result = format!("service {service:?} not allowed");
            self.helper.log_counted(crate::audit::Counted {
                request: req.kind_name(),
                user: Some(user),
                key: None,
                result: &result,
                source: "",
            });
        }
        ok
    }

    /// The one gate of the PAM socket: the request's row of [`TABLE`]
    /// says which checks come before its handler, and they are made here,
    /// in the table's order, for every request alike.
    fn decide(&self, req: &Request, peer: Option<Pid>) -> Result<Verdict> {
        let Some(row) = TABLE.iter().find(|r| r.kind == req.kind_name()) else {
            return Ok(Verdict::Denied("not a request this socket serves"));
        };
        let (service, user, rhost) = parts(req);
        if row.service_checked && !self.service_allowed(req, service, user) {
            return Ok(Verdict::Denied("service not allowed"));
        }
        if row.rate_limited && self.too_many_failures(rhost) {
            self.helper
                .log_stranger(crate::audit::Stranger::RateLimited, user, rhost);
            return Ok(Verdict::Denied("too many failures from this source"));
        }
        let peer = match (row.peer_pid, peer) {
            (PeerPid::Required, None) => {
                // A session the helper cannot watch (no pid it can see)
                // could never be noticed ending: refuse it.
                self.helper.log_refusal(
                    req.kind_name(),
                    user,
                    "the peer's pid is not visible in the helper's PID namespace",
                    rhost,
                );
                return Ok(Verdict::Denied("session process not visible to the helper"));
            }
            (_, p) => p,
        };
        (row.handler)(self, req, peer)
    }

    /// The creation lane, never behind a removal: the creation worker runs
    /// `useradd` for every login waiting (one batch per hold of the
    /// account lock); the rest of the login finishes on this thread.
    ///
    /// The wait is bounded: `useradd` has `limits.tool_timeout`, plus
    /// [`CREATION_MARGIN`] for the logins queued before it in the batch.
    /// Past that the login is refused (the PAM module gives up too); the
    /// creation, if it still comes, is finished and the grant revoked on a
    /// thread of its own, so no account is left without its login.
    fn create(&self, entry: Box<Entry>) -> Result<Verdict> {
        let (tx, rx) = mpsc::channel();
        self.creations
            .lock()
            .map_err(|_| HelperError::System("creation lane lock poisoned".into()))?
            .send((entry.as_ref().clone(), tx))
            .map_err(|_| HelperError::System("the creation worker is gone".into()))?;
        let limit = self.helper.cfg.limits.tool_timeout + CREATION_MARGIN;
        match rx.recv_timeout(limit) {
            Ok(made) => {
                let verdict = self.helper.finish_creation(&entry, made)?;
                // A container grant's container starts now, in the
                // background: the login does not wait for docker.
                if matches!(verdict, Verdict::Ok(_)) {
                    super::entry::start_soon(&self.helper, &entry);
                }
                Ok(verdict)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(HelperError::System(
                "the creation worker did not answer".into(),
            )),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let helper = self.helper.clone();
                let _ = std::thread::Builder::new()
                    .name("late-creation".into())
                    .stack_size(256 * 1024)
                    .spawn(move || {
                        if let Ok(made) = rx.recv() {
                            let _ = helper.finish_creation(&entry, made);
                        }
                        if let Err(e) = helper.revoke(
                            entry.user(),
                            "its account was made after the login had given up",
                            UnixTime::now(),
                        ) {
                            error!("revoking {}: {e}", entry.user());
                        }
                    });
                Err(HelperError::System(format!(
                    "the account was not made within {}s",
                    limit.as_secs()
                )))
            }
        }
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

/// Whether a request uses the peer's pid (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PeerPid {
    /// Not used.
    Unused,
    /// Refused when the kernel cannot name the peer in the helper's PID
    /// namespace.
    Required,
    /// Used when visible; without it the request does nothing.
    IfVisible,
}

/// One row of the PAM socket's dispatch table.
pub(super) struct Row {
    /// The request (`codext_wire::Request::kind_name`).
    pub kind: &'static str,
    /// Its PAM service must be one of `pam_services`.
    pub service_checked: bool,
    /// Refused while its source address has too many recent failures.
    pub rate_limited: bool,
    /// What it needs of the peer's pid.
    pub peer_pid: PeerPid,
    /// The lifecycle request it becomes (its row in the phase table,
    /// `lifecycle::table`), which its handler's lifecycle call checks. Kept
    /// here so the table reads whole; the test below compares them.
    #[cfg_attr(not(test), allow(dead_code))]
    pub lifecycle: Option<crate::lifecycle::Request>,
    /// What answers it once the checks above passed.
    pub handler: fn(&Daemon, &Request, Option<Pid>) -> Result<Verdict>,
}

/// Every request the PAM socket serves and the checks made before each,
/// in one place (OpenSSH's `mon_table`): what is not here is refused.
pub(super) const TABLE: &[Row] = &[
    Row {
        kind: "ping",
        service_checked: false,
        rate_limited: false,
        peer_pid: PeerPid::Unused,
        lifecycle: None,
        handler: |_, _, _| Ok(Verdict::Ok("pong")),
    },
    Row {
        kind: "authenticate",
        service_checked: true,
        rate_limited: true,
        peer_pid: PeerPid::Unused,
        lifecycle: Some(crate::lifecycle::Request::Authenticate),
        handler: Daemon::authenticate,
    },
    Row {
        kind: "account",
        service_checked: true,
        rate_limited: false,
        peer_pid: PeerPid::Unused,
        lifecycle: Some(crate::lifecycle::Request::Account),
        handler: |d, req, _| match req {
            Request::Account { user, .. } => d.helper.account(user, UnixTime::now()),
            _ => Ok(Verdict::Denied("internal: wrong row")),
        },
    },
    Row {
        kind: "key_account",
        service_checked: true,
        rate_limited: false,
        peer_pid: PeerPid::Unused,
        lifecycle: Some(crate::lifecycle::Request::KeyAccount),
        handler: Daemon::key_account,
    },
    Row {
        kind: "open_session",
        service_checked: true,
        rate_limited: false,
        peer_pid: PeerPid::Required,
        lifecycle: Some(crate::lifecycle::Request::OpenSession),
        handler: |d, req, peer| match (req, peer) {
            (Request::OpenSession { user, rhost, .. }, Some(pid)) => {
                d.helper
                    .open_session(user, pid.as_raw(), rhost, UnixTime::now())
            }
            _ => Ok(Verdict::Denied("internal: wrong row")),
        },
    },
    Row {
        // Closing is always honoured (it can only lead to removal), and
        // closes the caller's own session, never another's.
        kind: "close_session",
        service_checked: false,
        rate_limited: false,
        peer_pid: PeerPid::IfVisible,
        lifecycle: Some(crate::lifecycle::Request::CloseSession),
        handler: Daemon::close_session,
    },
];

/// (service, user, source address) of a request; empty where it has none.
fn parts(req: &Request) -> (&str, &str, &str) {
    match req {
        Request::Ping => ("", "", ""),
        Request::Authenticate {
            service,
            user,
            rhost,
            ..
        }
        | Request::KeyAccount {
            service,
            user,
            rhost,
            ..
        }
        | Request::OpenSession {
            service,
            user,
            rhost,
        } => (service, user.as_str(), rhost),
        Request::Account { service, user, .. } => (service, user.as_str(), ""),
        Request::CloseSession { service, user, .. } => (service, user.as_str(), ""),
    }
}

impl Daemon {
    fn authenticate(&self, req: &Request, _: Option<Pid>) -> Result<Verdict> {
        let Request::Authenticate {
            user,
            rhost,
            password,
            ..
        } = req
        else {
            return Ok(Verdict::Denied("internal: wrong row"));
        };
        match self
            .helper
            .authenticate(user, password, rhost, UnixTime::now())?
        {
            LoginOutcome::CreateAccount(entry) => self.create(entry),
            LoginOutcome::Reply(Verdict::Denied(why)) => {
                self.note_failure(rhost);
                Ok(Verdict::Denied(why))
            }
            LoginOutcome::Reply(ok) => Ok(ok),
        }
    }

    fn key_account(&self, req: &Request, _: Option<Pid>) -> Result<Verdict> {
        let Request::KeyAccount {
            user, rhost, key, ..
        } = req
        else {
            return Ok(Verdict::Denied("internal: wrong row"));
        };
        let (verdict, removal) = self.helper.key_account(user, key, rhost, UnixTime::now())?;
        if let Some(r) = removal {
            self.schedule(r);
        }
        Ok(verdict)
    }

    fn close_session(&self, req: &Request, peer: Option<Pid>) -> Result<Verdict> {
        let Request::CloseSession { user, .. } = req else {
            return Ok(Verdict::Denied("internal: wrong row"));
        };
        if let Some(pid) = peer {
            if let Some(r) = self
                .helper
                .close_session(user, pid.as_raw(), Closed::Closed)?
            {
                self.schedule(r);
            }
        }
        Ok(Verdict::Ok("session closed"))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table, written out again: a change to any row shows here.
    #[test]
    fn given_the_pam_socket_table_then_every_request_has_exactly_these_checks() {
        let rendered: Vec<String> = TABLE
            .iter()
            .map(|r| {
                format!(
                    "{} service={} rate={} pid={:?} lifecycle={:?}",
                    r.kind, r.service_checked, r.rate_limited, r.peer_pid, r.lifecycle
                )
            })
            .collect();
        assert_eq!(
            rendered,
            [
                "ping service=false rate=false pid=Unused lifecycle=None",
                "authenticate service=true rate=true pid=Unused lifecycle=Some(Authenticate)",
                "account service=true rate=false pid=Unused lifecycle=Some(Account)",
                "key_account service=true rate=false pid=Unused lifecycle=Some(KeyAccount)",
                "open_session service=true rate=false pid=Required lifecycle=Some(OpenSession)",
                "close_session service=false rate=false pid=IfVisible lifecycle=Some(CloseSession)",
            ]
        );
    }

    #[test]
    fn given_every_request_kind_then_the_table_has_its_row_once() {
        use codext_wire::{Secret, UserName};
        let user = UserName::parse("user-00112233aabb").unwrap();
        let s = || "sshd".to_owned();
        let all = [
            Request::Ping,
            Request::Authenticate {
                service: s(),
                user: user.clone(),
                rhost: String::new(),
                password: Secret::new(Vec::new()),
            },
            Request::Account {
                service: s(),
                user: user.clone(),
                rhost: String::new(),
            },
            Request::KeyAccount {
                service: s(),
                user: user.clone(),
                rhost: String::new(),
                key: String::new(),
            },
            Request::OpenSession {
                service: s(),
                user: user.clone(),
                rhost: String::new(),
            },
            Request::CloseSession { service: s(), user },
        ];
        for r in &all {
            assert_eq!(
                TABLE.iter().filter(|row| row.kind == r.kind_name()).count(),
                1,
                "{}",
                r.kind_name()
            );
        }
        assert_eq!(TABLE.len(), all.len());
    }
}
