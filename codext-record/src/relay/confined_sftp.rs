//! A confined sftp server: each client request judged before
//! it is passed on, and the refusals put between the server's replies.

use super::record::{fatal, record};
use super::sizes::READ;
use crate::link::Link;
use crate::sys;
use codext_record::proto::{Stream, ToHelper};
use codext_record::{confine, sftp};
use std::fs::File;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

/// The client's side of a confined sftp session.
pub(super) struct ClientOut {
    /// The client's descriptor (a copy of 1), dropped at the server's end
    /// so that sshd sees the channel's output end.
    pub(super) file: Option<File>,
    pub(super) replies: confine::Replies,
    /// Refusals waiting for the server's packet in flight to end.
    pub(super) waiting: Vec<Vec<u8>>,
    pub(super) gone: bool,
}

impl ClientOut {
    fn write(&mut self, bytes: &[u8]) {
        if self.gone {
            return;
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(bytes).is_err() {
                self.gone = true;
            }
        }
    }
}

fn lock(out: &Mutex<ClientOut>) -> std::sync::MutexGuard<'_, ClientOut> {
    out.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Client -> a confined sftp server: each request whole, judged, passed on
/// or refused here (the refusal is in the record as an sftp operation).
pub(super) fn confined_in(
    l: Arc<Link>,
    mut dst: Box<dyn Write + Send>,
    d: Option<Arc<Mutex<sftp::Decoder>>>,
    root: Vec<u8>,
    out: Arc<Mutex<ClientOut>>,
) {
    let Ok(src) = sys::std_fd(0).try_clone_to_owned() else {
        return;
    };
    let mut src = File::from(src);
    let mut buf = vec![0u8; READ];
    let mut requests = confine::Requests::default();
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        record(&l, Stream::In, &buf[..n]);
        if let Some(d) = &d {
            let ops = d
                .lock()
                .map(|mut d| d.client(&buf[..n]))
                .unwrap_or_default();
            for op in ops {
                let t_us = l.now_us();
                let msg = ToHelper::Sftp {
                    t_us,
                    op: op.op,
                    path: &op.path,
                    path2: &op.path2,
                    detail: &op.detail,
                };
                if let Err(lost) = l.send(&msg) {
                    fatal(&lost);
                }
            }
        }
        let Ok(packets) = requests.feed(&buf[..n]) else {
            // A request larger than any sftp server takes: the end.
            break;
        };
        for p in packets {
            match confine::judge(&p, &root) {
                confine::Verdict::Pass => {
                    if dst.write_all(&p).is_err() {
                        return;
                    }
                }
                confine::Verdict::Deny { id, why } => {
                    let t_us = l.now_us();
                    let msg = ToHelper::Sftp {
                        t_us,
                        op: "denied",
                        path: b"",
                        path2: b"",
                        detail: &why,
                    };
                    if let Err(lost) = l.send(&msg) {
                        fatal(&lost);
                    }
                    let reply = confine::status(id, &why);
                    let mut o = lock(&out);
                    if o.replies.at_boundary() {
                        o.write(&reply);
                    } else {
                        o.waiting.push(reply);
                    }
                }
            }
        }
    }
}

/// A confined sftp server -> the client: its packets, and between two of
/// them the refusals waiting.
pub(super) fn confined_out(
    link: Arc<Link>,
    mut src: impl Read,
    sftp: Option<Arc<Mutex<sftp::Decoder>>>,
    out: Arc<Mutex<ClientOut>>,
) {
    let mut buf = vec![0u8; READ];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        record(&link, Stream::Out, &buf[..n]);
        if let Some(d) = &sftp {
            if let Ok(mut d) = d.lock() {
                d.server(&buf[..n]);
            }
        }
        let mut o = lock(&out);
        let ends = o.replies.feed(&buf[..n]);
        let mut from = 0;
        for end in ends {
            o.write(&buf[from..end]);
            from = end;
            for reply in std::mem::take(&mut o.waiting) {
                o.write(&reply);
            }
        }
        o.write(&buf[from..n]);
    }
    let mut o = lock(&out);
    for reply in std::mem::take(&mut o.waiting) {
        o.write(&reply);
    }
    o.file = None;
    o.gone = true;
    drop(o);
    sys::close_std(1);
}
