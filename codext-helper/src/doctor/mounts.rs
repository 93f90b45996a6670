//! The file systems a temporary user writes to, as `doctor` sees them:
//!
//! * `mounts.nosuid` — the homes' folder and every swept folder
//!   ([`crate::paths::SWEEP_ROOTS`]) should be on mounts with `nosuid`:
//!   without it a setuid file a temporary user leaves there runs as that
//!   user for anyone who finds it, until the sweep at its removal.
//! * `mounts.world_writable` — a folder anyone may write to on the root
//!   file system but outside the swept set is where a temporary user can
//!   leave files codext never sweeps (they outlive the account, and the
//!   next holder of the uid owns them). Finding and fixing those is the
//!   operator's job; doctor lists them.
//!
//! Both are warnings: codext works, but a temporary user's leftovers are
//! less contained than they could be.

use super::report::Report;
use crate::config::Config;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One line of `/proc/self/mountinfo` (proc(5)), as far as doctor needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mount {
    /// Where it is mounted (octal escapes undone).
    pub(super) point: PathBuf,
    /// Its per-mount options (`rw`, `nosuid`, …).
    pub(super) options: Vec<String>,
}

impl Mount {
    pub(super) fn nosuid(&self) -> bool {
        self.options.iter().any(|o| o == "nosuid")
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo, in its order (a later mount hides an earlier one on
/// the same point).
pub(super) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let point = f.nth(4)?;
            let options = f.next()?;
            Some(Mount {
                point: PathBuf::from(unescape(point)),
                options: options.split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// The mount `path` (absolute, symlinks resolved) lies on: the one with
/// the longest mount point above it, the latest of those on one point.
pub(super) fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.point))
        .max_by_key(|(i, m)| (m.point.components().count(), *i))
        .map(|(_, m)| m)
}

/// Of `folders` (those that exist), the ones on a mount without `nosuid`,
/// with that mount's point.
pub(super) fn without_nosuid(mounts: &[Mount], folders: &[PathBuf]) -> Vec<(PathBuf, PathBuf)> {
    folders
        .iter()
        .filter_map(|f| {
            let real = std::fs::canonicalize(f).ok()?;
            let m = mount_of(mounts, &real)?;
            (!m.nosuid()).then(|| (f.clone(), m.point.clone()))
        })
        .collect()
}

/// What the walk of the root file system found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Walk {
    /// World-writable folders outside `skip`, in walk order.
    pub(super) found: Vec<PathBuf>,
    /// Folders looked at.
    pub(super) folders: u64,
    /// The walk stopped at its time limit before the end.
    pub(super) cut: bool,
}

/// World-writable folders on `root`'s file system (never crossing into
/// another mount), outside the subtrees in `skip`, within `budget`. Never
/// follows a symlink.
pub(super) fn world_writable(root: &Path, skip: &[PathBuf], budget: Duration) -> Walk {
    let start = Instant::now();
    let mut walk = Walk::default();
    let Ok(top) = std::fs::symlink_metadata(root) else {
        return walk;
    };
    let dev = top.dev();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if start.elapsed() > budget {
            walk.cut = true;
            break;
        }
        walk.folders += 1;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if !t.is_dir() || t.is_symlink() || t.is_socket() {
                continue;
            }
            let path = e.path();
            if skip.iter().any(|s| path.starts_with(s)) {
                continue;
            }
            let Ok(m) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if m.dev() != dev {
                continue;
            }
            if m.mode() & 0o002 != 0 {
                walk.found.push(path.clone());
            }
            stack.push(path);
        }
    }
    walk
}

/// Where a temporary user's files can go: the homes and the swept folders
/// on `nosuid` mounts, and no world-writable folder on the root file
/// system outside the swept set (see this module). Warnings: codext works,
/// but leftovers are less contained.
pub(super) fn mount_checks(r: &mut Report, cfg: &Config) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let all = parse_mountinfo(&info);
    let mut folders = vec![cfg.accounts.home_base.clone()];
    folders.extend(crate::paths::SWEEP_ROOTS.iter().map(PathBuf::from));
    let bare = without_nosuid(&all, &folders);
    if bare.is_empty() {
        r.ok(
            "mounts.nosuid",
            "the homes and every swept folder are on nosuid mounts",
        );
    } else {
        let list: Vec<String> = bare
            .iter()
            .map(|(f, m)| format!("{} (on {})", f.display(), m.display()))
            .collect();
        r.warn(
            "mounts.nosuid",
            format!("without nosuid: {}", list.join(", ")),
            "mount them nosuid (a tmpfs for /tmp: `systemctl enable tmp.mount`, or `tmpfs /tmp tmpfs nosuid,nodev 0 0` in /etc/fstab; for a separate file system add nosuid to its options): until its removal sweeps it, a setuid file a temporary user leaves there runs as that user for anyone who finds it",
        );
    }
    let skip: Vec<PathBuf> = folders
        .iter()
        .map(|f| std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()))
        .collect();
    let walk = world_writable(Path::new("/"), &skip, Duration::from_secs(10));
    let swept = crate::paths::SWEEP_ROOTS.join(", ");
    if !walk.found.is_empty() {
        let mut shown: Vec<String> = walk
            .found
            .iter()
            .take(10)
            .map(|p| p.display().to_string())
            .collect();
        if walk.found.len() > 10 {
            shown.push(format!("and {} more", walk.found.len() - 10));
        }
        r.warn(
            "mounts.world_writable",
            format!(
                "world-writable folders on the root file system that codext does not sweep: {}",
                shown.join(", ")
            ),
            format!(
                "this is the operator's job: take write permission from others (`chmod o-w FOLDER`), or give such a folder a file system of its own and clean it yourself; a temporary user can leave files there that outlive its account and belong to the next holder of its uid (codext sweeps only {swept} and the homes)"
            ),
        );
    } else if walk.cut {
        r.warn(
            "mounts.world_writable",
            format!(
                "stopped after 10 s and {} folders of the root file system: not all were looked at",
                walk.folders
            ),
            "look yourself: `find / -xdev -type d -perm -0002`; any folder it lists outside the swept ones can hold a temporary user's files after its removal",
        );
    } else {
        r.ok(
            "mounts.world_writable",
            format!(
                "no world-writable folder on the root file system outside {swept} and the homes ({} folders looked at)",
                walk.folders
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const INFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
25 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
30 22 0:26 / /tmp rw,nosuid,nodev shared:14 - tmpfs tmpfs rw
31 22 0:27 / /home rw,relatime shared:15 - tmpfs tmpfs rw
32 31 0:28 / /home/with\\040space rw,nosuid shared:16 - tmpfs tmpfs rw
33 30 0:29 / /tmp rw,relatime shared:17 - tmpfs tmpfs rw
";

    #[test]
    fn given_mountinfo_then_each_folder_gets_the_mount_it_lies_on() {
        let m = parse_mountinfo(INFO);
        assert_eq!(m.len(), 6);
        assert_eq!(m[4].point, PathBuf::from("/home/with space"));
        let of = |p: &str| mount_of(&m, Path::new(p)).map(|m| (m.point.clone(), m.nosuid()));
        assert_eq!(of("/var/tmp"), Some((PathBuf::from("/"), false)));
        assert_eq!(of("/home/user-1"), Some((PathBuf::from("/home"), false)));
        assert_eq!(
            of("/home/with space/x"),
            Some((PathBuf::from("/home/with space"), true))
        );
        // The later of two mounts on /tmp is the one in force.
        assert_eq!(of("/tmp/x"), Some((PathBuf::from("/tmp"), false)));
        assert_eq!(of("/proc/1"), Some((PathBuf::from("/proc"), true)));
    }

    #[test]
    fn given_a_tree_then_world_writable_folders_outside_the_skipped_ones_are_found() {
        let root =
            std::env::temp_dir().join(format!("codext-doctor-mounts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["open/deeper", "swept/open", "closed", "link-target"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for (d, mode) in [
            ("open", 0o1777),
            ("open/deeper", 0o777),
            ("swept/open", 0o777),
            ("closed", 0o755),
            ("link-target", 0o777),
        ] {
            std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::os::unix::fs::symlink(root.join("link-target"), root.join("closed/link")).unwrap();
        let w = world_writable(
            &root,
            &[root.join("swept"), root.join("link-target")],
            Duration::from_secs(10),
        );
        let mut found = w.found.clone();
        found.sort();
        assert_eq!(found, vec![root.join("open"), root.join("open/deeper")]);
        assert!(!w.cut);
        let cut = world_writable(&root, &[], Duration::ZERO);
        assert!(cut.cut);
        let _ = std::fs::remove_dir_all(&root);
    }
}
