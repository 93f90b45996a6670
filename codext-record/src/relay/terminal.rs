//! A terminal channel: the shell on a pseudo-terminal of the recorder's.

use super::record::record;
use super::sizes::READ;
use super::target::{start, wait_child, Target};
use crate::link::Link;
use crate::sys::{self, Status};
use codext_record::proto::Stream;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// How long output may still come after a terminal session's shell ended
/// (a background job holding the terminal must not keep the channel).
const DRAIN: Duration = Duration::from_millis(500);

/// A terminal channel: the shell gets a pseudo-terminal of the recorder's
/// own; the client's terminal is put in raw mode (the inner one does the
/// line discipline) and made exclusive, so the shell cannot open it by
/// name and write around the record.
pub(super) fn run_tty(target: Target, link: &Arc<Link>, input: bool) -> Status {
    let outer = sys::get_termios(0).ok();
    let size = sys::winsize(0);
    let (master, slave) = match sys::openpty(outer.as_ref(), size) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("codext: cannot open a terminal: {e}");
            std::process::exit(1)
        }
    };
    let _ = sys::set_exclusive(0);
    if let Some(t) = &outer {
        let _ = sys::set_termios(0, &sys::raw(t));
    }
    let stdio = |fd: &OwnedFd| match fd.try_clone() {
        Ok(f) => Stdio::from(f),
        Err(_) => Stdio::null(),
    };
    let target = match target {
        Target::Local(mut cmd) => {
            cmd.stdin(stdio(&slave))
                .stdout(stdio(&slave))
                .stderr(stdio(&slave));
            Target::Local(cmd)
        }
        remote => remote,
    };
    let s = slave.as_raw_fd();
    let child = start(target, [s, s, s], true);
    drop(slave);
    let (Ok(m_in), Ok(m_out)) = (master.try_clone(), master.try_clone()) else {
        eprintln!("codext: cannot duplicate the terminal");
        std::process::exit(1)
    };
    // Client -> shell.
    let l = Arc::clone(link);
    let _ = std::thread::Builder::new()
        .name("in".into())
        .spawn(move || {
            let Ok(src) = sys::std_fd(0).try_clone_to_owned() else {
                return;
            };
            let (mut src, mut dst) = (File::from(src), File::from(m_in));
            let mut buf = vec![0u8; READ];
            loop {
                let n = match src.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if input {
                    record(&l, Stream::In, &buf[..n]);
                }
                if dst.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    // Shell -> client.
    let (done_tx, done_rx) = mpsc::channel();
    let l = Arc::clone(link);
    let _ = std::thread::Builder::new()
        .name("out".into())
        .spawn(move || {
            let mut src = File::from(m_out);
            let Ok(out) = sys::std_fd(1).try_clone_to_owned() else {
                let _ = done_tx.send(());
                return;
            };
            let mut out = File::from(out);
            let mut buf = vec![0u8; READ];
            let mut client_gone = false;
            loop {
                let n = match src.read(&mut buf) {
                    // EIO: every holder of the inner terminal closed it.
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                record(&l, Stream::Out, &buf[..n]);
                if !client_gone && out.write_all(&buf[..n]).is_err() {
                    client_gone = true;
                }
            }
            let _ = done_tx.send(());
        });
    let status = wait_child(&child, link, Some(&master));
    let _ = done_rx.recv_timeout(DRAIN);
    if let Some(t) = &outer {
        let _ = sys::set_termios(0, t);
    }
    drop(child);
    status
}
