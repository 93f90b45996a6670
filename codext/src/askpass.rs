//! Handing the password to `ssh` from memory.
//!
//! ssh closes every inherited descriptor above 2 and runs `SSH_ASKPASS`
//! as a grandchild, so the password cannot be passed down a pipe. Instead
//! codext listens on a one-shot Unix socket in a fresh 0700 folder; the
//! only thing in ssh's environment is that socket's *path*
//! (`CODEXT_ASKPASS`). ssh runs `codext` itself as its askpass program,
//! which connects, receives the password and prints it to ssh on stdout.
//! The listener serves exactly one connection, and only to a peer of the
//! same uid (`SO_PEERCRED`); then the socket is removed. The password is
//! never in argv, the environment or a file.

use crate::error::{ClientError, Result};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use zeroize::Zeroizing;

/// Environment variable naming the callback socket.
pub const ENV: &str = "CODEXT_ASKPASS";
/// How long the listener waits for ssh to ask.
const WAIT: Duration = Duration::from_secs(60);

/// A one-shot password server.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<bool>>,
}

impl Server {
    /// Listens at `dir/askpass.sock` (`dir` must be a private folder) and
    /// serves `password` once.
    pub fn start(dir: &Path, password: Zeroizing<String>) -> Result<Server> {
        let path = dir.join("askpass.sock");
        let listener = UnixListener::bind(&path)
            .map_err(|e| ClientError::Other(format!("cannot listen on {}: {e}", path.display())))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| ClientError::Other(format!("cannot set up {}: {e}", path.display())))?;
        let sock = path.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("askpass".into())
            .spawn(move || serve_once(listener, &sock, &password, &stopped))
            .map_err(|e| ClientError::Other(format!("cannot start the askpass thread: {e}")))?;
        Ok(Server {
            path,
            stop,
            thread: Some(thread),
        })
    }

    /// The socket path (the value of [`ENV`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops listening (ssh has exited); true if the password was handed
    /// out.
    pub fn finish(mut self) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        let served = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or(false);
        let _ = std::fs::remove_file(&self.path);
        served
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_once(
    listener: UnixListener,
    path: &Path,
    password: &Zeroizing<String>,
    stop: &AtomicBool,
) -> bool {
    let deadline = std::time::Instant::now() + WAIT;
    let me = nix::unistd::getuid().as_raw();
    while std::time::Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let peer = getsockopt(&stream, PeerCredentials).map(|c| c.uid()).ok();
                if peer != Some(me) {
                    // Not ours: refuse, and keep waiting for the real ssh.
                    continue;
                }
                let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
                let ok = stream.write_all(password.as_bytes()).is_ok();
                drop(listener);
                let _ = std::fs::remove_file(path);
                return ok;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // The poll interval only bounds how fast the listener
                // notices that ssh is gone or its deadline passed.
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => return false,
        }
    }
    false
}

/// The askpass side, run by ssh: fetch the password and print it.
pub fn client(socket: &str) -> i32 {
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("codext askpass: cannot reach {socket}: {e}");
            return 1;
        }
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Zeroizing::new(Vec::with_capacity(128));
    if let Err(e) = (&mut stream).take(1024).read_to_end(&mut buf) {
        eprintln!("codext askpass: {e}");
        return 1;
    }
    if buf.is_empty() {
        eprintln!("codext askpass: no password was handed out (already used?)");
        return 1;
    }
    buf.push(b'\n');
    let mut out = std::io::stdout().lock();
    if out.write_all(&buf).and_then(|()| out.flush()).is_err() {
        return 1;
    }
    0
}
