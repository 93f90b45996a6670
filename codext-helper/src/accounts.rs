//! Creating and removing temporary accounts with the stock tools
//! (`useradd`, `userdel`, `groupadd`), run by absolute path with a clean
//! environment, and the checks that keep the helper's hands off every
//! account it did not create.

use crate::error::{HelperError, Result};
use crate::store::Entry;
use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};
use nix::unistd::{Group, Uid, UnlinkatFlags, User};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const USERADD: &str = "/usr/sbin/useradd";
const USERDEL: &str = "/usr/sbin/userdel";
const GROUPADD: &str = "/usr/sbin/groupadd";
/// Folders where a user may leave files outside its home.
pub const SHARED_TMP: [&str; 3] = ["/tmp", "/var/tmp", "/dev/shm"];
/// How long removal waits for the processes of a uid to disappear.
const KILL_DEADLINE: Duration = Duration::from_secs(10);

fn run(program: &str, args: &[&str]) -> Result<std::process::Output> {
    Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| HelperError::Account(format!("cannot run {program}: {e}")))
}

fn describe(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    format!("{} ({})", out.status, err.trim())
}

/// The gid of `group`, creating it as a system group if it does not exist.
pub fn ensure_group(group: &str) -> Result<u32> {
    if let Some(g) = lookup_group(group)? {
        return Ok(g);
    }
    let out = run(GROUPADD, &["--system", "--", group])?;
    if !out.status.success() {
        return Err(HelperError::Account(format!(
            "groupadd {group} failed: {}",
            describe(&out)
        )));
    }
    lookup_group(group)?
        .ok_or_else(|| HelperError::Account(format!("group {group} still missing after groupadd")))
}

/// The gid of `group`, if it exists.
pub fn lookup_group(group: &str) -> Result<Option<u32>> {
    Group::from_name(group)
        .map(|g| g.map(|g| g.gid.as_raw()))
        .map_err(|e| HelperError::System(format!("cannot look up group {group}: {e}")))
}

/// The accounts NSS and `/etc/passwd` know, for picking a free name and
/// uid (`useradd` itself only checks the files, so both are asked; the
/// file is read once per snapshot).
#[derive(Debug)]
pub struct Known {
    passwd: Vec<(String, u32)>,
}

impl Known {
    /// Reads `/etc/passwd` now.
    pub fn snapshot() -> Known {
        Known {
            passwd: passwd_file_entries(),
        }
    }

    /// True when NSS or `/etc/passwd` knows `uid`.
    pub fn uid_taken(&self, uid: u32) -> bool {
        !matches!(User::from_uid(Uid::from_raw(uid)), Ok(None))
            || self.passwd.iter().any(|(_, u)| *u == uid)
    }

    /// True when NSS or `/etc/passwd` knows `name`.
    pub fn name_taken(&self, name: &str) -> bool {
        !matches!(User::from_name(name), Ok(None)) || self.passwd.iter().any(|(n, _)| n == name)
    }
}

/// `(name, uid)` of every line of `/etc/passwd`.
pub fn passwd_file_entries() -> Vec<(String, u32)> {
    let Ok(text) = std::fs::read_to_string("/etc/passwd") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((name.to_owned(), uid))
        })
        .collect()
}

/// Creates the account exactly as announced. The userdb record must be
/// withdrawn first: `useradd` refuses a name NSS already reports.
pub fn create(entry: &Entry) -> Result<()> {
    let uid = entry.uid.to_string();
    let gid = entry.gid.to_string();
    let home = entry.home.to_string_lossy();
    let shell = entry.shell.to_string_lossy();
    let out = run(
        USERADD,
        &[
            "--uid",
            &uid,
            "--gid",
            &gid,
            "--no-user-group",
            "--home-dir",
            &home,
            "--create-home",
            "--shell",
            &shell,
            "--comment",
            "codext temporary user",
            "--key",
            "HOME_MODE=0700",
            "--",
            &entry.user,
        ],
    )?;
    if !out.status.success() {
        return Err(HelperError::Account(format!(
            "useradd {} failed: {}",
            entry.user,
            describe(&out)
        )));
    }
    verify_created(entry)
}

/// Checks that the account NSS now reports is the announced one.
fn verify_created(entry: &Entry) -> Result<()> {
    let user = User::from_name(&entry.user)
        .map_err(|e| HelperError::Account(format!("cannot look up {}: {e}", entry.user)))?
        .ok_or_else(|| {
            HelperError::Account(format!("{} does not resolve after useradd", entry.user))
        })?;
    if user.uid.as_raw() != entry.uid
        || user.gid.as_raw() != entry.gid
        || user.dir != entry.home
        || user.shell != entry.shell
    {
        return Err(HelperError::Account(format!(
            "{} was created as uid {} gid {} home {} shell {}, not as announced",
            entry.user,
            user.uid,
            user.gid,
            user.dir.display(),
            user.shell.display()
        )));
    }
    Ok(())
}

/// True when `/etc/passwd` has `entry`'s name with `entry`'s uid: the
/// account the helper created is still the one there.
pub fn is_ours_on_disk(entry: &Entry) -> bool {
    passwd_file_entries()
        .iter()
        .any(|(n, u)| n == &entry.user && *u == entry.uid)
}

/// pids of every process whose real, effective, saved or filesystem uid is
/// `uid` (zombies included: `userdel` counts them too).
pub fn processes_of(uid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|ids| ids.split_whitespace().any(|id| id.parse() == Ok(uid)))
                .unwrap_or(false)
        })
        .collect()
}

/// Kills every process of `uid` until none is left (or the deadline).
pub fn kill_all(uid: u32, gid: u32) -> Result<()> {
    let start = Instant::now();
    loop {
        if processes_of(uid).is_empty() {
            return Ok(());
        }
        crate::sys::kill_all_as(uid, gid).map_err(|e| {
            HelperError::Account(format!("cannot kill the processes of uid {uid}: {e}"))
        })?;
        if processes_of(uid).is_empty() {
            return Ok(());
        }
        if start.elapsed() > KILL_DEADLINE {
            return Err(HelperError::Account(format!(
                "processes of uid {uid} remain after {}s: {:?}",
                KILL_DEADLINE.as_secs(),
                processes_of(uid)
            )));
        }
        // Killed processes become zombies until their parent reaps them;
        // give the parents a moment before the next pass.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes an account the helper created: kills its processes, runs
/// `userdel -r`, then deletes what the uid left in the shared temporary
/// folders. Refuses anything that is not demonstrably its own.
pub fn remove(entry: &Entry, uid_range: (u32, u32)) -> Result<()> {
    if !entry.account_created
        || codext_wire::UserName::parse(&entry.user).is_err()
        || entry.uid < uid_range.0
        || entry.uid > uid_range.1
    {
        return Err(HelperError::Account(format!(
            "{} is not an account codext created; not touching it",
            entry.user
        )));
    }
    kill_all(entry.uid, entry.gid)?;
    if is_ours_on_disk(entry) {
        let out = run(USERDEL, &["--remove", "--", &entry.user])?;
        // 12: the home could not be removed (already gone is fine, it is
        // checked below); anything else is a failure.
        if !out.status.success() && out.status.code() != Some(12) {
            return Err(HelperError::Account(format!(
                "userdel {} failed: {}",
                entry.user,
                describe(&out)
            )));
        }
    } else if passwd_file_entries().iter().any(|(n, _)| n == &entry.user) {
        return Err(HelperError::Account(format!(
            "{} in /etc/passwd no longer has uid {}: someone else's account now; not touching it",
            entry.user, entry.uid
        )));
    }
    remove_owned_tree(&entry.home, entry.uid);
    for dir in SHARED_TMP {
        remove_owned(Path::new(dir), entry.uid);
    }
    Ok(())
}

/// Removes `path` entirely if it is owned by `uid` (a home `userdel`
/// could not remove); never follows a symlink. Best effort.
fn remove_owned_tree(path: &Path, uid: u32) {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let Ok(name) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(name)) else {
        return;
    };
    let Ok(dir) = Dir::open(parent, DIR_FLAGS, Mode::empty()) else {
        return;
    };
    if let Ok(st) = fstatat(
        Some(dir.as_raw_fd()),
        name.as_c_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        if st.st_uid == uid {
            remove_tree(&dir, &name, st.st_mode, uid, 0);
        }
    }
}

/// Deletes, below `root`, every entry owned by `uid` (with everything
/// inside a folder of the uid), working through directory handles with
/// `O_NOFOLLOW` so a symlink swapped in by another user cannot redirect
/// the deletion. Best effort: what cannot be removed stays.
pub fn remove_owned(root: &Path, uid: u32) {
    if let Ok(mut dir) = Dir::open(root, DIR_FLAGS, Mode::empty()) {
        sweep(&mut dir, uid, 0, false);
    }
}

const MAX_DEPTH: usize = 64;
const DIR_FLAGS: OFlag = OFlag::O_DIRECTORY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Walks `dir`: removes the entries owned by `uid` (every entry when
/// `all`, i.e. inside a folder of the uid) and descends into the others.
fn sweep(dir: &mut Dir, uid: u32, depth: usize, all: bool) {
    if depth > MAX_DEPTH {
        return;
    }
    let names: Vec<std::ffi::CString> = dir
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in names {
        let Ok(st) = fstatat(
            Some(dir.as_raw_fd()),
            name.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) else {
            continue;
        };
        if all || st.st_uid == uid {
            remove_tree(dir, &name, st.st_mode, uid, depth);
        } else if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            if let Ok(mut sub) = Dir::openat(
                Some(dir.as_raw_fd()),
                name.as_c_str(),
                DIR_FLAGS,
                Mode::empty(),
            ) {
                sweep(&mut sub, uid, depth + 1, false);
            }
        }
    }
}

/// Removes the entry `name` of `dir`, emptying it first if a folder.
fn remove_tree(dir: &Dir, name: &std::ffi::CStr, mode: u32, uid: u32, depth: usize) {
    let fd = Some(dir.as_raw_fd());
    if mode & libc::S_IFMT == libc::S_IFDIR {
        if let Ok(mut sub) = Dir::openat(fd, name, DIR_FLAGS, Mode::empty()) {
            sweep(&mut sub, uid, depth + 1, true);
        }
        let _ = nix::unistd::unlinkat(fd, name, UnlinkatFlags::RemoveDir);
    } else {
        let _ = nix::unistd::unlinkat(fd, name, UnlinkatFlags::NoRemoveDir);
    }
}
