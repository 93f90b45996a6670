//! The helper's side of a gated grant's channels:
//!
//! * [`decide`]: what a channel of a grant runs — the real shell (a
//!   `shell` grant), a command the `commands` profile allows (run directly
//!   by the recorder, no shell), the helper's own answer to `codext-grant`,
//!   or the grant's container — asked by the recorder's hello on the
//!   recording socket (whose peer checks this module shares);
//! * [`ensure_container`]: the grant's container, started by root as the
//!   grant's uid:gid (when the account is made, and again when a session
//!   finds it stopped, e.g. after a linger), under the user's container
//!   lock, only for a live grant — so a removal (which takes the same lock
//!   after marking the grant removing) can never be followed by a start;
//! * the **enter socket** ([`proto::ENTER_SOCKET`]): a recorder passes the
//!   descriptors of a container grant's channel (`SCM_RIGHTS`) with the
//!   command; the helper checks the peer as the recording socket does,
//!   starts the container if needed, runs `docker exec` on those
//!   descriptors as the grant's uid:gid in the workspace, kills it if the
//!   recorder goes away, and answers the exit status. The temporary user
//!   never talks to dockerd, never holds its socket or a group that
//!   reaches it.

use super::peer::{check_peer_of, Peer};
use crate::audit::AuditEvent;
use crate::lifecycle::{Entry, Helper};
use crate::log::{error, info, warn};
use crate::profiles::{container, gate, Body};
use codext_record::proto::{self, Exit, Hello, Run, ToHelper, ToRecorder};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Container sessions served at once.
pub const MAX_SESSIONS: usize = 256;

/// What the request of a channel is, for the decision and the audit line.
fn request_of(hello: &Hello) -> Option<&[u8]> {
    (!hello.login).then_some(hello.command.as_slice())
}

fn audit_text(request: Option<&[u8]>) -> String {
    match request {
        None => "(login)".into(),
        Some(r) => String::from_utf8_lossy(r).chars().take(256).collect(),
    }
}

/// What the channel of `entry` described by `hello` runs, or the refusal
/// the user sees. Audited for a gated grant (`gate`).
pub fn decide(helper: &Helper, entry: &Entry, hello: &Hello) -> Result<Run, String> {
    let cfg = &helper.cfg;
    let request = request_of(hello);
    let profile = cfg.profile(entry.profile());
    if entry.profile().is_shell() {
        return match &hello.gate {
            // sshd forced a gate on a shell grant: its configuration and
            // this grant disagree.
            Some(g) => Err(format!(
                "sshd forced the gate of profile {g} on a grant of the profile {}: refused (codext-helper doctor)",
                entry.profile()
            )),
            None => Ok(Run::Shell),
        };
    }
    let log = |result: &str, reason: &str| {
        helper.log(AuditEvent::Gate {
            user: entry.user().to_string(),
            profile: entry.profile().to_string(),
            request: audit_text(request),
            result: result.to_owned(),
            reason: reason.to_owned(),
        });
    };
    match &hello.gate {
        Some(g) if g != entry.profile().as_str() => {
            let why = format!(
                "sshd forced the gate of profile {g}, but this grant is of the profile {}: refused",
                entry.profile()
            );
            log("refused", &why);
            return Err(why);
        }
        Some(_) => {}
        // The login shell runs the gate even when sshd did not force it
        // (a missing drop-in): two locks, either one enough.
        None => warn!(
            "{}: a channel of a {} grant reached the recorder without sshd's forced gate; \
             the gate applies anyway (codext-helper doctor: profiles.sshd)",
            entry.user(),
            entry.profile()
        ),
    }
    let Some(profile) = profile else {
        let why = format!(
            "profile {}: no longer configured on this server: refused",
            entry.profile()
        );
        log("refused", &why);
        return Err(why);
    };
    // `codext-grant …` is the helper's on any gated profile.
    if let Some(words) = request.and_then(|r| gate::parse_request(r).ok()) {
        if let Some(b) = gate::builtin(&words) {
            return match b {
                Ok(gate::Builtin::Linger(secs)) => match helper.ask_linger(entry.user(), secs) {
                    Ok(line) => {
                        log("builtin", &format!("linger {secs}"));
                        Ok(Run::Print {
                            text: format!("{line}\n").into_bytes(),
                            code: 0,
                        })
                    }
                    Err(e) => Err(e.to_string()),
                },
                Err(why) => {
                    let why = format!("profile {}: {why}", entry.profile());
                    log("refused", &why);
                    Err(why)
                }
            };
        }
    }
    match &profile.body {
        Body::Shell => Ok(Run::Shell),
        Body::Container(_) if entry.container() => {
            log("enter", "");
            Ok(Run::Enter)
        }
        Body::Commands(c) if !entry.container() => {
            let exists =
                |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0);
            match gate::decide(entry.profile().as_str(), c, entry.home(), request, &exists) {
                gate::Decision::Exec { argv, cwd, confine } => {
                    log("exec", &argv.join(" "));
                    let mut env: Vec<(Vec<u8>, Vec<u8>)> = gate::EXEC_ENV
                        .iter()
                        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                        .collect();
                    let home = entry.home().as_os_str().as_encoded_bytes().to_vec();
                    let user = entry.user().as_str().as_bytes().to_vec();
                    env.push((b"HOME".to_vec(), home));
                    env.push((b"USER".to_vec(), user.clone()));
                    env.push((b"LOGNAME".to_vec(), user));
                    env.push((b"SHELL".to_vec(), b"/usr/sbin/nologin".to_vec()));
                    Ok(Run::Exec {
                        argv: argv.into_iter().map(String::into_bytes).collect(),
                        cwd: cwd.as_os_str().as_encoded_bytes().to_vec(),
                        env,
                        confine: confine
                            .map(|c| c.as_os_str().as_encoded_bytes().to_vec())
                            .unwrap_or_default(),
                    })
                }
                gate::Decision::Builtin(_) => Err("codext-grant: unexpected".into()),
                gate::Decision::Refuse(why) => {
                    log("refused", &why);
                    Err(why)
                }
            }
        }
        _ => {
            let why = format!(
                "profile {}: its kind changed since this grant was made: refused",
                entry.profile()
            );
            log("refused", &why);
            Err(why)
        }
    }
}

/// Starts `user`'s container unless it runs (see the module docs).
pub fn ensure_container(helper: &Helper, user: &str) -> crate::error::Result<()> {
    use crate::error::HelperError;
    let _held = helper.store.lock_container_of(user)?;
    let entry = helper
        .status()?
        .into_iter()
        .find(|e| e.user().as_str() == user && e.is_live() && e.container())
        .ok_or_else(|| HelperError::Refused(format!("{user} is not a live container grant")))?;
    let Some(Body::Container(c)) = helper.cfg.profile(entry.profile()).map(|p| &p.body) else {
        return Err(HelperError::Refused(format!(
            "profile {} is no longer a container profile here",
            entry.profile()
        )));
    };
    let docker = helper.cfg.containers.cli();
    if docker.running(user)? {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let result = container::check_host(c).and_then(|()| {
        let gids: Vec<u32> = entry
            .groups()
            .iter()
            .filter(|g| !g.starts_with(crate::profiles::GROUP_PREFIX))
            .filter_map(|g| crate::accounts::lookup_group(g).ok().flatten())
            .map(|g| g.as_raw())
            .collect();
        let args = container::run_args(
            c,
            user,
            entry.uid(),
            entry.gid(),
            &gids,
            entry.profile().as_str(),
        );
        let account = container::Account {
            user: user.to_owned(),
            uid: entry.uid(),
            gid: entry.gid(),
            home: c.workspace.clone(),
            shell: c.shell.clone(),
        };
        docker.start(&args, user, &account)
    });
    helper.log(AuditEvent::Container {
        user: user.to_owned(),
        profile: entry.profile().to_string(),
        image: c.image.clone(),
        result: if result.is_ok() { "started" } else { "failed" },
        error: result.as_ref().err().map(|e| e.to_string()),
        ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    });
    result
}

/// After a container grant's account is made: its container starts in
/// the background, so that its first session usually finds it running.
pub fn start_soon(helper: &Helper, entry: &Entry) {
    if !entry.container() {
        return;
    }
    let h = helper.clone();
    let user = entry.user().to_string();
    let _ = std::thread::Builder::new()
        .name("container".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            if let Err(e) = ensure_container(&h, &user) {
                warn!("starting the container of {user}: {e} (its first session tries again)");
            }
        });
}

/// Serves the enter socket on a thread of its own (when a container
/// profile is configured).
pub fn spawn(helper: Helper) {
    let _ = std::thread::Builder::new()
        .name("enter-socket".into())
        .stack_size(256 * 1024)
        .spawn(move || loop {
            if let Err(e) = serve(&helper) {
                error!("container entry socket not served (container sessions are refused meanwhile): {e}");
            }
            std::thread::sleep(helper.cfg.limits.reaper_interval);
        });
}

fn serve(helper: &Helper) -> Result<(), String> {
    let gid = crate::accounts::lookup_group(&helper.cfg.recording.group)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "the recorder's group {} does not exist",
                helper.cfg.recording.group
            )
        })?
        .as_raw();
    // The folder is the recording socket's (root:recorder group 0750).
    let sock = Path::new(proto::ENTER_SOCKET);
    if let Some(dir) = sock.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::os::unix::fs::chown(dir, Some(0), Some(gid))
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let listener = super::listen_fresh(sock).map_err(|e| e.to_string())?;
    std::os::unix::fs::chown(sock, Some(0), Some(gid))
        .and_then(|()| std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o660)))
        .map_err(|e| format!("{}: {e}", sock.display()))?;
    info!("container entry socket on {}", proto::ENTER_SOCKET);
    let open = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let Ok(creds) = getsockopt(&stream, PeerCredentials) else {
            continue;
        };
        if open.load(Ordering::SeqCst) >= MAX_SESSIONS {
            warn!(
                "container entry: {MAX_SESSIONS} sessions already; refused uid {}",
                creds.uid()
            );
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let (h, o) = (helper.clone(), Arc::clone(&open));
        let spawned = std::thread::Builder::new()
            .name("enter".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                // Lossless on Linux: pids and ids are non-negative.
                handle(
                    &h,
                    stream,
                    creds.pid() as u32,
                    creds.uid(),
                    creds.gid(),
                    gid,
                );
                o.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            open.fetch_sub(1, Ordering::SeqCst);
        }
    }
    Ok(())
}

fn reply(stream: &mut UnixStream, msg: &ToRecorder) {
    let mut scratch = Vec::new();
    let _ = proto::write_frame(stream, &msg.encode(), &mut scratch);
}

/// Receives the enter frame and its three descriptors.
fn receive(stream: &UnixStream) -> Result<(Vec<u8>, Vec<OwnedFd>), String> {
    let (mut first, fds) = crate::sys::recv_with_fds(stream.as_fd(), 4 + proto::MAX_FRAME, 3)
        .map_err(|e| format!("receiving the session: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut s = stream;
    while first.len() < 4 {
        let mut b = [0u8; 4];
        let n =
            std::io::Read::read(&mut s, &mut b[..4 - first.len()]).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before its frame".into());
        }
        first.extend_from_slice(&b[..n]);
    }
    let len = u32::from_be_bytes([first[0], first[1], first[2], first[3]]) as usize;
    if len == 0 || len > proto::MAX_FRAME {
        return Err(format!("frame length {len}"));
    }
    while first.len() < 4 + len {
        let mut b = vec![0u8; 4 + len - first.len()];
        let n = std::io::Read::read(&mut s, &mut b).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed mid-frame".into());
        }
        first.extend_from_slice(&b[..n]);
    }
    if first.len() != 4 + len {
        return Err("bytes after the frame".into());
    }
    Ok((first.split_off(4), fds))
}

fn handle(helper: &Helper, mut stream: UnixStream, pid: u32, uid: u32, gid: u32, group: u32) {
    let (body, fds) = match receive(&stream) {
        Ok(x) => x,
        Err(why) => return warn!("container entry from uid {uid}: {why}"),
    };
    let peer: Peer = match check_peer_of(helper, group, pid, uid, gid) {
        Ok(p) => p,
        Err(why) => {
            warn!("container entry: refused uid {uid}: {why}");
            helper.log(AuditEvent::RecordRefuse {
                user: format!("uid {uid}"),
                result: "refused",
                reason: format!("container entry: {why}"),
            });
            return reply(&mut stream, &ToRecorder::Refuse { reason: why });
        }
    };
    let user = peer.entry.user().to_string();
    let (tty, login, term, command) = match ToHelper::decode(&body) {
        Ok(ToHelper::Enter {
            tty,
            login,
            term,
            command,
        }) => (tty, login, term, command),
        _ => {
            return reply(
                &mut stream,
                &ToRecorder::Refuse {
                    reason: "not an enter request".into(),
                },
            )
        }
    };
    if fds.len() != 3 {
        return reply(
            &mut stream,
            &ToRecorder::Refuse {
                reason: "an enter request carries three descriptors".into(),
            },
        );
    }
    let entry = &peer.entry;
    let Some(Body::Container(c)) = helper.cfg.profile(entry.profile()).map(|p| &p.body) else {
        return reply(
            &mut stream,
            &ToRecorder::Refuse {
                reason: format!("{user} is not a container grant"),
            },
        );
    };
    let c = c.clone();
    if let Err(e) = ensure_container(helper, &user) {
        return reply(
            &mut stream,
            &ToRecorder::Refuse {
                reason: format!("the grant's container could not be started: {e}"),
            },
        );
    }
    let command = (!login).then(|| String::from_utf8_lossy(&command).into_owned());
    let session = container::Session {
        tty,
        command: command.as_deref(),
        term: &term,
    };
    let args = container::exec_args(&c, &user, entry.uid(), entry.gid(), &session);
    let docker = helper.cfg.containers.cli();
    let mut fds = fds.into_iter();
    let (Some(i), Some(o), Some(e)) = (fds.next(), fds.next(), fds.next()) else {
        return;
    };
    let child = crate::sys::spawn_on(&docker.program, &args, &docker.env(), [i, o, e], tty);
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            error!("container entry for {user}: cannot run docker: {e}");
            return reply(
                &mut stream,
                &ToRecorder::Refuse {
                    reason: "the helper cannot run docker".into(),
                },
            );
        }
    };
    let status = wait(&stream, child);
    reply(&mut stream, &ToRecorder::Exited { exit: status });
}

/// Waits for `docker exec` (pid `child`), or for the recorder to go away
/// (its connection closes: the client left), then kills it.
fn wait(stream: &UnixStream, child: u32) -> Exit {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let pid = crate::ids::Pid::from_raw(child);
    let Ok(pidfd) = crate::sys::pidfd_open(pid) else {
        return Exit::Code(255);
    };
    loop {
        let mut fds = [
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(stream.as_fd(), PollFlags::POLLIN),
        ];
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        let exited = fds[0].revents().is_some_and(|r| !r.is_empty());
        let gone = fds[1].revents().is_some_and(|r| !r.is_empty());
        if exited {
            return match crate::sys::wait_pid(pid, Duration::from_secs(5)) {
                Ok(crate::sys::Waited::Exited(c)) => Exit::Code(c),
                Ok(crate::sys::Waited::Signaled(s)) => Exit::Signal(s),
                _ => Exit::Code(255),
            };
        }
        if gone {
            // Anything readable, or the end: the recorder sends nothing
            // after its request, so either means it left.
            let _ = crate::sys::pidfd_kill(&pidfd);
            let _ = crate::sys::wait_pid(pid, Duration::from_secs(5));
            return Exit::Signal(libc::SIGKILL);
        }
    }
}
