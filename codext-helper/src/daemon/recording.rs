//! The recording socket, [`proto::SOCKET`]: where every
//! recorder streams its channel.
//!
//! What it guarantees:
//! * its folder is root's, group the recorder's, 0750, and the socket
//!   0660 of the same: only a process running the setgid recorder can
//!   even connect — but modes are not trusted alone;
//! * every connection's peer (`SO_PEERCRED`, the kernel's word for the
//!   process that connected) must have the recorder's group as its
//!   effective group (only the recorder's exec gives it, and never to a
//!   traced process), the uid of a live codext account with an open
//!   session, no tracer, a `/proc/PID` owned by root (not dumpable: no
//!   process of the user may read or write its memory), and sshd's
//!   process of one of that user's sessions among its ancestors (which
//!   ties the record to that session); anything else is refused and
//!   audited;
//! * frames are length-prefixed, capped at [`proto::MAX_FRAME`] before
//!   anything is read, into one buffer per connection; a connection must
//!   open with a hello, then only data, resize, sftp and end are valid;
//! * at most [`MAX_CHANNELS`] channels are recorded at once, one small
//!   thread each;
//! * a record that cannot be stored refuses the channel (the recorder
//!   then does not run it), or, with `fail_open`, lets it run unrecorded
//!   with an audit line.

use super::peer::{check_peer_of, Peer};
use crate::audit::AuditEvent;
use crate::lifecycle::Helper;
use crate::log::{error, info, warn};
use crate::recording::format::Meta;
use crate::recording::store::{session_id, RecordStore, Writer};
use codext_record::proto::{self, Hello, ProtoError, ToHelper, ToRecorder};
use codext_record::Kind;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Channels recorded at once.
pub const MAX_CHANNELS: usize = 256;
/// How long a recorder may take to say hello.
const HELLO_WAIT: Duration = Duration::from_secs(5);
/// How far a recording thread lowers its priority below the helper's (the
/// unit's `Nice=-10` is for the account lanes; a channel's frames must
/// not preempt the sshd and ssh that carry the channel itself).
const RECORD_NICE: i32 = 10;
/// The nice value a recording thread takes at least: behind the codext
/// sessions it records, which run at 5 (`pam.d/limits.d/codext.conf`), so
/// that appending frames and sealing records waits for their sshd and
/// shells (with the unit's `Nice=-10`, RECORD_NICE alone gives 0: ahead
/// of them).
const RECORD_NICE_FLOOR: i32 = 10;
/// Serves the recording socket on a thread of its own; if it cannot (the
/// recorder's group is missing) it says why and tries again.
pub fn spawn(helper: Helper) {
    let _ = std::thread::Builder::new()
        .name("record-socket".into())
        .stack_size(256 * 1024)
        .spawn(move || loop {
            if let Err(e) = serve(&helper) {
                error!(
                    "recording socket not served (every codext channel is refused meanwhile): {e}"
                );
            }
            std::thread::sleep(helper.cfg.limits.reaper_interval);
        });
}

/// The folder and the socket, root's and the recorder group's.
fn prepare(gid: u32) -> Result<std::os::unix::net::UnixListener, String> {
    let dir = Path::new(proto::SOCKET_DIR);
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{} exists and is not a folder", dir.display())),
        Err(_) => std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?,
    }
    std::os::unix::fs::chown(dir, Some(0), Some(gid))
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)))
        .map_err(|e| format!("cannot set up {}: {e}", dir.display()))?;
    let sock = Path::new(proto::SOCKET);
    // The path is fixed (the recorder knows no other): a second helper on
    // the host must not take it from a running one, whose recordings would
    // then all be refused. A socket nobody listens on (a helper that died)
    // is replaced.
    if listening(sock) {
        return Err(format!(
            "another codext-helper serves {}: one helper per host records",
            sock.display()
        ));
    }
    let listener = super::listen_fresh(sock).map_err(|e| e.to_string())?;
    std::os::unix::fs::chown(sock, Some(0), Some(gid))
        .and_then(|()| std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o660)))
        .map_err(|e| format!("cannot set up {}: {e}", sock.display()))?;
    Ok(listener)
}

/// True when something in this mount namespace listens at `path`: a
/// non-blocking connect succeeds or finds its queue full. (Not
/// `/proc/net/unix`: it lists the sockets of the whole network namespace
/// by the path each was bound to, so a helper in another container on the
/// host's network would look like one here.) A socket file nobody listens
/// on (a helper that died) answers `ECONNREFUSED`; no file, `ENOENT`.
fn listening(path: &Path) -> bool {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let Ok(addr) = UnixAddr::new(path) else {
        return false;
    };
    let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return false;
    };
    match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EAGAIN,
    }
}

struct Shared {
    helper: Helper,
    store: RecordStore,
    gid: u32,
    open: AtomicUsize,
}

fn serve(helper: &Helper) -> Result<(), String> {
    let cfg = &helper.cfg;
    let gid = crate::accounts::lookup_group(&cfg.recording.group)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "the recorder's group {} does not exist: run `codext-helper init`",
                cfg.recording.group
            )
        })?
        .as_raw();
    let logger = helper.clone();
    let store = RecordStore::open(
        &cfg.recordings_dir(),
        &cfg.recording,
        Box::new(move |e| logger.log(e)),
    )?;
    store.expire_old();
    let listener = prepare(gid)?;
    info!("recording socket on {}", proto::SOCKET);
    let shared = Arc::new(Shared {
        helper: helper.clone(),
        store,
        gid,
        open: AtomicUsize::new(0),
    });
    let s = Arc::clone(&shared);
    let _ = std::thread::Builder::new()
        .name("record-expiry".into())
        .stack_size(128 * 1024)
        .spawn(move || loop {
            std::thread::sleep(
                s.helper
                    .cfg
                    .limits
                    .reaper_interval
                    .max(Duration::from_secs(1)),
            );
            s.store.expire_old();
        });
    for conn in listener.incoming() {
        let Ok(mut stream) = conn else { continue };
        let creds = match getsockopt(&stream, PeerCredentials) {
            Ok(c) => c,
            Err(e) => {
                warn!("recording socket: a peer without credentials ({e}); closed");
                continue;
            }
        };
        if shared.open.load(Ordering::SeqCst) >= MAX_CHANNELS {
            refuse(
                &shared,
                &mut stream,
                &format!("uid {}", creds.uid()),
                &format!("{MAX_CHANNELS} channels are being recorded already"),
            );
            continue;
        }
        shared.open.fetch_add(1, Ordering::SeqCst);
        let s = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("record".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let _ = crate::sys::lower_thread_priority_to(RECORD_NICE, RECORD_NICE_FLOOR);
                // Lossless on Linux: pids and ids are non-negative.
                handle(&s, stream, creds.pid() as u32, creds.uid(), creds.gid());
                s.open.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            error!("recording socket: cannot start a thread: {e}");
        }
    }
    Ok(())
}

/// Refuses a connection: audited, and the recorder told why (it then does
/// not run the channel).
fn refuse(s: &Shared, stream: &mut UnixStream, who: &str, why: &str) {
    warn!("recording socket: refused {who}: {why}");
    s.helper.log(AuditEvent::RecordRefuse {
        user: who.to_owned(),
        result: "refused",
        reason: why.to_owned(),
    });
    let _ = write(
        stream,
        &ToRecorder::Refuse {
            reason: why.to_owned(),
        },
    );
}

fn write(stream: &mut UnixStream, msg: &ToRecorder) -> std::io::Result<()> {
    let mut scratch = Vec::new();
    proto::write_frame(stream, &msg.encode(), &mut scratch)
}

/// The checks of the module docs, in order; `Err` says which failed.
fn check_peer(s: &Shared, pid: u32, uid: u32, gid: u32) -> Result<Peer, String> {
    check_peer_of(&s.helper, s.gid, pid, uid, gid)
}

/// Why a connection ended without the channel's end.
fn cut_reason(s: &Shared, peer: &Peer, how: &ProtoError) -> String {
    let live = s
        .helper
        .status()
        .map(|es| {
            es.iter()
                .any(|e| e.user() == peer.entry.user() && e.is_live())
        })
        .unwrap_or(true);
    if !live {
        return "the account was removed while the channel ran (grant ended or revoked)".into();
    }
    match how {
        ProtoError::Closed | ProtoError::Truncated | ProtoError::Io(_) => {
            "the recorder's connection closed before the channel ended (the recorder was killed or crashed)".into()
        }
        other => format!("protocol error: {other}"),
    }
}

fn handle(s: &Shared, mut stream: UnixStream, pid: u32, uid: u32, gid: u32) {
    let peer = match check_peer(s, pid, uid, gid) {
        Ok(p) => p,
        Err(why) => return refuse(s, &mut stream, &format!("uid {uid}"), &why),
    };
    let user = peer.entry.user().to_string();
    let _ = stream.set_read_timeout(Some(HELLO_WAIT));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::with_capacity(proto::MAX_FRAME);
    let hello = match proto::read_frame(&mut stream, &mut buf).map(ToHelper::decode) {
        Ok(Ok(ToHelper::Hello(h))) => h,
        Ok(Ok(_)) => return refuse(s, &mut stream, &user, "a recording must start with a hello"),
        Ok(Err(e)) | Err(e) => return refuse(s, &mut stream, &user, &format!("no hello: {e}")),
    };
    let cfg = &s.helper.cfg;
    // What may run: the grant's profile decides (the gate).
    let run = match super::entry::decide(&s.helper, &peer.entry, &hello) {
        Ok(run) => run,
        Err(why) => {
            let _ = write(&mut stream, &ToRecorder::Refuse { reason: why });
            return;
        }
    };
    if !cfg.recording.enabled {
        // Served for the gate only: nothing is recorded.
        let _ = write(
            &mut stream,
            &ToRecorder::Accept {
                id: String::new(),
                shell: cfg.accounts.shell.as_os_str().as_encoded_bytes().to_vec(),
                record: false,
                input: false,
                fail_open: false,
                head_bytes: 0,
                tail_bytes: 0,
                input_bytes: 0,
                run,
            },
        );
        return;
    }
    let kind = Kind::of(hello.login, &hello.command);
    let meta = meta_of(&peer, pid, &hello, kind, cfg);
    let shell = cfg.accounts.shell.to_string_lossy().into_owned();
    let writer = match s
        .store
        .begin(meta.clone(), hello.cols, hello.rows, &hello.term, &shell)
    {
        Ok(w) => w,
        Err(why) => {
            let why = format!("the helper cannot store the record: {why}");
            if cfg.recording.fail_open {
                warn!("recording: {user}'s channel runs unrecorded (fail_open): {why}");
                s.helper.log(AuditEvent::RecordRefuse {
                    user,
                    result: "unrecorded",
                    reason: why,
                });
                let _ = write(
                    &mut stream,
                    &ToRecorder::Accept {
                        id: String::new(),
                        shell: cfg.accounts.shell.as_os_str().as_encoded_bytes().to_vec(),
                        record: false,
                        input: false,
                        fail_open: true,
                        head_bytes: 0,
                        tail_bytes: 0,
                        input_bytes: 0,
                        run,
                    },
                );
            } else {
                refuse(s, &mut stream, &user, &why);
            }
            return;
        }
    };
    stream_record(s, stream, peer, hello, writer, buf, run);
}

fn meta_of(peer: &Peer, pid: u32, hello: &Hello, kind: Kind, cfg: &crate::config::Config) -> Meta {
    let user = peer.entry.user().to_string();
    let opened = peer.session.opened_at.0;
    Meta {
        format: 1,
        id: String::new(),
        session: session_id(&user, peer.session.pid, opened),
        user,
        uid: peer.entry.uid(),
        kind: kind.as_str().into(),
        tty: hello.tty,
        command: (!hello.login).then(|| String::from_utf8_lossy(&hello.command).into_owned()),
        command_cut: hello.command_cut,
        ssh_connection: hello.ssh_connection.clone(),
        session_pid: peer.session.pid,
        session_opened: opened,
        recorder_pid: pid,
        continues: (!hello.continues.is_empty()).then(|| hello.continues.clone()),
        input_recorded: hello.tty && cfg.recording.input,
        started: codext_core::time::now(),
        output_bytes: cfg.recording.output_bytes,
        input_bytes: cfg.recording.input_bytes,
    }
}

/// Accepts, then writes every frame until the end (sealed, answered) or
/// the connection's loss (sealed, truncated).
fn stream_record(
    s: &Shared,
    mut stream: UnixStream,
    peer: Peer,
    hello: Hello,
    mut w: Writer,
    mut buf: Vec<u8>,
    run: proto::Run,
) {
    let kind = Kind::of(hello.login, &hello.command);
    let cfg = &s.helper.cfg;
    let user = peer.entry.user().to_string();
    w.set_start(hello.t_us);
    let id = w.id.clone();
    let command: Option<String> = (!hello.login).then(|| {
        let c = String::from_utf8_lossy(&hello.command);
        c.chars().take(256).collect()
    });
    let accept = ToRecorder::Accept {
        id: id.clone(),
        shell: cfg.accounts.shell.as_os_str().as_encoded_bytes().to_vec(),
        record: true,
        input: hello.tty && cfg.recording.input,
        fail_open: cfg.recording.fail_open,
        // What the record keeps (`store.rs`): the recorder sends the first
        // half as it passes and holds back the newest of the rest.
        head_bytes: cfg.recording.output_bytes / 2,
        tail_bytes: cfg.recording.output_bytes - cfg.recording.output_bytes / 2,
        input_bytes: cfg.recording.input_bytes,
        run,
    };
    if let Err(e) = write(&mut stream, &accept) {
        let _ = s.store.finish(
            w,
            None,
            Some(format!("the recorder went away before it could start: {e}")),
        );
        return;
    }
    // The channel starts now; its audit line is written meanwhile.
    s.helper.log(AuditEvent::RecordOpen {
        id: id.clone(),
        user: user.clone(),
        session: session_id(&user, peer.session.pid, peer.session.opened_at.0),
        kind: kind.as_str(),
        command,
        continues: (!hello.continues.is_empty()).then(|| hello.continues.clone()),
    });
    let _ = stream.set_read_timeout(None);
    let outcome = loop {
        let frame = match proto::read_frame(&mut stream, &mut buf) {
            Ok(f) => f,
            Err(e) => break Err(cut_reason(s, &peer, &e)),
        };
        let written = match ToHelper::decode(frame) {
            Ok(ToHelper::Data {
                stream: st,
                t_us,
                bytes,
            }) => w.data(st, t_us, bytes),
            Ok(ToHelper::Resize { t_us, cols, rows }) => w.resize(t_us, cols, rows),
            Ok(ToHelper::Sftp {
                t_us,
                op,
                path,
                path2,
                detail,
            }) => w.sftp(t_us, op, path, path2, detail),
            Ok(ToHelper::Count { stream: st, bytes }) => {
                w.count(st, bytes);
                Ok(())
            }
            Ok(ToHelper::End { exit, .. }) => break Ok(exit),
            Ok(ToHelper::Hello(_)) => break Err("protocol error: a second hello".into()),
            Ok(ToHelper::Enter { .. }) => {
                break Err("protocol error: an enter request on the recording socket".into())
            }
            Err(e) => break Err(format!("protocol error: {e}")),
        };
        if let Err(e) = written {
            // The record cannot go on: it is sealed as it is, and the
            // connection closed, so the recorder resumes in a new record
            // or (if none can be stored) ends the channel.
            break Err(format!("the helper could not write the record: {e}"));
        }
    };
    match outcome {
        Ok(exit) => match s.store.finish(w, Some(exit), None) {
            Ok(sealed) => {
                let _ = write(
                    &mut stream,
                    &ToRecorder::Closed {
                        sha256: sealed.sha256,
                    },
                );
            }
            Err(e) => error!("recording {id}: cannot seal: {e}"),
        },
        Err(why) => {
            if let Err(e) = s.store.finish(w, None, Some(why)) {
                error!("recording {id}: cannot seal: {e}");
            }
        }
    }
}
