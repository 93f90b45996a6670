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

/// Deletes, below `root`, every entry owned by `uid` (with everything
/// inside a folder of the uid); stops at `deadline`.
pub fn remove_owned(root: &Path, uid: Uid, deadline: Instant) -> Sweep {
    walk(root, uid, deadline, false)
}

/// The walker: `all` when everything below `root` goes.
fn walk(root: &Path, uid: Uid, deadline: Instant, all: bool) -> Sweep {
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
    report.merge(walk(path, uid, deadline, true));
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
