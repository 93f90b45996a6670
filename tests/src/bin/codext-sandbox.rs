//! `codext-sandbox -- COMMAND…`: runs COMMAND as root inside a throw-away
//! copy of the machine, so tests and the demo can create users, edit `/etc`
//! and start sshd without changing anything real.
//!
//! * new mount, PID, network and IPC namespaces (`unshare(2)`); all mounts
//!   made private first, so nothing propagates back to the host; SysV IPC
//!   objects made inside never reach the machine's;
//! * **the whole root file system read-only** (every host mount outside
//!   `/proc`, `/sys` and `/dev` remounted read-only): the only places
//!   anyone can write are the scratch mounts below, so "every file of a uid
//!   anywhere" is a finite set a test can walk (its writable mounts, from
//!   `/proc/self/mountinfo`);
//! * `/dev` is a private tmpfs copy of the host's (device nodes made again,
//!   `/dev/pts` bound), read-only once built, with a fresh `mqueue` on
//!   `/dev/mqueue` (the host needs none) and a fresh tmpfs on `/dev/shm`;
//! * folders given with `--keep DIR` (the checkout and its target folder),
//!   and the working folder, stay visible read-only at the same path even
//!   when they lie under `/tmp` or another hidden folder; the one folder
//!   given with `--artifacts DIR` stays writable (what a test keeps, such
//!   as a screenshot, lands there);
//! * `/run` is a fresh tmpfs (with `/run/sshd`, `/run/userdb`); `/etc` is a
//!   bind mount of a copy of the real `/etc` kept in that tmpfs;
//! * fresh tmpfs over `/home`, `/var/log`, `/var/mail`, `/var/lib`, `/tmp`,
//!   `/var/tmp`, `/dev/shm`, and `/var/spool` (its cron and at folders made
//!   again with the host's owners and modes, so at jobs and crontabs stay
//!   inside); `/tmp`, `/var/tmp` and `/home` without `nosuid`, as on
//!   Debian, so a setuid leftover is a real one; a fresh `/proc` for the new PID
//!   namespace;
//! * the session recorder, built statically by `tests/build.rs`, where the
//!   package installs it (`/usr/lib/codext/codext-record`, root's, 0755;
//!   `codext-helper init` gives it its group and setgid mode): `/usr/lib`
//!   gets a read-only overlay that adds the folder, and the folder itself
//!   a small tmpfs (setuid allowed) holding the file;
//! * the network namespace has only `lo`, brought up;
//! * this process becomes PID 1 of the namespace: it reaps every orphan
//!   (as init must, or `userdel` would see zombies) and, when COMMAND ends,
//!   exits with its status — the kernel then kills whatever is left.
//!
//! Everything disappears with the namespaces: the host's `/etc`, `/home`,
//! `/run`, users and network are untouched.
#![allow(unsafe_code)]

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

#[path = "codext-sandbox/fs.rs"]
mod fs;

const SCRATCH: [(&str, &str); 7] = [
    ("/home", "0755"),
    ("/var/log", "0755"),
    ("/var/mail", "2775"),
    ("/var/lib", "0755"),
    ("/tmp", "1777"),
    ("/var/tmp", "1777"),
    ("/dev/shm", "1777"),
];

fn die(msg: &str) -> ! {
    eprintln!("codext-sandbox: {msg}");
    exit(125)
}

/// True when `path` lies at or under one of the folders the sandbox covers
/// with a fresh mount.
fn hidden(path: &Path) -> bool {
    SCRATCH
        .iter()
        .map(|(d, _)| *d)
        .chain(["/run", "/var/spool", "/dev"])
        .any(|d| path.starts_with(d))
}

fn tmpfs(target: &str, mode: &str) {
    let data = format!("mode={mode}");
    // Debian's /tmp, /var/tmp and /home sit on the root file system,
    // setuid allowed: so here too (a setuid leftover is a real one).
    let flags = if matches!(target, "/tmp" | "/var/tmp" | "/home") {
        MsFlags::MS_NODEV
    } else {
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV
    };
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        flags,
        Some(data.as_str()),
    )
    .unwrap_or_else(|e| die(&format!("tmpfs on {target}: {e}")));
}

fn setup(keep: &[PathBuf]) {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .unwrap_or_else(|e| die(&format!("making / private: {e}")));
    fs::read_only_root();
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .unwrap_or_else(|e| die(&format!("mounting /proc: {e}")));
    tmpfs("/run", "0755");
    for (dir, mode) in [
        ("/run/sshd", 0o755),
        ("/run/userdb", 0o755),
        ("/run/sandbox", 0o700),
        ("/run/lock", 0o1777),
    ] {
        std::fs::create_dir(dir).unwrap_or_else(|e| die(&format!("mkdir {dir}: {e}")));
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap_or_else(|e| die(&format!("chmod {dir}: {e}")));
    }
    let stashed = fs::stash(keep);
    let copied = Command::new("/bin/cp")
        .args(["-a", "/etc", "/run/sandbox/etc"])
        .status();
    if !copied.map(|s| s.success()).unwrap_or(false) {
        die("copying /etc failed");
    }
    mount(
        Some("/run/sandbox/etc"),
        "/etc",
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap_or_else(|e| die(&format!("bind-mounting the /etc copy: {e}")));
    fs::private_dev();
    for (dir, mode) in SCRATCH {
        tmpfs(dir, mode);
    }
    spool();
    fs::restore(&stashed);
    fs::recorder(Path::new(env!("CODEXT_RECORD_STATIC")));
    let lo = Command::new("/usr/sbin/ip")
        .args(["link", "set", "lo", "up"])
        .status();
    if !lo.map(|s| s.success()).unwrap_or(false) {
        die("bringing up lo failed (is iproute2 installed?)");
    }
}

/// A fresh `/var/spool` holding the host's cron and at folders (empty),
/// with their owners and modes.
fn spool() {
    use std::os::unix::fs::MetadataExt;
    let dirs = [
        "/var/spool/cron",
        "/var/spool/cron/crontabs",
        "/var/spool/cron/atjobs",
        "/var/spool/cron/atspool",
    ];
    let host: Vec<(&str, u32, u32, u32)> = dirs
        .iter()
        .filter_map(|d| {
            std::fs::metadata(d)
                .ok()
                .map(|m| (*d, m.mode(), m.uid(), m.gid()))
        })
        .collect();
    if std::fs::metadata("/var/spool").is_err() {
        return;
    }
    tmpfs("/var/spool", "0755");
    for (dir, mode, uid, gid) in host {
        std::fs::create_dir(dir).unwrap_or_else(|e| die(&format!("mkdir {dir}: {e}")));
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .unwrap_or_else(|e| die(&format!("chown {dir}: {e}")));
        std::fs::set_permissions(
            dir,
            std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
        )
        .unwrap_or_else(|e| die(&format!("chmod {dir}: {e}")));
        // at(1) numbers its jobs from this file and refuses to queue one
        // without it.
        if dir.ends_with("/atjobs") {
            let seq = format!("{dir}/.SEQ");
            std::fs::write(&seq, b"").unwrap_or_else(|e| die(&format!("creating {seq}: {e}")));
            std::os::unix::fs::chown(&seq, Some(uid), Some(gid))
                .unwrap_or_else(|e| die(&format!("chown {seq}: {e}")));
            std::fs::set_permissions(&seq, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap_or_else(|e| die(&format!("chmod {seq}: {e}")));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut keep: Vec<PathBuf> = Vec::new();
    let mut artifacts: Option<PathBuf> = None;
    let mut rest = &args[..];
    while let Some(flag @ ("--keep" | "--artifacts")) = rest.first().map(String::as_str) {
        let Some(dir) = rest.get(1) else {
            die(&format!("{flag} needs a folder"));
        };
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|e| die(&format!("{flag} {dir}: {e}")));
        if flag == "--artifacts" {
            artifacts = Some(dir);
        } else {
            keep.push(dir);
        }
        rest = &rest[2..];
    }
    if let Ok(cwd) = std::env::current_dir() {
        keep.push(cwd);
    }
    // Under a folder the sandbox covers (a checkout in /tmp): kept like the
    // checkout, then made writable.
    if let Some(dir) = &artifacts {
        if hidden(dir) && !keep.iter().any(|k| dir.starts_with(k)) {
            keep.push(dir.clone());
        }
    }
    let cmd = match rest.first().map(String::as_str) {
        Some("--") => &rest[1..],
        _ => rest,
    };
    if cmd.is_empty() {
        die("usage: codext-sandbox -- COMMAND [ARGS…]");
    }
    if !nix::unistd::geteuid().is_root() {
        die("must run as root (it creates namespaces and mounts)");
    }
    if let Ok(exe) = std::fs::canonicalize(&cmd[0]) {
        for (dir, _) in SCRATCH.iter().chain([("/run", "")].iter()) {
            if exe.starts_with(dir) && !keep.iter().any(|k| exe.starts_with(k)) {
                die(&format!(
                    "{} lies under {dir}, which the sandbox hides; pass --keep with its folder",
                    exe.display()
                ));
            }
        }
    }
    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWIPC,
    )
    .unwrap_or_else(|e| die(&format!("unshare: {e}")));
    // SAFETY: this process is single-threaded here (nothing has spawned a
    // thread), so the child may do anything after fork.
    match unsafe { fork() } {
        Err(e) => die(&format!("fork: {e}")),
        Ok(ForkResult::Parent { child }) => exit(wait_for(child)),
        Ok(ForkResult::Child) => {}
    }
    // PID 1 of the new namespace.
    setup(&keep);
    if let Some(dir) = &artifacts {
        fs::writable(dir);
    }
    let child = match Command::new(&cmd[0])
        .args(&cmd[1..])
        .env("CODEXT_SANDBOX", "1")
        .spawn()
    {
        Ok(c) => c,
        Err(e) => die(&format!("cannot run {}: {e}", cmd[0])),
    };
    let main = Pid::from_raw(child.id() as i32);
    // Reap everything; return the command's status once it ends.
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => exit(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == main => exit(128 + sig as i32),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => die(&format!("waitpid: {e}")),
        }
    }
}

fn wait_for(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => die(&format!("waitpid: {e}")),
        }
    }
}
