//! The sandbox's file-system view: the host's mounts read-only, a private
//! `/dev` with a fresh `/dev/mqueue`, and kept folders (a checkout under
//! `/tmp`) put back read-only once the scratch mounts hide them.

use super::{die, hidden};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where kept folders wait while their parents are covered.
const STASH: &str = "/run/sandbox/keep";
/// Where the host's `/dev` waits while the private one is built.
const HOST_DEV: &str = "/run/sandbox/host-dev";

/// `(mount point, per-mount options)` of every mount, from mountinfo.
fn mounts() -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_else(|e| die(&format!("reading mountinfo: {e}")))
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some((unescape(f.get(4)?), (*f.get(5)?).to_owned()))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn flags_of(opts: &str) -> MsFlags {
    let mut f = MsFlags::empty();
    for o in opts.split(',') {
        f |= match o {
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "relatime" => MsFlags::MS_RELATIME,
            _ => MsFlags::empty(),
        };
    }
    f
}

fn remount_ro(target: &str, opts: &str) -> nix::Result<()> {
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | flags_of(opts),
        None::<&str>,
    )
}

/// Every host mount outside `/proc`, `/sys` and `/dev` becomes read-only
/// (in this namespace only: the mounts are private by now).
pub fn read_only_root() {
    for (target, opts) in mounts() {
        let p = Path::new(&target);
        if p.starts_with("/proc") || p.starts_with("/sys") || p.starts_with("/dev") {
            continue;
        }
        if opts.split(',').any(|o| o == "ro") {
            continue;
        }
        // Mounts below a folder the sandbox covers vanish with it.
        if hidden(p) && target != "/" {
            continue;
        }
        remount_ro(&target, &opts)
            .unwrap_or_else(|e| die(&format!("remounting {target} read-only: {e}")));
    }
}

fn bind(from: &Path, to: &Path, rec: bool) {
    let flags = if rec {
        MsFlags::MS_BIND | MsFlags::MS_REC
    } else {
        MsFlags::MS_BIND
    };
    mount(Some(from), to, None::<&str>, flags, None::<&str>).unwrap_or_else(|e| {
        die(&format!(
            "bind-mounting {} on {}: {e}",
            from.display(),
            to.display()
        ))
    });
}

/// Binds each kept folder that a scratch mount will cover to a stash under
/// `/run/sandbox` (already the fresh `/run`); returns `(stash, folder)`.
pub fn stash(keep: &[PathBuf]) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for (i, dir) in keep.iter().enumerate() {
        if !hidden(dir)
            || out
                .iter()
                .any(|(_, k): &(PathBuf, PathBuf)| dir.starts_with(k))
        {
            continue;
        }
        if dir.starts_with("/run") {
            die(&format!(
                "{} lies under /run, which the sandbox hides",
                dir.display()
            ));
        }
        let at = Path::new(STASH).join(i.to_string());
        std::fs::create_dir_all(&at)
            .unwrap_or_else(|e| die(&format!("mkdir {}: {e}", at.display())));
        bind(dir, &at, true);
        out.push((at, dir.clone()));
    }
    out
}

/// Puts the stashed folders back at their own paths, read-only, and drops
/// the stash.
pub fn restore(stashed: &[(PathBuf, PathBuf)]) {
    for (at, dir) in stashed {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| die(&format!("mkdir {}: {e}", dir.display())));
        bind(at, dir, true);
        remount_ro(&dir.to_string_lossy(), "")
            .unwrap_or_else(|e| die(&format!("remounting {} read-only: {e}", dir.display())));
        umount2(at.as_path(), MntFlags::MNT_DETACH)
            .unwrap_or_else(|e| die(&format!("unmounting the stash {}: {e}", at.display())));
    }
}

/// A private `/dev`: a tmpfs holding the host's device nodes (made again
/// with their numbers, owners and modes), its symlinks, and its folders
/// bound (so `/dev/pts` is the host's devpts instance, as sshd expects),
/// plus a fresh `mqueue` on `/dev/mqueue`; read-only once built. The host's
/// `/dev` is never written to.
pub fn private_dev() {
    std::fs::create_dir_all(HOST_DEV).unwrap_or_else(|e| die(&format!("mkdir {HOST_DEV}: {e}")));
    bind(Path::new("/dev"), Path::new(HOST_DEV), true);
    mount(
        Some("tmpfs"),
        "/dev",
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    )
    .unwrap_or_else(|e| die(&format!("tmpfs on /dev: {e}")));
    let entries =
        std::fs::read_dir(HOST_DEV).unwrap_or_else(|e| die(&format!("listing /dev: {e}")));
    for e in entries.flatten() {
        let from = e.path();
        let to = Path::new("/dev").join(e.file_name());
        let Ok(m) = from.symlink_metadata() else {
            continue;
        };
        let ft = m.file_type();
        if ft.is_symlink() {
            if let Ok(target) = std::fs::read_link(&from) {
                let _ = std::os::unix::fs::symlink(target, &to);
            }
        } else if ft.is_dir() {
            // shm and mqueue get fresh mounts of their own.
            let fresh = matches!(e.file_name().to_str(), Some("shm" | "mqueue"));
            if std::fs::create_dir(&to).is_ok() && !fresh {
                bind(&from, &to, true);
            }
        } else if ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_char_device() {
                nix::sys::stat::SFlag::S_IFCHR
            } else {
                nix::sys::stat::SFlag::S_IFBLK
            };
            let perm = nix::sys::stat::Mode::from_bits_truncate(m.mode() & 0o7777);
            if nix::sys::stat::mknod(&to, kind, perm, m.rdev()).is_ok() {
                let _ = std::os::unix::fs::chown(&to, Some(m.uid()), Some(m.gid()));
                let _ = std::fs::set_permissions(&to, PermissionsExt::from_mode(m.mode() & 0o7777));
            }
        }
    }
    umount2(HOST_DEV, MntFlags::MNT_DETACH)
        .unwrap_or_else(|e| die(&format!("unmounting {HOST_DEV}: {e}")));
    let _ = std::fs::remove_dir(HOST_DEV);
    for dir in ["/dev/shm", "/dev/mqueue"] {
        if std::fs::metadata(dir).is_err() {
            std::fs::create_dir(dir).unwrap_or_else(|e| die(&format!("mkdir {dir}: {e}")));
        }
    }
    mount(
        Some("mqueue"),
        "/dev/mqueue",
        Some("mqueue"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .unwrap_or_else(|e| die(&format!("mqueue on /dev/mqueue: {e}")));
    std::fs::set_permissions("/dev/mqueue", PermissionsExt::from_mode(0o1777))
        .unwrap_or_else(|e| die(&format!("chmod /dev/mqueue: {e}")));
    remount_ro("/dev", "nosuid")
        .unwrap_or_else(|e| die(&format!("remounting /dev read-only: {e}")));
}

/// Where the package installs the session recorder.
const RECORDER_DIR: &str = "/usr/lib/codext";
/// The overlay's upper and work folders, on a tmpfs of their own.
const OVERLAY: &str = "/run/sandbox/usr-lib";

/// Puts the recorder at [`RECORDER_DIR`]`/codext-record` (see the crate
/// docs): a read-only overlay of `/usr/lib` that adds the folder, then a
/// tmpfs on the folder (no `nosuid`: the recorder is setgid) with the file.
pub fn recorder(built: &Path) {
    let dir = Path::new(RECORDER_DIR);
    if !dir.exists() {
        std::fs::create_dir_all(OVERLAY).unwrap_or_else(|e| die(&format!("mkdir {OVERLAY}: {e}")));
        mount(
            Some("tmpfs"),
            OVERLAY,
            Some("tmpfs"),
            MsFlags::MS_NODEV,
            Some("mode=0755"),
        )
        .unwrap_or_else(|e| die(&format!("tmpfs on {OVERLAY}: {e}")));
        for d in ["up", "work"] {
            std::fs::create_dir(Path::new(OVERLAY).join(d))
                .unwrap_or_else(|e| die(&format!("mkdir {OVERLAY}/{d}: {e}")));
        }
        let opts = format!("lowerdir=/usr/lib,upperdir={OVERLAY}/up,workdir={OVERLAY}/work");
        mount(
            Some("overlay"),
            "/usr/lib",
            Some("overlay"),
            MsFlags::empty(),
            Some(opts.as_str()),
        )
        .unwrap_or_else(|e| die(&format!("overlay on /usr/lib: {e}")));
        std::fs::create_dir(dir).unwrap_or_else(|e| die(&format!("mkdir {RECORDER_DIR}: {e}")));
        remount_ro("/usr/lib", "")
            .unwrap_or_else(|e| die(&format!("remounting /usr/lib read-only: {e}")));
    }
    mount(
        Some("tmpfs"),
        RECORDER_DIR,
        Some("tmpfs"),
        MsFlags::MS_NODEV,
        Some("mode=0755,size=64m"),
    )
    .unwrap_or_else(|e| die(&format!("tmpfs on {RECORDER_DIR}: {e}")));
    let to = dir.join("codext-record");
    std::fs::copy(built, &to).unwrap_or_else(|e| {
        die(&format!(
            "installing the recorder {} (cargo build first): {e}",
            built.display()
        ))
    });
    std::fs::set_permissions(&to, PermissionsExt::from_mode(0o755))
        .unwrap_or_else(|e| die(&format!("chmod {}: {e}", to.display())));
}

/// Makes `dir` (a folder of the read-only root) writable again, alone.
pub fn writable(dir: &Path) {
    bind(dir, dir, false);
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap_or_else(|e| die(&format!("making {} writable: {e}", dir.display())));
}
