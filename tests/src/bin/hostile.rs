//! `hostile MODE [WAIT_PID]`: what a hostile temporary user runs to defeat
//! its own teardown. With WAIT_PID, it first waits (polling `kill(pid, 0)`, which
//! works without permission on the process) until that process is gone — e.g.
//! the sshd session process, so the attack starts exactly at logout, when
//! the helper begins removing the account. Modes:
//!
//! * `stop`: loops `kill(-1, SIGSTOP)`: freezes every process it may signal;
//! * `tstp`: the same with `SIGTSTP`;
//! * `ptrace`: loops over /proc attaching with `PTRACE_ATTACH` to every
//!   process it can (an attached process stops);
//! * `sysv`: makes a SysV shared memory segment, semaphore set and message
//!   queue, prints their ids, and exits;
//! * `mqueue NAME`: makes the POSIX message queue `/NAME` (it shows in
//!   `/dev/mqueue`), prints `mqueue ok`, and exits.
//! * `mixed-uids`: run from a setuid copy by another uid B, it keeps the
//!   file owner's uid U only as its *effective* uid (`setresuid(B, U, B)`:
//!   `Uid: B U B U`), which puts it out of reach of a sender whose uids
//!   match U only in the effective slot; prints `mixed RUID EUID SUID` and
//!   sleeps for ever; `mixed-uids N` keeps forking children (each
//!   inheriting those uids and sleeping) until it has N, 10 ms apart, so a
//!   killer that lists and kills one by one has new ones to chase.
//! * `hold-exec FILE`: opens FILE (say a setuid copy of this program) and
//!   prints `held`; then reads one line (a path) from stdin and runs the
//!   held file through the descriptor (`execveat(fd, "", AT_EMPTY_PATH)`)
//!   as `hostile read PATH`, long after FILE's directory entry may be gone.
//! * `read PATH`: prints `euid N` and PATH's contents, or `denied`.
//! * `keys`: stores a key named `codext-secret` in the user keyring (`@u`),
//!   the user-session keyring (`@us`) and the persistent keyring; prints
//!   `keys stored` (or what failed).
//! * `find-keys`: prints `found N` and one line per key of this process's
//!   keyrings (`@u`, `@us`, persistent) and of `/proc/keys` readable to it
//!   that is named `codext-secret`.
//!
//! Test support only: it is copied where the temporary user can run it.

use std::time::Duration;

fn wait_gone(pid: &str) {
    // kill(pid, 0) answers ESRCH only once the process is gone (a /proc
    // listing would not do: hidepid may hide the non-dumpable sshd
    // session process even from its own user).
    let Ok(pid) = pid.parse::<i32>() else {
        return;
    };
    let pid = nix::unistd::Pid::from_raw(pid);
    while nix::sys::signal::kill(pid, None) != Err(nix::errno::Errno::ESRCH) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn spin_signal(sig: nix::sys::signal::Signal) -> ! {
    loop {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), sig);
    }
}

fn spin_ptrace() -> ! {
    let me = std::process::id();
    loop {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            continue;
        };
        for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
            if pid as u32 != me {
                let _ = nix::sys::ptrace::attach(nix::unistd::Pid::from_raw(pid));
            }
        }
    }
}

fn sysv() {
    // SAFETY: plain System V calls with constant arguments and IPC_PRIVATE.
    let (shm, sem, msg) = unsafe {
        (
            libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600),
            libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600),
            libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600),
        )
    };
    println!("shm {shm} sem {sem} msg {msg}");
    if shm < 0 || sem < 0 || msg < 0 {
        std::process::exit(1);
    }
}

fn mqueue(name: &str) {
    let Ok(name) = std::ffi::CString::new(format!("/{name}")) else {
        std::process::exit(2);
    };
    // SAFETY: a NUL-terminated name, constant flags, default attributes.
    let q = unsafe {
        libc::mq_open(
            name.as_ptr(),
            libc::O_CREAT | libc::O_RDWR,
            0o600 as libc::mode_t,
            std::ptr::null_mut::<libc::mq_attr>(),
        )
    };
    if q < 0 {
        println!("mqueue failed: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
    println!("mqueue ok");
}

fn mixed_uids(children: u32) -> ! {
    // SAFETY: plain system calls with integer arguments.
    let ok = unsafe { libc::setresuid(libc::getuid(), libc::geteuid(), libc::getuid()) } == 0;
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: three valid out-pointers.
    unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
    println!("mixed {r} {e} {s} {}", if ok { "ok" } else { "failed" });
    use std::io::Write;
    let _ = std::io::stdout().flush();
    for _ in 0..children {
        // SAFETY: the child only sleeps (no allocation, no lock).
        if unsafe { libc::fork() } == 0 {
            loop {
                // SAFETY: plain sleep.
                unsafe { libc::sleep(3600) };
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn hold_exec(file: &str) {
    use std::io::{BufRead, Write};
    use std::os::fd::AsRawFd;
    let held = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) => {
            println!("cannot open {file}: {e}");
            std::process::exit(1);
        }
    };
    println!("held");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    let (Ok(argv0), Ok(mode), Ok(path), Ok(empty)) = (
        std::ffi::CString::new("hostile"),
        std::ffi::CString::new("read"),
        std::ffi::CString::new(line.trim()),
        std::ffi::CString::new(""),
    ) else {
        std::process::exit(2);
    };
    let argv = [
        argv0.as_ptr(),
        mode.as_ptr(),
        path.as_ptr(),
        std::ptr::null(),
    ];
    let envp = [std::ptr::null::<libc::c_char>()];
    // SAFETY: NUL-terminated argument and environment arrays of valid C
    // strings, an open descriptor; execveat only returns on failure.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            held.as_raw_fd(),
            empty.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    println!("execveat failed: {}", std::io::Error::last_os_error());
    std::process::exit(1);
}

fn read(path: &str) {
    // SAFETY: no arguments.
    let euid = unsafe { libc::geteuid() };
    println!("euid {euid}");
    match std::fs::read_to_string(path) {
        Ok(text) => println!("read {}", text.trim()),
        Err(e) => println!("denied ({e})"),
    }
}

const KEY_SPEC_USER_KEYRING: i32 = -4;
const KEY_SPEC_USER_SESSION_KEYRING: i32 = -5;
const KEY_SPEC_PROCESS_KEYRING: i32 = -2;
const KEYCTL_GET_KEYRING_ID: i32 = 0;
const KEYCTL_SEARCH: i32 = 10;
const KEYCTL_GET_PERSISTENT: i32 = 22;

/// The persistent keyring of this uid, linked into the process keyring.
fn persistent_keyring() -> i64 {
    // SAFETY: keyctl with integer arguments (-1: the caller's own uid).
    unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_GET_PERSISTENT,
            -1i64,
            KEY_SPEC_PROCESS_KEYRING as i64,
        )
    }
}

fn keyring_id(spec: i32) -> i64 {
    // SAFETY: keyctl with integer arguments; create = 1.
    unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_GET_KEYRING_ID, spec as i64, 1i64) }
}

fn keys() {
    let (Ok(kind), Ok(name), payload) = (
        std::ffi::CString::new("user"),
        std::ffi::CString::new("codext-secret"),
        b"left by the previous holder of this uid",
    ) else {
        std::process::exit(2);
    };
    let mut failed = Vec::new();
    for (label, ring) in [
        ("user", keyring_id(KEY_SPEC_USER_KEYRING)),
        ("user-session", keyring_id(KEY_SPEC_USER_SESSION_KEYRING)),
        ("persistent", persistent_keyring()),
    ] {
        // SAFETY: NUL-terminated type and description, a payload buffer
        // of the given length, a keyring id.
        let id = unsafe {
            libc::syscall(
                libc::SYS_add_key,
                kind.as_ptr(),
                name.as_ptr(),
                payload.as_ptr(),
                payload.len(),
                ring,
            )
        };
        if ring < 0 || id < 0 {
            failed.push(format!("{label}: {}", std::io::Error::last_os_error()));
        }
    }
    if failed.is_empty() {
        println!("keys stored");
    } else {
        println!("keys failed: {}", failed.join("; "));
    }
}

fn find_keys() {
    let (Ok(kind), Ok(name)) = (
        std::ffi::CString::new("user"),
        std::ffi::CString::new("codext-secret"),
    ) else {
        std::process::exit(2);
    };
    let mut found = Vec::new();
    for (label, ring) in [
        ("user", keyring_id(KEY_SPEC_USER_KEYRING)),
        ("user-session", keyring_id(KEY_SPEC_USER_SESSION_KEYRING)),
        ("persistent", persistent_keyring()),
    ] {
        if ring < 0 {
            continue;
        }
        // SAFETY: keyctl search in a keyring id for a NUL-terminated type
        // and description; no destination keyring.
        let id = unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_SEARCH,
                ring,
                kind.as_ptr(),
                name.as_ptr(),
                0i64,
            )
        };
        if id >= 0 {
            found.push(format!("{label} keyring: key {id}"));
        }
    }
    for line in std::fs::read_to_string("/proc/keys")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("codext-secret"))
    {
        found.push(format!("/proc/keys: {line}"));
    }
    println!("found {}", found.len());
    for f in found {
        println!("{f}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(0) {
        "mqueue" => return mqueue(args.get(1).map(String::as_str).unwrap_or("codext-hostile")),
        "mixed-uids" => mixed_uids(arg(1).parse().unwrap_or(0)),
        "hold-exec" => return hold_exec(arg(1)),
        "read" => return read(arg(1)),
        "keys" => return keys(),
        "find-keys" => return find_keys(),
        _ => {}
    }
    if let Some(pid) = args.get(1) {
        wait_gone(pid);
    }
    match args.first().map(String::as_str) {
        Some("stop") => spin_signal(nix::sys::signal::Signal::SIGSTOP),
        Some("tstp") => spin_signal(nix::sys::signal::Signal::SIGTSTP),
        Some("ptrace") => spin_ptrace(),
        Some("sysv") => sysv(),
        _ => {
            eprintln!("usage: hostile stop|tstp|ptrace|sysv [WAIT_PID] | mqueue NAME | mixed-uids | hold-exec FILE | read PATH | keys | find-keys");
            std::process::exit(2);
        }
    }
}
