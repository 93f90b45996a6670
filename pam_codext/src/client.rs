//! The module's side of the helper socket: one connection per request,
//! non-blocking connect (a helper that stopped accepting cannot hang sshd
//! even with its backlog full), then blocking I/O with read and write
//! timeouts. No runtime, no threads.

use crate::logic::Helper;
use codext_wire::{read_frame, write_frame, Reply, Request};
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Talks to the helper at `socket`.
#[derive(Debug, Clone)]
pub struct SocketHelper {
    /// Socket path.
    pub socket: PathBuf,
    /// Read and write timeout.
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
        let mut stream = UnixStream::from(fd);
        stream
            .set_nonblocking(false)
            .map_err(|e| format!("socket mode: {e}"))?;
        stream
            .set_read_timeout(Some(self.timeout))
            .map_err(|e| format!("timeout: {e}"))?;
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(|e| format!("timeout: {e}"))?;
        let body = request.encode().map_err(|e| e.to_string())?;
        write_frame(&mut stream, &body).map_err(|e| format!("sending to the helper: {e}"))?;
        let frame =
            read_frame(&mut stream).map_err(|e| format!("reading the helper's reply: {e}"))?;
        Reply::decode(&frame).map_err(|e| format!("bad reply from the helper: {e}"))
    }
}
