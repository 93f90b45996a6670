//! A small terminal driver for tests: runs a program on a fresh
//! pseudo-terminal (its controlling terminal), collects what it writes,
//! and types into it, waiting for text to appear rather than for time to
//! pass.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A program running on a terminal.
#[derive(Debug)]
pub struct Pty {
    child: Child,
    master: File,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    /// Starts `cmd` with a new terminal (80x24) as its standard input,
    /// output and error and as its controlling terminal.
    pub fn spawn(cmd: &mut Command) -> Pty {
        let ws = nix::pty::Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pair = nix::pty::openpty(Some(&ws), None).expect("openpty");
        let slave = pair.slave;
        let stdio =
            |f: &std::os::fd::OwnedFd| Stdio::from(f.try_clone().expect("dup the terminal"));
        cmd.stdin(stdio(&slave))
            .stdout(stdio(&slave))
            .stderr(stdio(&slave));
        // SAFETY: between fork and exec the closure only calls setsid and
        // ioctl(TIOCSCTTY), both async-signal-safe, and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start the program on a terminal");
        drop(slave);
        let master = File::from(pair.master);
        let mut reader = master.try_clone().expect("dup the master");
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&out);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("output").extend_from_slice(&buf[..n]);
            }
        });
        Pty { child, master, out }
    }

    /// Types `text`.
    pub fn send(&mut self, text: &str) {
        self.master
            .write_all(text.as_bytes())
            .expect("type into the terminal");
    }

    /// Everything the program wrote so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().expect("output")).into_owned()
    }

    /// Waits until the output holds `needle` (panics after `limit`).
    pub fn wait_for(&self, needle: &str, limit: Duration) {
        let start = Instant::now();
        while !self.output().contains(needle) {
            assert!(
                start.elapsed() < limit,
                "no {needle:?} on the terminal within {limit:?}; it shows:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the program to end.
    pub fn wait(&mut self) -> ExitStatus {
        self.child.wait().expect("wait for the program")
    }
}
