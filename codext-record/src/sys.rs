//! The recorder's only `unsafe` code: the raw system calls std does not
//! offer (prctl, terminal ioctls and termios, openpty, signal masks and
//! sigwait, waitpid, kill, setresgid), each behind a small safe function
//! whose `// SAFETY:` comment names the contract it relies on.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `prctl(PR_SET_DUMPABLE, 0)`: from now on no process of the same uid may
/// ptrace this one or open its `/proc/PID/mem` (ptrace(2), "Ptrace access
/// mode checking": a non-dumpable target needs `CAP_SYS_PTRACE`).
pub fn set_non_dumpable() -> io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes one integer argument; the unused ones
    // are passed as 0 as prctl(2) asks. No memory is shared with the kernel.
    check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }).map(|_| ())
}

/// `prctl(PR_GET_DUMPABLE)`.
pub fn is_dumpable() -> bool {
    // SAFETY: PR_GET_DUMPABLE takes no argument and returns 0, 1 or 2.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 }
}

/// Longest environment read back (the kernel's own limit on arguments and
/// environment together is a few MiB).
const MAX_ENVIRON: usize = 8 << 20;

/// The environment exactly as the kernel placed it on this process's stack
/// at exec (`NAME=value` strings, each ending in a NUL). glibc's secure
/// mode (this is a setgid program) removes variables such as `TMPDIR` or
/// `LD_LIBRARY_PATH` from the process's own `environ` — so they never
/// reach the recorder — but the shell must still get them, they are the
/// user's; and `/proc/self/environ` is root's in a non-dumpable process,
/// so it cannot be opened. The area's bounds are fields 50 and 51 of
/// `/proc/self/stat` (proc(5): `env_start`, `env_end`; shown to the
/// process itself).
pub fn original_environment() -> Option<Vec<u8>> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields from the third on, after the command name in parentheses.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let start: usize = fields.get(50 - 3)?.parse().ok()?;
    let end: usize = fields.get(51 - 3)?.parse().ok()?;
    if start == 0 || end <= start || end - start > MAX_ENVIRON {
        return None;
    }
    // SAFETY: [start, end) is this process's own environment area, which
    // the kernel copied onto the initial stack at exec and reports for it;
    // it stays mapped and initialised for the life of the process, and
    // nothing writes to it (glibc's unsetenv only edits the pointer array,
    // and the recorder never calls setenv). It is copied out at once.
    let area = unsafe { std::slice::from_raw_parts(start as *const u8, end - start) };
    Some(area.to_vec())
}

/// True when `fd` is a terminal.
pub fn isatty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

/// The window size of terminal `fd` (columns, rows).
pub fn winsize(fd: RawFd) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `struct winsize` to the pointer, which
    // points at a live, properly aligned local of exactly that type.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws as *mut libc::winsize) };
    (rc == 0).then_some((ws.ws_col, ws.ws_row))
}

/// Sets the window size of terminal `fd` (the kernel then sends SIGWINCH
/// to its foreground process group).
pub fn set_winsize(fd: RawFd, cols: u16, rows: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `struct winsize` from the pointer, a
    // live local of that type.
    check(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws as *const libc::winsize) }).map(|_| ())
}

/// `TIOCEXCL`: no further `open(2)` of terminal `fd` succeeds for anyone
/// but root (tty_ioctl(4)), so the shell the recorder runs cannot open the
/// outer terminal by its name and write to the client around the record.
pub fn set_exclusive(fd: RawFd) -> io::Result<()> {
    // SAFETY: TIOCEXCL takes no argument.
    check(unsafe { libc::ioctl(fd, libc::TIOCEXCL) }).map(|_| ())
}

/// A terminal's attributes.
#[derive(Clone, Copy)]
pub struct Termios(libc::termios);

impl std::fmt::Debug for Termios {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Termios")
    }
}

/// `tcgetattr(fd)`.
pub fn get_termios(fd: RawFd) -> io::Result<Termios> {
    // SAFETY: an all-zero termios is a valid value of this plain C struct.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr writes one termios to a live local of that type.
    check(unsafe { libc::tcgetattr(fd, &mut t) })?;
    Ok(Termios(t))
}

/// `tcsetattr(fd, TCSANOW, t)`.
pub fn set_termios(fd: RawFd, t: &Termios) -> io::Result<()> {
    // SAFETY: tcsetattr reads one termios from a live value of that type.
    check(unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t.0) }).map(|_| ())
}

/// `t` in raw mode (cfmakeraw(3)): bytes pass one by one, unechoed, with
/// no signals generated; the inner terminal does all of that.
pub fn raw(t: &Termios) -> Termios {
    let mut r = t.0;
    // SAFETY: cfmakeraw edits the termios it is given, a live local.
    unsafe { libc::cfmakeraw(&mut r) };
    Termios(r)
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD with FD_CLOEXEC only changes the descriptor's flag.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }).map(|_| ())
}

/// A new pseudo-terminal pair (master, slave), both close-on-exec (the
/// slave is handed to the child as its standard descriptors, which
/// `dup2` makes inheritable).
pub fn openpty(
    attrs: Option<&Termios>,
    size: Option<(u16, u16)>,
) -> io::Result<(OwnedFd, OwnedFd)> {
    let (mut master, mut slave): (libc::c_int, libc::c_int) = (-1, -1);
    let ws = size.map(|(cols, rows)| libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    });
    let termp = attrs.map_or(std::ptr::null(), |t| &t.0 as *const libc::termios);
    let winp = ws
        .as_ref()
        .map_or(std::ptr::null(), |w| w as *const libc::winsize);
    // SAFETY: openpty writes two descriptors to the two int pointers (live
    // locals); the name pointer may be null; termp and winp are null or
    // point at live values of their types, which openpty only reads.
    check(unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            termp as *mut libc::termios,
            winp as *mut libc::winsize,
        )
    })?;
    // SAFETY: openpty succeeded, so both are fresh descriptors owned by
    // nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    set_cloexec(master.as_raw_fd())?;
    set_cloexec(slave.as_raw_fd())?;
    Ok((master, slave))
}

/// What the child does between fork and exec: give up the recorder's
/// group (the setgid bit's), take back the default action of the job
/// control signals the recorder ignores (ignored signals survive exec),
/// unblock every signal, and — for a channel the recorder relays — start
/// its own session, with
/// `tty` (its standard input by then) as controlling terminal.
///
/// # Safety
///
/// Runs in the forked child of a multi-threaded process: it may only make
/// async-signal-safe calls (getgid, setresgid, signal, setsid and ioctl
/// are) and must not allocate, which it does not.
pub unsafe fn child_setup(new_session: bool, tty: bool) -> io::Result<()> {
    // SAFETY: getgid cannot fail.
    let gid = unsafe { libc::getgid() };
    // SAFETY: setresgid takes three integers.
    check(unsafe { libc::setresgid(gid, gid, gid) })?;
    for s in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
        // SAFETY: SIG_DFL is a valid disposition for these signals.
        unsafe { libc::signal(s, libc::SIG_DFL) };
    }
    // The recorder blocks the signals it waits for; a blocked mask survives
    // fork and exec (std does not clear it), and the shell must get them.
    // SAFETY: an all-zero sigset_t is valid storage for sigemptyset, which
    // fills it; sigprocmask reads it. Both are async-signal-safe.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        check(libc::sigprocmask(
            libc::SIG_SETMASK,
            &none,
            std::ptr::null_mut(),
        ))?;
    }
    if new_session {
        // SAFETY: setsid takes nothing.
        check(unsafe { libc::setsid() })?;
        if tty {
            // SAFETY: TIOCSCTTY takes an integer (0: do not steal).
            check(unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) })?;
        }
    }
    Ok(())
}

/// Registers [`child_setup`] on `cmd`.
pub fn with_child_setup(cmd: &mut std::process::Command, new_session: bool, tty: bool) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only calls `child_setup`, which is
    // async-signal-safe and does not allocate (see its contract).
    unsafe {
        cmd.pre_exec(move || child_setup(new_session, tty));
    }
}

/// The signals the recorder handles by waiting for them ([`wait_signal`]).
pub const HANDLED: [libc::c_int; 10] = [
    libc::SIGCHLD,
    libc::SIGWINCH,
    libc::SIGHUP,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGCONT,
];

fn handled_set() -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is valid storage for sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigemptyset and sigaddset write to the live local `set`.
    unsafe {
        libc::sigemptyset(&mut set);
        for s in HANDLED {
            libc::sigaddset(&mut set, s);
        }
    }
    set
}

/// Blocks [`HANDLED`] in this thread (threads started later inherit the
/// mask, so only [`wait_signal`] ever takes them). Also ignores SIGTSTP,
/// SIGTTIN and SIGTTOU: the recorder never stops for its terminal.
pub fn block_handled() -> io::Result<()> {
    let set = handled_set();
    // SAFETY: pthread_sigmask reads the live local set; the old mask is
    // not wanted (null).
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    for s in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
        // SAFETY: SIG_IGN is a valid disposition for these signals.
        unsafe { libc::signal(s, libc::SIG_IGN) };
    }
    Ok(())
}

/// Waits for one of [`HANDLED`] (blocked by [`block_handled`]).
pub fn wait_signal() -> libc::c_int {
    let set = handled_set();
    let mut sig: libc::c_int = 0;
    loop {
        // SAFETY: sigwait reads the live set and writes one int.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
            return sig;
        }
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit status.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// `waitpid(pid, WNOHANG)`: the child's end, if it has ended.
pub fn try_wait(pid: i32) -> Option<Status> {
    let mut st: libc::c_int = 0;
    // SAFETY: waitpid writes one int to a live local.
    let rc = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
    if rc != pid {
        return None;
    }
    if libc::WIFEXITED(st) {
        Some(Status::Code(libc::WEXITSTATUS(st)))
    } else if libc::WIFSIGNALED(st) {
        Some(Status::Signal(libc::WTERMSIG(st)))
    } else {
        None
    }
}

/// `kill(pid, sig)`; errors (the process is gone) are ignored.
pub fn kill(pid: i32, sig: libc::c_int) {
    // SAFETY: kill takes two integers.
    unsafe { libc::kill(pid, sig) };
}

/// Ends this process the way the child ended: by the same signal, with
/// its default action (sshd then reports `exit-signal` to the client, as
/// it would for the shell itself), or with the same exit status.
pub fn exit_like(status: Status) -> ! {
    if let Status::Signal(sig) = status {
        // SAFETY: resetting a disposition to SIG_DFL, unblocking it in this
        // thread and raising it are plain calls on integers and a live
        // local set. A process that is not dumpable writes no core dump.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(sig);
        }
        std::process::exit(128 + sig)
    }
    match status {
        Status::Code(c) => std::process::exit(c),
        Status::Signal(s) => std::process::exit(128 + s),
    }
}

/// Borrows a raw standard descriptor (0, 1 or 2, open for the process's
/// whole life).
pub fn std_fd(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the standard descriptors stay open until the process exits;
    // the recorder never closes them before it exits.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Points a standard descriptor at `/dev/null`, closing what it was (so
/// sshd sees the end of a command's output when the command's own output
/// ends, while the number stays taken and nothing else lands on it).
pub fn close_std(fd: RawFd) {
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return;
    };
    // SAFETY: dup2 between two open descriptors; `null` stays open until
    // after the call, and the standard descriptor remains open (on
    // /dev/null) for the rest of the process.
    unsafe { libc::dup2(null.as_raw_fd(), fd) };
}

/// Asks for a pipe buffer of `bytes` (`F_SETPIPE_SZ`); a descriptor that is
/// not a pipe, or a size over the system's limit, is left as it is.
pub fn grow_pipe(fd: RawFd, bytes: libc::c_int) {
    // SAFETY: F_SETPIPE_SZ takes an integer and changes only the pipe's
    // buffer size.
    unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, bytes) };
}

/// A pipe, both ends close-on-exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: pipe2 writes two descriptors to the array, a live local of
    // two ints.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded: both are fresh descriptors owned by nobody
    // else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Writes `bytes` on the Unix socket `sock` with `fds` attached
/// (`SCM_RIGHTS`, unix(7)): the receiver gets its own copies of them.
pub fn send_with_fds(sock: RawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    if bytes.is_empty() || fds.is_empty() || fds.len() > 8 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bytes and 1..=8 descriptors",
        ));
    }
    let payload = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE only computes a size from an integer.
    let space = unsafe { libc::CMSG_SPACE(payload as libc::c_uint) } as usize;
    // u64-aligned storage, as cmsghdr needs.
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is a valid value of this plain C struct.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `space` zeroed, aligned bytes of
    // `control`, which CMSG_FIRSTHDR/CMSG_DATA address inside; the header
    // and the descriptors written fit in `space` (CMSG_SPACE(payload)).
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(io::Error::other("no room for the control message"));
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(payload as libc::c_uint) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr() as *const u8, libc::CMSG_DATA(cmsg), payload);
    }
    // SAFETY: msg and everything it points at (iov -> bytes, control) are
    // live for the call; sendmsg only reads them.
    let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // The descriptors went with the first byte; the rest, if the socket
    // took less, follows as plain bytes.
    let mut sent = n as usize;
    while sent < bytes.len() {
        // SAFETY: a plain send of the live slice's remaining bytes.
        let m = unsafe {
            libc::send(
                sock,
                bytes[sent..].as_ptr() as *const libc::c_void,
                bytes.len() - sent,
                libc::MSG_NOSIGNAL,
            )
        };
        if m < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        sent += m as usize;
    }
    Ok(())
}

/// Raises SIGCHLD on this process: the main thread's
/// [`wait_signal`] wakes (a container session ended, told by the helper).
pub fn raise_sigchld() {
    // SAFETY: getpid and kill take and return integers.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGCHLD);
    }
}

/// Asks for a send buffer of `bytes` on `sock` (the kernel caps it at
/// `net.core.wmem_max`).
pub fn set_send_buffer(sock: &impl AsRawFd, bytes: libc::c_int) {
    // SAFETY: SO_SNDBUF reads one int from a live local.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            std::ptr::addr_of!(bytes).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}
