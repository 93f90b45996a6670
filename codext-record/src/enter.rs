//! A container grant's channel: the recorder hands the
//! descriptors the session runs on (its own pseudo-terminal's slave, or
//! pipes) to `codext-helper` over [`proto::ENTER_SOCKET`] with
//! `SCM_RIGHTS`, and the helper — root, which alone talks to dockerd —
//! runs the session in the grant's container on them (`docker exec` as
//! the grant's uid:gid). The temporary user never holds the docker socket
//! or a group that reaches it; the recorder records what flows exactly as
//! for a shell. The helper answers with the session's end
//! ([`ToRecorder::Exited`]), which this module turns into the child's
//! status and a SIGCHLD for the waiting main thread.

use crate::sys::{self, Status};
use codext_record::proto::{self, Exit, ToHelper, ToRecorder};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};

/// The session in the container, as the recorder waits for it.
#[derive(Debug)]
pub struct Remote {
    sock: UnixStream,
    status: Mutex<Option<Status>>,
}

impl Remote {
    /// Its end, once the helper said it (or the link broke).
    pub fn status(&self) -> Option<Status> {
        *self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends it: the helper stops the `docker exec` when the connection
    /// closes (the client went away).
    pub fn hang_up(&self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }
}

/// Passes `fds` (standard input, output, error of the session) to the
/// helper with the request; a thread waits for its end.
pub fn start(
    fds: [RawFd; 3],
    tty: bool,
    command: Option<&[u8]>,
    term: &str,
) -> Result<Arc<Remote>, String> {
    let sock = UnixStream::connect(proto::ENTER_SOCKET)
        .map_err(|e| format!("cannot reach {}: {e}", proto::ENTER_SOCKET))?;
    let mut body = Vec::new();
    ToHelper::Enter {
        tty,
        login: command.is_none(),
        term: term.to_owned(),
        command: command.unwrap_or_default().to_vec(),
    }
    .encode(&mut body);
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    sys::send_with_fds(sock.as_raw_fd(), &frame, &fds)
        .map_err(|e| format!("cannot pass the session to codext-helper: {e}"))?;
    let reader = sock
        .try_clone()
        .map_err(|e| format!("cannot wait for the session: {e}"))?;
    let remote = Arc::new(Remote {
        sock,
        status: Mutex::new(None),
    });
    let r = Arc::clone(&remote);
    let _ = std::thread::Builder::new()
        .name("enter".into())
        .spawn(move || {
            let mut reader = reader;
            let mut buf = Vec::with_capacity(proto::MAX_FRAME);
            let status = match proto::read_frame(&mut reader, &mut buf).map(ToRecorder::decode) {
                Ok(Ok(ToRecorder::Exited { exit })) => match exit {
                    Exit::Code(c) => Status::Code(c),
                    Exit::Signal(s) => Status::Signal(s),
                },
                Ok(Ok(ToRecorder::Refuse { reason })) => {
                    eprintln!("\r\ncodext: {reason}\r");
                    Status::Code(1)
                }
                Ok(Ok(_)) | Ok(Err(_)) | Err(_) => {
                    eprintln!("\r\ncodext: the container session ended without its status\r");
                    Status::Code(255)
                }
            };
            *r.status.lock().unwrap_or_else(PoisonError::into_inner) = Some(status);
            sys::raise_sigchld();
        });
    Ok(remote)
}
