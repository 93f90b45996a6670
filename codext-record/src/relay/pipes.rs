//! A channel without a terminal: pipes to the command's three
//! descriptors, one thread per direction.

use super::confined_sftp::{confined_in, confined_out, ClientOut};
use super::record::{fatal, record, record_shared};
use super::sizes::{PIPE, READ};
use super::target::{spawn, start, wait_child, Child, Target};
use crate::link::{Link, Shared};
use crate::sys::{self, Status};
use codext_record::proto::{Stream, ToHelper};
use codext_record::{confine, sftp};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

/// Copies `src` to the client's descriptor `fd`, recording it as `stream`
/// (and feeding an sftp decoder the server's replies); at the end of the
/// shell's output the client's descriptor is closed too, as sshd would
/// see it from the shell itself.
fn pump_out(
    link: Arc<Link>,
    mut src: impl Read,
    stream: Stream,
    fd: i32,
    sftp: Option<Arc<Mutex<sftp::Decoder>>>,
) {
    let mut dst = File::from(match sys::std_fd(fd).try_clone_to_owned() {
        Ok(f) => f,
        Err(_) => return,
    });
    // The read buffer is shared with the record's ring: a bulk read is
    // held there without a copy (`link/ring.rs`); while the ring holds it,
    // the next read goes to another buffer.
    let mut buf: Shared = Arc::new(link.read_buffer(READ));
    let mut client_gone = false;
    loop {
        if Arc::get_mut(&mut buf).is_none() {
            buf = Arc::new(link.read_buffer(READ));
        }
        let Some(space) = Arc::get_mut(&mut buf) else {
            break;
        };
        let n = match src.read(space) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if n >= READ / 2 {
            record_shared(&link, stream, &buf, n);
        } else {
            record(&link, stream, &buf[..n]);
        }
        if let Some(d) = &sftp {
            if let Ok(mut d) = d.lock() {
                d.server(&buf[..n]);
            }
        }
        if !client_gone && dst.write_all(&buf[..n]).is_err() {
            client_gone = true;
        }
    }
    drop(dst);
    sys::close_std(fd);
}

/// A channel without a terminal: pipes to the shell's three descriptors.
pub(super) fn run_pipes(
    target: Target,
    link: &Arc<Link>,
    is_sftp: bool,
    confine: Option<Vec<u8>>,
) -> Status {
    type Ends = (
        Option<Box<dyn Write + Send>>,
        Option<Box<dyn Read + Send>>,
        Option<Box<dyn Read + Send>>,
    );
    let (child, (stdin, stdout, stderr)): (Child, Ends) = match target {
        Target::Local(mut cmd) => {
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut c = spawn(cmd, false);
            for fd in [
                c.stdout.as_ref().map(AsRawFd::as_raw_fd),
                c.stderr.as_ref().map(AsRawFd::as_raw_fd),
            ]
            .into_iter()
            .flatten()
            {
                sys::grow_pipe(fd, PIPE);
            }
            let ends: Ends = (
                c.stdin.take().map(|x| Box::new(x) as Box<dyn Write + Send>),
                c.stdout.take().map(|x| Box::new(x) as Box<dyn Read + Send>),
                c.stderr.take().map(|x| Box::new(x) as Box<dyn Read + Send>),
            );
            (
                Child::Local {
                    pid: c.id() as i32,
                    _handle: c,
                },
                ends,
            )
        }
        remote @ Target::Remote { .. } => {
            // Three pipes: the helper's `docker exec` gets one end of each.
            let (Ok((in_r, in_w)), Ok((out_r, out_w)), Ok((err_r, err_w))) =
                (sys::pipe(), sys::pipe(), sys::pipe())
            else {
                eprintln!("codext: cannot make pipes");
                std::process::exit(1)
            };
            for fd in [out_r.as_raw_fd(), err_r.as_raw_fd(), 1, 2] {
                sys::grow_pipe(fd, PIPE);
            }
            let child = start(
                remote,
                [in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
                false,
            );
            // Only the helper's copies stay: their end is the session's.
            drop((in_r, out_w, err_w));
            let ends: Ends = (
                Some(Box::new(File::from(in_w))),
                Some(Box::new(File::from(out_r))),
                Some(Box::new(File::from(err_r))),
            );
            (child, ends)
        }
    };
    let decoder = is_sftp.then(|| Arc::new(Mutex::new(sftp::Decoder::new())));
    for fd in [1, 2] {
        sys::grow_pipe(fd, PIPE);
    }
    // A confined sftp server: the client's side is shared by
    // the server's replies and the filter's refusals.
    let shared = match (&confine, sys::std_fd(1).try_clone_to_owned()) {
        (Some(_), Ok(out)) => Some(Arc::new(Mutex::new(ClientOut {
            file: Some(File::from(out)),
            replies: confine::Replies::default(),
            waiting: Vec::new(),
            gone: false,
        }))),
        _ => None,
    };
    // Client -> shell.
    if let (Some(root), Some(out)) = (confine.clone(), shared.clone()) {
        if let Some(dst) = stdin {
            let l = Arc::clone(link);
            let d = decoder.clone();
            let _ = std::thread::Builder::new()
                .name("in".into())
                .spawn(move || confined_in(l, dst, d, root, out));
        }
    } else if let Some(mut dst) = stdin {
        let l = Arc::clone(link);
        let d = decoder.clone();
        let _ = std::thread::Builder::new()
            .name("in".into())
            .spawn(move || {
                let Ok(src) = sys::std_fd(0).try_clone_to_owned() else {
                    return;
                };
                let mut src = File::from(src);
                let mut buf = vec![0u8; READ];
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
                    if dst.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                // Dropping `dst` closes the shell's standard input: its EOF.
            });
    }
    let mut pumps = Vec::new();
    if let Some(out) = stdout {
        let l = Arc::clone(link);
        let d = decoder.clone();
        let shared = shared.clone();
        pumps.push(
            std::thread::Builder::new()
                .name("out".into())
                .spawn(move || match shared {
                    Some(client) => confined_out(l, out, d, client),
                    None => pump_out(l, out, Stream::Out, 1, d),
                }),
        );
    }
    if let Some(err) = stderr {
        let l = Arc::clone(link);
        pumps.push(
            std::thread::Builder::new()
                .name("err".into())
                .spawn(move || pump_out(l, err, Stream::Err, 2, None)),
        );
    }
    let status = wait_child(&child, link, None);
    // As sshd does, the channel lasts until the shell's output ends (a
    // background job may hold it open after the shell exited).
    for p in pumps.into_iter().flatten() {
        let _ = p.join();
    }
    drop(child);
    status
}
