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
use codext_record::proto::{Exit, Run, Stream, ToHelper};
use codext_record::{confine, sftp, Kind};
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

/// (issue 26) A gated grant's allowed command (or transfer), as the helper
/// decided it: the program run directly, no shell, in `cwd`, with exactly
/// the helper's environment plus the channel's own variables sshd set
/// (`TERM`, checked; `SSH_CONNECTION`, `SSH_CLIENT`, `SSH_TTY`,
/// `SSH_ORIGINAL_COMMAND`). Nothing else of the environment sshd built —
/// `~/.pam_environment` is the user's to write — reaches it.
fn exec_command(
    argv: &[Vec<u8>],
    cwd: &[u8],
    helper_env: &[(Vec<u8>, Vec<u8>)],
    env: &[(OsString, OsString)],
) -> Command {
    let program = OsString::from_vec(argv.first().cloned().unwrap_or_default());
    let mut cmd = Command::new(&program);
    cmd.args(argv.iter().skip(1).map(|a| OsString::from_vec(a.clone())));
    cmd.current_dir(OsString::from_vec(cwd.to_vec()));
    cmd.env_clear();
    for (k, v) in helper_env {
        cmd.env(OsString::from_vec(k.clone()), OsString::from_vec(v.clone()));
    }
    for (k, v) in env {
        let keep = match k.as_bytes() {
            b"TERM" => v
                .as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(b)),
            b"SSH_CONNECTION" | b"SSH_CLIENT" | b"SSH_TTY" | b"SSH_ORIGINAL_COMMAND" => true,
            _ => false,
        };
        if keep && !helper_env.iter().any(|(h, _)| h.as_slice() == k.as_bytes()) {
            cmd.env(k, v);
        }
    }
    cmd
}

/// What the relay runs.
enum Target {
    /// A process of the recorder's (the shell, or an allowed command).
    Local(Command),
    /// (issue 26) The session in the grant's container, run by the helper
    /// on descriptors the recorder passes it.
    Remote {
        /// The command (`None`: a login shell).
        command: Option<Vec<u8>>,
        /// `TERM`.
        term: String,
    },
}

/// What the relay waits for.
enum Child {
    /// Its pid (the recorder reaps it by pid; std's handle is kept only
    /// so that it is not dropped unwaited).
    Local {
        /// The pid.
        pid: i32,
        /// std's handle.
        _handle: std::process::Child,
    },
    /// The helper's report.
    Remote(Arc<crate::enter::Remote>),
}

/// Runs the channel; never returns.
pub fn run(opened: Opened, mode: Mode, env: Vec<(OsString, OsString)>, tty: bool) -> ! {
    let (link, shell, input, run) = match opened {
        Opened::Unrecorded { shell, run } => match run {
            Run::Shell => {
                // Failing open (or recording off): the shell replaces the
                // recorder.
                let mut cmd = shell_command(&shell, &mode, &env);
                sys::with_child_setup(&mut cmd, false, false);
                let e = cmd.exec();
                eprintln!("codext: cannot run the shell: {e}");
                std::process::exit(127)
            }
            // A confined sftp server still needs the recorder between:
            // it judges every request.
            Run::Exec {
                argv,
                cwd,
                env: h,
                confine,
            } if !confine.is_empty() => (
                Arc::new(Link::discard(std::time::Instant::now())),
                shell,
                false,
                Run::Exec {
                    argv,
                    cwd,
                    env: h,
                    confine,
                },
            ),
            Run::Exec {
                argv, cwd, env: h, ..
            } => {
                // The allowed command replaces the recorder: no shell.
                let mut cmd = exec_command(&argv, &cwd, &h, &env);
                sys::with_child_setup(&mut cmd, false, false);
                let e = cmd.exec();
                eprintln!(
                    "codext: cannot run {}: {e}",
                    String::from_utf8_lossy(&argv[0])
                );
                std::process::exit(127)
            }
            Run::Print { text, code } => {
                let _ = std::io::stdout().write_all(&text);
                let _ = std::io::stdout().flush();
                std::process::exit(code)
            }
            // A container session still needs the recorder between: the
            // terminal it runs on is the recorder's (resizes follow).
            Run::Enter => (
                Arc::new(Link::discard(std::time::Instant::now())),
                shell,
                false,
                Run::Enter,
            ),
        },
        Opened::Record {
            link,
            shell,
            input,
            run,
        } => (Arc::<Link>::from(link), shell, input, run),
    };
    if let Run::Print { text, code } = &run {
        record(&link, Stream::Out, text);
        let _ = std::io::stdout().write_all(text);
        let _ = std::io::stdout().flush();
        if let Err(lost) = link.finish(Exit::Code(*code)) {
            eprintln!("codext: {}", lost.0);
        }
        std::process::exit(*code)
    }
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
    let mut confine = None;
    let target = match run {
        Run::Exec {
            argv,
            cwd,
            env: h,
            confine: c,
        } => {
            if !c.is_empty() {
                confine = Some(c);
            }
            Target::Local(exec_command(&argv, &cwd, &h, &env))
        }
        Run::Enter => Target::Remote {
            command: match &mode {
                Mode::Command(c) => Some(c.clone()),
                _ => None,
            },
            term: env
                .iter()
                .find(|(k, _)| k.as_bytes() == b"TERM")
                .map(|(_, v)| v.to_string_lossy().into_owned())
                .unwrap_or_default(),
        },
        Run::Shell | Run::Print { .. } => Target::Local(shell_command(&shell, &mode, &env)),
    };
    // A confined sftp server runs on pipes whatever sshd gave the channel:
    // every request passes the filter.
    let status = if tty && confine.is_none() {
        run_tty(target, &link, input)
    } else {
        run_pipes(
            target,
            &link,
            kind == Kind::Sftp || confine.is_some(),
            confine,
        )
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
            eprintln!("codext: cannot run {:?}: {e}", cmd.get_program());
            std::process::exit(127)
        }
    }
}

/// Starts the target on the three descriptors given (for a local one,
/// `cmd`'s stdio must already name them).
fn start(target: Target, fds: [std::os::fd::RawFd; 3], tty: bool) -> Child {
    match target {
        Target::Local(cmd) => {
            let child = spawn(cmd, tty);
            Child::Local {
                pid: child.id() as i32,
                _handle: child,
            }
        }
        Target::Remote { command, term } => {
            match crate::enter::start(fds, tty, command.as_deref(), &term) {
                Ok(r) => Child::Remote(r),
                Err(why) => {
                    eprintln!("codext: {why}");
                    std::process::exit(1)
                }
            }
        }
    }
}

/// Waits for the shell, handling signals meanwhile: SIGWINCH resizes the
/// inner terminal (`master`), every other signal goes to the shell (sshd's
/// `signal` requests and a hangup arrive here). A container session's
/// hangup or termination ends it through the helper.
fn wait_child(child: &Child, link: &Link, master: Option<&OwnedFd>) -> Status {
    loop {
        let sig = sys::wait_signal();
        match (sig, child) {
            (libc::SIGCHLD, Child::Local { pid, .. }) => {
                if let Some(st) = sys::try_wait(*pid) {
                    return st;
                }
            }
            (libc::SIGCHLD, Child::Remote(r)) => {
                if let Some(st) = r.status() {
                    return st;
                }
            }
            (libc::SIGWINCH, _) => {
                if let (Some(m), Some((cols, rows))) = (master, sys::winsize(0)) {
                    let _ = sys::set_winsize(m.as_raw_fd(), cols, rows);
                    let t_us = link.now_us();
                    if let Err(lost) = link.send(&ToHelper::Resize { t_us, cols, rows }) {
                        fatal(&lost);
                    }
                }
            }
            (libc::SIGCONT, _) => {}
            (libc::SIGHUP | libc::SIGTERM, Child::Remote(r)) => r.hang_up(),
            (_, Child::Remote(_)) => {}
            (libc::SIGHUP, Child::Local { pid, .. }) if master.is_some() => {
                // The client's terminal hung up: hang up the shell's.
                sys::kill(-pid, libc::SIGHUP);
                sys::kill(*pid, libc::SIGHUP);
            }
            (other, Child::Local { pid, .. }) => sys::kill(*pid, other),
        }
    }
}

/// A terminal channel: the shell gets a pseudo-terminal of the recorder's
/// own; the client's terminal is put in raw mode (the inner one does the
/// line discipline) and made exclusive, so the shell cannot open it by
/// name and write around the record.
fn run_tty(target: Target, link: &Arc<Link>, input: bool) -> Status {
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

/// (issue 26) The client's side of a confined sftp session.
struct ClientOut {
    /// The client's descriptor (a copy of 1), dropped at the server's end
    /// so that sshd sees the channel's output end.
    file: Option<File>,
    replies: confine::Replies,
    /// Refusals waiting for the server's packet in flight to end.
    waiting: Vec<Vec<u8>>,
    gone: bool,
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
fn confined_in(
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
fn confined_out(
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

/// A channel without a terminal: pipes to the shell's three descriptors.
fn run_pipes(target: Target, link: &Arc<Link>, is_sftp: bool, confine: Option<Vec<u8>>) -> Status {
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
    // (issue 26) A confined sftp server: the client's side is shared by
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
