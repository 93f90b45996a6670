//! Deleting what a removed uid left behind, through directory handles
//! opened with `O_NOFOLLOW` so a symlink swapped in by another user cannot
//! redirect the deletion.

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};
use nix::unistd::UnlinkatFlags;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Removes `path` entirely if it is owned by `uid` (a home `userdel`
/// could not remove); never follows a symlink. Best effort.
pub fn remove_owned_tree(path: &Path, uid: u32) {
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
