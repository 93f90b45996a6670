//! The checks of the running daemon: it answers a ping, its socket,
//! folders and key have root's modes, and it locked its memory.

use super::report::Report;
use crate::config::Config;
use crate::setup;
use codext_wire::{read_frame, write_frame, ReplyStatus, Request};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Pings the daemon; returns its pid.
pub(super) fn helper_check(r: &mut Report, cfg: &Config) -> Option<i32> {
    let start = if setup::systemd_running() {
        "systemctl start codext-helper"
    } else {
        "start `codext-helper serve` as root"
    };
    let sock = &cfg.socket;
    let ping = || -> std::result::Result<(i32, String), String> {
        let mut s = std::os::unix::net::UnixStream::connect(sock)
            .map_err(|e| format!("cannot connect to {}: {e}", sock.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        let pid = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
            .map(|c| c.pid())
            .map_err(|e| e.to_string())?;
        let body = Request::Ping.encode().map_err(|e| e.to_string())?;
        write_frame(&mut s, &body).map_err(|e| e.to_string())?;
        let frame = read_frame(&mut s).map_err(|e| format!("no answer: {e}"))?;
        let reply = codext_wire::Reply::decode(&frame).map_err(|e| e.to_string())?;
        if reply.status != ReplyStatus::Ok {
            return Err(format!("it answered {:?}: {}", reply.status, reply.reason));
        }
        Ok((pid, reply.reason))
    };
    match ping() {
        Ok((pid, reason)) => {
            r.ok(
                "helper",
                format!(
                    "the daemon (pid {pid}) answers a ping on {} ({reason})",
                    sock.display()
                ),
            );
            Some(pid)
        }
        Err(e) => {
            r.fail(
                "helper",
                format!("the daemon does not answer: {e}; every codext login is refused"),
                start,
            );
            None
        }
    }
}

pub(super) fn mode_checks(r: &mut Report, cfg: &Config) {
    let socket_dir = cfg
        .socket
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let audit_dir = cfg
        .audit_log
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let items: [(&str, PathBuf, u32, &str); 5] = [
        ("modes.socket", cfg.socket.clone(), 0o600, "socket"),
        ("modes.socket_dir", socket_dir, 0o700, "dir"),
        ("modes.state_dir", cfg.state_dir.clone(), 0o700, "dir"),
        ("modes.server_key", cfg.server_key.clone(), 0o600, "file"),
        ("modes.audit_dir", audit_dir, 0o755, "dir"),
    ];
    for (check, path, max, kind) in items {
        match std::fs::symlink_metadata(&path) {
            Err(e) => r.fail(
                check,
                format!("{}: {e}", path.display()),
                "run `codext-helper setup` (and start the daemon)",
            ),
            Ok(m) => {
                let mode = m.mode() & 0o7777;
                let right_kind = match kind {
                    "socket" => m.file_type().is_socket(),
                    "dir" => m.is_dir(),
                    _ => m.is_file(),
                };
                if !right_kind || m.uid() != 0 || mode & !max != 0 {
                    r.fail(
                        check,
                        format!("{} is a {} of uid {} with mode {mode:o}; want a {kind} of root, at most {max:o}", path.display(), kind_of(&m), m.uid()),
                        format!("chown root:root {0} && chmod {max:o} {0}", path.display()),
                    );
                } else {
                    r.ok(
                        check,
                        format!("{} is root's, mode {mode:o}", path.display()),
                    );
                }
            }
        }
    }
    match std::fs::metadata(cfg.server_public_key()) {
        Ok(_) => r.ok(
            "modes.server_pub",
            format!("{} exists", cfg.server_public_key().display()),
        ),
        Err(e) => r.fail(
            "modes.server_pub",
            format!("{}: {e}", cfg.server_public_key().display()),
            "run `codext-helper setup`",
        ),
    }
}

fn kind_of(m: &std::fs::Metadata) -> &'static str {
    if m.file_type().is_socket() {
        "socket"
    } else if m.is_dir() {
        "dir"
    } else if m.is_file() {
        "file"
    } else {
        "special file"
    }
}

/// Whether the running daemon locked its memory (it does not when that
/// would starve it: no `CAP_IPC_LOCK` under a finite `RLIMIT_MEMLOCK`).
pub(super) fn memory_check(r: &mut Report, daemon: Option<i32>) {
    let Some(pid) = daemon else {
        return; // `helper` already fails.
    };
    let locked = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .as_deref()
        .and_then(crate::procfs::locked_kib);
    match locked {
        Some(kib) if kib > 0 => r.ok(
            "memory",
            format!("the daemon's memory is locked ({kib} kB): passwords it checks never reach swap"),
        ),
        _ => r.warn(
            "memory",
            format!("the daemon (pid {pid}) has not locked its memory: a password being checked could be written to swap"),
            "give the daemon CAP_IPC_LOCK (the shipped unit does; docker: --cap-add IPC_LOCK) and restart it",
        ),
    }
}
