//! Deleting what a removed uid left behind in the folders every user may
//! write to ([`crate::paths::SWEEP_ROOTS`]).
//!
//! * **No depth limit**: an iterative walk with its own stack of
//!   `(device, inode, remaining names)` frames holding *one* directory
//!   descriptor at a time. It descends with `openat(O_NOFOLLOW |
//!   O_DIRECTORY)` and checks that the folder it opened is the one it
//!   listed; it climbs back with `openat("..")` and checks that it is the
//!   parent it came from, so a folder moved during the sweep stops that
//!   walk (reported, never followed elsewhere). Symlinks are never followed.
//! * **One file system**: entries on another device than the root (a file
//!   system mounted inside `/tmp`) are looked at but never deleted; those
//!   of the uid are reported as leftovers.
//! * **Bounded time**: a sweep stops at its deadline and says so; the
//!   caller retries (the removal stays pending, the uid is not reused).
//! * **Leftovers are a failure**: anything of the uid that could not be
//!   removed is reported, and the caller quarantines the uid.
//! * **Defused before unlinked**: a regular file of the uid with its setuid
//!   or setgid bit loses both bits before its name goes. Unlinking alone
//!   would not do: a descriptor another process holds to it keeps the
//!   inode, and `execveat(fd, "", AT_EMPTY_PATH)` would still run it as the
//!   uid — as the *next* holder of the uid once it is handed out again.
//!   The file is opened without following links or blocking
//!   (`O_NOFOLLOW | O_NONBLOCK`), checked to be the inode looked at, and
//!   changed with `fchmod` on that descriptor. [`defuse_owned`] does only
//!   this (the home, before `userdel -r` removes it).

use crate::ids::Uid;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode};
use nix::unistd::UnlinkatFlags;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

const DIR_FLAGS: OFlag = OFlag::O_DIRECTORY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_RDONLY);

/// Most leftover paths named in a report (all are counted).
const MAX_NAMED: usize = 10;

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// Entries deleted.
    pub removed: u64,
    /// Entries of the uid still there (could not be deleted, or on another
    /// file system).
    pub leftovers: u64,
    /// The first few of them, with why.
    pub named: Vec<String>,
    /// The deadline passed before the walk finished.
    pub unfinished: bool,
    /// Setuid or setgid files of the uid whose bits were cleared.
    pub defused: u64,
}

impl Sweep {
    fn leftover(&mut self, path: &Path, why: &str) {
        self.leftovers += 1;
        if self.named.len() < MAX_NAMED {
            self.named.push(format!("{} ({why})", path.display()));
        }
    }

    /// Adds `other` to this report.
    pub fn merge(&mut self, other: Sweep) {
        self.removed += other.removed;
        self.leftovers += other.leftovers;
        for n in other.named {
            if self.named.len() < MAX_NAMED {
                self.named.push(n);
            }
        }
        self.unfinished |= other.unfinished;
        self.defused += other.defused;
    }

    /// True when nothing of the uid is known to remain.
    pub fn is_clean(&self) -> bool {
        self.leftovers == 0 && !self.unfinished
    }
}

struct Frame {
    dev: u64,
    ino: u64,
    /// This folder's name in its parent (empty for the root).
    name: CString,
    /// Path for reports.
    path: PathBuf,
    /// Names not yet looked at.
    todo: Vec<CString>,
    /// Everything inside goes (the folder is the uid's).
    all: bool,
    /// On another file system than the root: look, never delete.
    foreign: bool,
}

fn open_dir(at: Option<RawFd>, name: &CStr) -> nix::Result<OwnedFd> {
    let fd = match at {
        Some(dir) => openat(Some(dir), name, DIR_FLAGS, Mode::empty())?,
        None => nix::fcntl::open(name, DIR_FLAGS, Mode::empty())?,
    };
    // The kernel just returned it and nothing else owns it.
    Ok(crate::sys::own_fd(fd))
}

fn list(fd: &OwnedFd) -> nix::Result<Vec<CString>> {
    // A fresh descriptor for the listing: nix's Dir takes ownership.
    let dup = nix::unistd::dup(fd.as_raw_fd())?;
    let mut dir = nix::dir::Dir::from_fd(dup)?;
    Ok(dir
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect())
}

fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// The setuid and setgid bits.
const SET_ID_BITS: u32 = libc::S_ISUID | libc::S_ISGID;

/// Clears the setuid and setgid bits of `name` in `dir` if it is a
/// regular file with either, still the inode `st` describes. Ok(true)
/// when it cleared them, Ok(false) when there was nothing to do.
fn defuse(dir: RawFd, name: &CStr, st: &FileStat) -> nix::Result<bool> {
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_mode & SET_ID_BITS == 0 {
        return Ok(false);
    }
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    let fd = crate::sys::own_fd(openat(Some(dir), name, flags, Mode::empty())?);
    let now = fstat(fd.as_raw_fd())?;
    if now.st_dev != st.st_dev || now.st_ino != st.st_ino {
        // Swapped since it was looked at: the caller looks again.
        return Err(nix::errno::Errno::EAGAIN);
    }
    if now.st_mode & SET_ID_BITS == 0 {
        return Ok(false);
    }
    let keep = Mode::from_bits_truncate((now.st_mode & 0o7777 & !SET_ID_BITS) as libc::mode_t);
    nix::sys::stat::fchmod(fd.as_raw_fd(), keep)?;
    Ok(true)
}

/// What a walk does to the entries of the uid it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Defuse, then delete.
    Remove,
    /// Only defuse (the entries stay).
    Defuse,
}

/// Deletes, below `root`, every entry owned by `uid` (with everything
/// inside a folder of the uid), each setuid or setgid file defused first;
/// stops at `deadline`.
pub fn remove_owned(root: &Path, uid: Uid, deadline: Instant) -> Sweep {
    walk(root, uid, deadline, false, Action::Remove)
}

/// Clears the setuid and setgid bits of every regular file below `root`
/// owned by `uid`, deleting nothing; stops at `deadline`. Run on a home
/// before `userdel -r` deletes it (see the module's text).
pub fn defuse_owned(root: &Path, uid: Uid, deadline: Instant) -> Sweep {
    walk(root, uid, deadline, false, Action::Defuse)
}

/// The walker: `all` when everything below `root` is the uid's.
fn walk(root: &Path, uid: Uid, deadline: Instant, all: bool, action: Action) -> Sweep {
    let mut report = Sweep::default();
    let Ok(croot) = CString::new(root.as_os_str().as_bytes()) else {
        return report;
    };
    let Ok(mut cur) = open_dir(None, &croot) else {
        // A root that does not exist holds nothing.
        return report;
    };
    let Ok(st) = fstat(cur.as_raw_fd()) else {
        return report;
    };
    let root_dev = st.st_dev;
    let mut stack = vec![Frame {
        dev: st.st_dev,
        ino: st.st_ino,
        name: CString::default(),
        path: root.to_path_buf(),
        todo: list(&cur).unwrap_or_default(),
        all,
        foreign: false,
    }];
    loop {
        if Instant::now() >= deadline {
            report.unfinished = true;
            return report;
        }
        let Some(top) = stack.last_mut() else {
            return report;
        };
        let Some(name) = top.todo.pop() else {
            // Done with this folder: climb to its parent, then remove it
            // if it goes.
            let done = stack.pop();
            let (Some(done), Some(parent)) = (done, stack.last()) else {
                return report;
            };
            let up = CString::from(c"..");
            match open_dir(Some(cur.as_raw_fd()), &up) {
                Ok(fd) => match fstat(fd.as_raw_fd()) {
                    Ok(st) if st.st_dev == parent.dev && st.st_ino == parent.ino => cur = fd,
                    _ => {
                        report.leftover(&done.path, "its folder was moved during the sweep");
                        return report;
                    }
                },
                Err(e) => {
                    report.leftover(&done.path, &format!("cannot climb back: {e}"));
                    return report;
                }
            }
            if action == Action::Defuse {
                continue;
            }
            if done.all && !done.foreign {
                match nix::unistd::unlinkat(
                    Some(cur.as_raw_fd()),
                    done.name.as_c_str(),
                    UnlinkatFlags::RemoveDir,
                ) {
                    Ok(()) => report.removed += 1,
                    Err(e) => report.leftover(&done.path, &e.to_string()),
                }
            } else if done.all {
                report.leftover(&done.path, "on another file system");
            }
            continue;
        };
        let path = top.path.join(std::ffi::OsStr::from_bytes(name.as_bytes()));
        let (all, foreign) = (top.all, top.foreign);
        let Ok(st) = fstatat(
            Some(cur.as_raw_fd()),
            name.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) else {
            continue;
        };
        let mine = all || st.st_uid == uid.as_raw();
        if is_dir(&st) {
            let Ok(fd) = open_dir(Some(cur.as_raw_fd()), &name) else {
                if mine {
                    report.leftover(&path, "cannot open the folder");
                }
                continue;
            };
            match fstat(fd.as_raw_fd()) {
                // The folder opened is the one looked at (not swapped).
                Ok(now) if now.st_dev == st.st_dev && now.st_ino == st.st_ino => {}
                _ => {
                    report.leftover(&path, "replaced while being swept");
                    continue;
                }
            }
            let todo = match list(&fd) {
                Ok(t) => t,
                Err(e) => {
                    if mine {
                        report.leftover(&path, &format!("cannot list: {e}"));
                    }
                    continue;
                }
            };
            stack.push(Frame {
                dev: st.st_dev,
                ino: st.st_ino,
                name,
                path,
                todo,
                all: mine,
                foreign: foreign || st.st_dev != root_dev,
            });
            cur = fd;
        } else if mine {
            match defuse(cur.as_raw_fd(), &name, &st) {
                Ok(true) => report.defused += 1,
                Ok(false) => {}
                // Gone meanwhile: nothing to defuse or delete.
                Err(nix::errno::Errno::ENOENT) => continue,
                Err(e) => {
                    report.leftover(&path, &format!("cannot clear its setuid/setgid bits: {e}"));
                    continue;
                }
            }
            if action == Action::Defuse {
                continue;
            }
            if foreign || st.st_dev != root_dev {
                report.leftover(&path, "on another file system");
                continue;
            }
            match nix::unistd::unlinkat(
                Some(cur.as_raw_fd()),
                name.as_c_str(),
                UnlinkatFlags::NoRemoveDir,
            ) {
                Ok(()) => report.removed += 1,
                Err(e) => report.leftover(&path, &e.to_string()),
            }
        }
    }
}

/// Removes `path` entirely if it is owned by `uid` (a home `userdel`
/// could not remove); never follows a symlink.
pub fn remove_owned_tree(path: &Path, uid: Uid, deadline: Instant) -> Sweep {
    let mut report = Sweep::default();
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return report;
    };
    let (Ok(cparent), Ok(cname)) = (
        CString::new(parent.as_os_str().as_bytes()),
        CString::new(name.as_bytes()),
    ) else {
        return report;
    };
    let Ok(dir) = open_dir(None, &cparent) else {
        return report;
    };
    let Ok(st) = fstatat(
        Some(dir.as_raw_fd()),
        cname.as_c_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    ) else {
        return report;
    };
    if st.st_uid != uid.as_raw() {
        return report;
    }
    if !is_dir(&st) {
        match defuse(dir.as_raw_fd(), &cname, &st) {
            Ok(true) => report.defused += 1,
            Ok(false) => {}
            Err(nix::errno::Errno::ENOENT) => return report,
            Err(e) => {
                report.leftover(path, &format!("cannot clear its setuid/setgid bits: {e}"));
                return report;
            }
        }
        match nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            cname.as_c_str(),
            UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) => report.removed += 1,
            Err(e) => report.leftover(path, &e.to_string()),
        }
        return report;
    }
    // Empty it (everything inside goes), then remove it.
    report.merge(walk(path, uid, deadline, true, Action::Remove));
    if report.is_clean() {
        match nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            cname.as_c_str(),
            UnlinkatFlags::RemoveDir,
        ) {
            Ok(()) => report.removed += 1,
            Err(e) => report.leftover(path, &e.to_string()),
        }
    }
    report
}

/// What [`owners_in`] found of one uid.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Found {
    /// Entries owned by the uid.
    pub count: u64,
    /// The first few of them.
    pub named: Vec<String>,
}

/// Looks (deleting nothing) below `root`, on its file system only, without
/// following links and at most `depth` levels down (`None`: all), for
/// entries owned by a uid in `uids`; stops at `deadline` (what was found
/// so far is returned). For `init`, which must
/// not hand out a uid whose earlier holder left files that no state
/// remembers (a purge deleted it).
pub fn owners_in(
    root: &Path,
    uids: std::ops::RangeInclusive<u32>,
    depth: Option<usize>,
    deadline: Instant,
) -> std::collections::BTreeMap<u32, Found> {
    use std::os::unix::fs::MetadataExt;
    let mut found: std::collections::BTreeMap<u32, Found> = Default::default();
    let Ok(top) = std::fs::symlink_metadata(root) else {
        return found;
    };
    let mut stack = vec![(root.to_path_buf(), 1usize)];
    while let Some((dir, level)) = stack.pop() {
        if Instant::now() >= deadline {
            break;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(m) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if uids.contains(&m.uid()) {
                let f = found.entry(m.uid()).or_default();
                f.count += 1;
                if f.named.len() < MAX_NAMED {
                    f.named.push(path.display().to_string());
                }
            }
            if m.is_dir() && m.dev() == top.dev() && depth.is_none_or(|d| level < d) {
                stack.push((path, level + 1));
            }
        }
    }
    found
}
