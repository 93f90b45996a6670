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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("mqueue") {
        mqueue(args.get(1).map(String::as_str).unwrap_or("codext-hostile"));
        return;
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
            eprintln!("usage: hostile stop|tstp|ptrace|sysv [WAIT_PID] | mqueue NAME");
            std::process::exit(2);
        }
    }
}
