//! The module's side of the helper socket: one connection per request,
//! non-blocking connect (a helper that stopped accepting cannot hang sshd
//! even with its backlog full), then blocking I/O bounded by one deadline
//! for the whole request. No runtime, no threads.
//!
//! The deadline, not a per-call socket timeout: `SO_RCVTIMEO` starts again
//! at every `read`, so a helper trickling its reply a byte at a time, or a
//! signal to sshd's monitor (a read interrupted by a signal is retried by
//! `read_exact` with the full timeout again), would stretch a request far
//! past `timeout=`. Before each call the socket's timeout is set to what is
//! left of the request's time.

use crate::logic::Helper;
use codext_wire::{read_frame, write_frame, Reply, Request};
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Talks to the helper at `socket`.
#[derive(Debug, Clone)]
pub struct SocketHelper {
    /// Socket path.
    pub socket: PathBuf,
    /// Limit for the whole request (connect, send, reply).
    pub timeout: Duration,
}

impl Helper for SocketHelper {
    fn ask(&self, request: &Request) -> Result<Reply, String> {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("socket: {e}"))?;
        let addr = UnixAddr::new(&self.socket).map_err(|e| format!("socket path: {e}"))?;
        // A Unix stream connect either completes at once or fails with
        // EAGAIN (backlog full): no waiting either way.
        connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr)
            .map_err(|e| format!("cannot reach the helper at {}: {e}", self.socket.display()))?;
        let stream = UnixStream::from(fd);
        stream
            .set_nonblocking(false)
            .map_err(|e| format!("socket mode: {e}"))?;
        let mut stream = Deadline {
            stream,
            until: Instant::now() + self.timeout,
        };
        let body = request.encode().map_err(|e| e.to_string())?;
        write_frame(&mut stream, &body).map_err(|e| format!("sending to the helper: {e}"))?;
        let frame =
            read_frame(&mut stream).map_err(|e| format!("reading the helper's reply: {e}"))?;
        Reply::decode(&frame).map_err(|e| format!("bad reply from the helper: {e}"))
    }
}

/// A stream whose every read and write ends by `until`.
struct Deadline {
    stream: UnixStream,
    until: Instant,
}

impl Deadline {
    /// What is left of the request's time, or `TimedOut` once it is spent
    /// (under a millisecond counts as spent: a zero socket timeout would
    /// mean "wait forever").
    fn left(&self) -> io::Result<Duration> {
        match self.until.checked_duration_since(Instant::now()) {
            Some(left) if left >= Duration::from_millis(1) => Ok(left),
            _ => Err(timed_out()),
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the request's time limit passed")
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // The kernel counts socket timeouts in jiffies: one may fire a few
        // milliseconds early, and then the rest is waited for.
        loop {
            let left = self.left()?;
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }
}

impl Write for Deadline {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let left = self.left()?;
            self.stream.set_write_timeout(Some(left))?;
            match self.stream.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codext_wire::{ReplyStatus, UserName};
    use std::os::unix::net::UnixListener;
    use std::thread;

    fn request() -> Request {
        Request::Account {
            service: "sshd".into(),
            user: UserName::parse("user-0123456789ab").expect("a valid name"),
            rhost: "127.0.0.1".into(),
        }
    }

    /// A helper on a socket in a fresh folder that runs `serve` on the
    /// first connection.
    fn helper(
        serve: impl FnOnce(UnixStream) + Send + 'static,
    ) -> (SocketHelper, thread::JoinHandle<()>, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "pam-codext-client-{}-{:?}",
            std::process::id(),
            thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch folder");
        let path = dir.join("helper.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let server = thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                serve(stream);
            }
        });
        let helper = SocketHelper {
            socket: path,
            timeout: Duration::from_secs(1),
        };
        (helper, server, dir)
    }

    fn reply_frame() -> Vec<u8> {
        let body = Reply {
            status: ReplyStatus::Ok,
            reason: "ok".into(),
        }
        .encode();
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        frame
    }

    #[test]
    fn given_a_prompt_helper_then_its_reply_is_read() {
        let (helper, server, dir) = helper(|mut s| {
            let _ = read_frame(&mut s);
            let _ = s.write_all(&reply_frame());
        });
        let reply = helper.ask(&request()).expect("a reply");
        assert_eq!(reply.status, ReplyStatus::Ok);
        server.join().expect("server");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn given_a_helper_trickling_its_reply_then_the_request_ends_at_its_time_limit() {
        // A byte every 200 ms keeps every single read under the 1 s limit:
        // with a per-read timeout the 40-odd bytes would take 8 s and
        // succeed. The whole request may take 1 s.
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (helper, server, dir) = helper(move |mut s| {
            let _ = read_frame(&mut s);
            for byte in reply_frame() {
                if done_rx.try_recv().is_ok() || s.write_all(&[byte]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(200));
            }
        });
        let started = Instant::now();
        let answer = helper.ask(&request());
        let took = started.elapsed();
        let _ = done_tx.send(());
        server.join().expect("server");
        let _ = std::fs::remove_dir_all(dir);
        let err = answer.expect_err("a trickled reply past the time limit was accepted");
        assert!(err.contains("time limit"), "{err}");
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(4),
            "the request took {took:?} with a 1 s limit"
        );
    }

    #[test]
    fn given_a_helper_that_never_answers_then_the_request_ends_at_its_time_limit() {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (helper, server, dir) = helper(move |mut s| {
            let _ = read_frame(&mut s);
            let _ = done_rx.recv();
        });
        let started = Instant::now();
        let answer = helper.ask(&request());
        let took = started.elapsed();
        let _ = done_tx.send(());
        server.join().expect("server");
        let _ = std::fs::remove_dir_all(dir);
        let err = answer.expect_err("no reply, yet an answer");
        assert!(err.contains("time limit"), "{err}");
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(4),
            "the request took {took:?} with a 1 s limit"
        );
    }
}
