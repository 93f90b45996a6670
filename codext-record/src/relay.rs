//! Running the real shell and relaying the channel through the recorder.
//!
//! Every byte is recorded ([`Link::send`]) before it is passed on, so
//! nothing reaches the client, or the shell, that the record lacks. One
//! thread per direction with blocking I/O (a slow reader on one side never
//! stops the other); the main thread takes the signals (all blocked
//! elsewhere) and waits for the shell.

use crate::link::{Link, Lost, Opened};
use crate::sys::{self, Status};
use crate::Mode;
use codext_record::proto::{Exit, Stream, ToHelper};
use codext_record::{sftp, Kind};
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Largest read from the shell or the client (the link cuts it in frames).
const READ: usize = 256 * 1024;
/// Pipe buffers asked for between the shell and the recorder, and to sshd
/// (fewer, larger reads and writes on a bulk transfer).
const PIPE: i32 = 1 << 20;

/// The shell's pid, for [`fatal`].
static CHILD: AtomicI32 = AtomicI32::new(0);
/// How long output may still come after a terminal session's shell ended
/// (a background job holding the terminal must not keep the channel).
const DRAIN: Duration = Duration::from_millis(500);

/// The recording cannot go on and the operator did not choose to fail
/// open: the channel ends now, the shell and its process group with it.
fn fatal(lost: &Lost) -> ! {
    eprintln!("\r\ncodext: {}\r", lost.0);
    let child = CHILD.load(Ordering::SeqCst);
    if child > 0 {
        sys::kill(-child, libc::SIGKILL);
        sys::kill(child, libc::SIGKILL);
    }
    std::process::exit(255)
}

fn record(link: &Link, stream: Stream, bytes: &[u8]) {
    if let Err(lost) = link.data(stream, bytes) {
        fatal(&lost);
    }
}

fn base_name(shell: &[u8]) -> OsString {
    let base = shell.rsplit(|b| *b == b'/').next().unwrap_or(shell);
    OsString::from_vec(base.to_vec())
}

/// The real shell as sshd would have run it: `-bash` for a login, `bash
/// -c COMMAND` for a command, with the environment sshd built (`SHELL`
/// naming the real shell, so programs that start "the user's shell" do
/// not start a recorder inside the recorder).
fn shell_command(shell: &[u8], mode: &Mode, env: &[(OsString, OsString)]) -> Command {
    let path = OsString::from_vec(shell.to_vec());
    let mut cmd = Command::new(&path);
    let base = base_name(shell);
    match mode {
        Mode::Login => {
            let mut arg0 = OsString::from("-");
            arg0.push(&base);
            cmd.arg0(arg0);
        }
        Mode::Interactive => {
            cmd.arg0(&base);
        }
        Mode::Command(c) => {
            cmd.arg0(&base).arg("-c").arg(OsString::from_vec(c.clone()));
        }
    }
    cmd.env_clear();
    for (k, v) in env {
        if k.as_bytes() != b"SHELL" {
            cmd.env(k, v);
        }
    }
    cmd.env("SHELL", &path);
    cmd
}

/// Runs the channel; never returns.
pub fn run(opened: Opened, mode: Mode, env: Vec<(OsString, OsString)>, tty: bool) -> ! {
    let (link, shell, input) = match opened {
        Opened::Unrecorded { shell } => {
            // Failing open: the shell replaces the recorder (the helper has
            // written an audit line saying this channel is not recorded).
            let mut cmd = shell_command(&shell, &mode, &env);
            sys::with_child_setup(&mut cmd, false, false);
            let e = cmd.exec();
            eprintln!("codext: cannot run the shell: {e}");
            std::process::exit(127)
        }
        Opened::Record { link, shell, input } => (Arc::<Link>::from(link), shell, input),
    };
    if let Err(e) = sys::block_handled() {
        eprintln!("codext: cannot set up signals: {e}");
        std::process::exit(1)
    }
    // What waits in the recorder goes out at least every FLUSH_MS, also
    // when the channel falls quiet. (Started after the signals are
    // blocked: every thread must leave them to the main one.)
    let l = Arc::clone(&link);
    let _ = std::thread::Builder::new()
        .name("flush".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(codext_record::proto::FLUSH_MS));
            if let Err(lost) = l.flush_due() {
                fatal(&lost);
            }
        });
    let kind = match &mode {
        Mode::Command(c) => Kind::of(false, c),
        _ => Kind::Shell,
    };
    let cmd = shell_command(&shell, &mode, &env);
    let status = if tty {
        run_tty(cmd, &link, input)
    } else {
        run_pipes(cmd, &link, kind == Kind::Sftp)
    };
    let exit = match status {
        Status::Code(c) => Exit::Code(c),
        Status::Signal(s) => Exit::Signal(s),
    };
    if let Err(lost) = link.finish(exit) {
        eprintln!("codext: {}", lost.0);
    }
    sys::exit_like(status)
}

fn spawn(mut cmd: Command, tty: bool) -> std::process::Child {
    sys::with_child_setup(&mut cmd, true, tty);
    match cmd.spawn() {
        Ok(c) => {
            // Lossless on Linux: pids fit in i32.
            CHILD.store(c.id() as i32, Ordering::SeqCst);
            c
        }
        Err(e) => {
            eprintln!("codext: cannot run the shell: {e}");
            std::process::exit(127)
        }
    }
}

/// Waits for the shell, handling signals meanwhile: SIGWINCH resizes the
/// inner terminal (`master`), every other signal goes to the shell (sshd's
/// `signal` requests and a hangup arrive here).
fn wait_child(pid: i32, link: &Link, master: Option<&OwnedFd>) -> Status {
    loop {
        let sig = sys::wait_signal();
        match sig {
            libc::SIGCHLD => {
                if let Some(st) = sys::try_wait(pid) {
                    return st;
                }
            }
            libc::SIGWINCH => {
                if let (Some(m), Some((cols, rows))) = (master, sys::winsize(0)) {
                    let _ = sys::set_winsize(m.as_raw_fd(), cols, rows);
                    let t_us = link.now_us();
                    if let Err(lost) = link.send(&ToHelper::Resize { t_us, cols, rows }) {
                        fatal(&lost);
                    }
                }
            }
            libc::SIGCONT => {}
            libc::SIGHUP if master.is_some() => {
                // The client's terminal hung up: hang up the shell's.
                sys::kill(-pid, libc::SIGHUP);
                sys::kill(pid, libc::SIGHUP);
            }
            other => sys::kill(pid, other),
        }
    }
}

/// A terminal channel: the shell gets a pseudo-terminal of the recorder's
/// own; the client's terminal is put in raw mode (the inner one does the
/// line discipline) and made exclusive, so the shell cannot open it by
/// name and write around the record.
fn run_tty(cmd: Command, link: &Arc<Link>, input: bool) -> Status {
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
    let mut cmd = cmd;
    cmd.stdin(stdio(&slave))
        .stdout(stdio(&slave))
        .stderr(stdio(&slave));
    let child = spawn(cmd, true);
    drop(slave);
    let pid = child.id() as i32;
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
    let status = wait_child(pid, link, Some(&master));
    let _ = done_rx.recv_timeout(DRAIN);
    if let Some(t) = &outer {
        let _ = sys::set_termios(0, t);
    }
    drop(child);
    status
}

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
    let mut buf = vec![0u8; READ];
    let mut client_gone = false;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        record(&link, stream, &buf[..n]);
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
fn run_pipes(cmd: Command, link: &Arc<Link>, is_sftp: bool) -> Status {
    let mut cmd = cmd;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(cmd, false);
    let pid = child.id() as i32;
    let decoder = is_sftp.then(|| Arc::new(Mutex::new(sftp::Decoder::new())));
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    for fd in [
        stdout.as_ref().map(AsRawFd::as_raw_fd),
        stderr.as_ref().map(AsRawFd::as_raw_fd),
        Some(1),
        Some(2),
    ]
    .into_iter()
    .flatten()
    {
        sys::grow_pipe(fd, PIPE);
    }
    // Client -> shell.
    if let Some(mut dst) = stdin {
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
        pumps.push(
            std::thread::Builder::new()
                .name("out".into())
                .spawn(move || pump_out(l, out, Stream::Out, 1, d)),
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
    let status = wait_child(pid, link, None);
    // As sshd does, the channel lasts until the shell's output ends (a
    // background job may hold it open after the shell exited).
    for p in pumps.into_iter().flatten() {
        let _ = p.join();
    }
    drop(child);
    status
}
