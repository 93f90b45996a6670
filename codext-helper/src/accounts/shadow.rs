//! Repairing `/etc/shadow` after a `userdel` that was killed at its
//! deadline: shadow-utils writes `/etc/passwd` and `/etc/shadow` one after
//! the other, so a kill in between can leave a shadow line whose passwd
//! line is gone — `userdel` then refuses the name ("does not exist") and
//! `pwck` reports the orphan. The helper removes that one line itself,
//! holding `/etc/.pwd.lock` as every shadow-utils tool does (lckpwdf(3)),
//! and replaces the file atomically with its owner and mode kept.

use crate::error::{HelperError, Result};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

const PWD_LOCK: &str = "/etc/.pwd.lock";

/// True when `file` (a passwd-format file) has a line for `name`.
pub fn has_line(file: &Path, name: &str) -> bool {
    std::fs::read_to_string(file)
        .map(|t| t.lines().any(|l| l.split(':').next() == Some(name)))
        .unwrap_or(false)
}

/// Removes `name`'s line from `file` (e.g. `/etc/shadow`) under the
/// password-file lock; waits for the lock at most `deadline`.
pub fn remove_line(file: &Path, name: &str, deadline: Duration) -> Result<bool> {
    let fail = |what: &str, e: std::io::Error| {
        HelperError::account(format!("repairing {}: {what}", file.display()), e)
    };
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(PWD_LOCK)
        .map_err(|e| fail("open the lock", e))?;
    let end = Instant::now() + deadline;
    let whole = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    loop {
        match nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&lock),
            nix::fcntl::FcntlArg::F_SETLK(&whole),
        ) {
            Ok(_) => break,
            Err(e) if Instant::now() >= end => return Err(fail("lock", e.into())),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let text = std::fs::read_to_string(file).map_err(|e| fail("read", e))?;
    let meta = std::fs::metadata(file).map_err(|e| fail("stat", e))?;
    let kept: String = text
        .lines()
        .filter(|l| l.split(':').next() != Some(name))
        .map(|l| format!("{l}\n"))
        .collect();
    if kept.len() == text.len() {
        return Ok(false);
    }
    let mut tmp_name = file.as_os_str().to_owned();
    tmp_name.push("+codext");
    let tmp = Path::new(&tmp_name);
    let _ = std::fs::remove_file(tmp);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(tmp)
        .map_err(|e| fail("create", e))?;
    out.write_all(kept.as_bytes())
        .and_then(|()| out.sync_all())
        .map_err(|e| fail("write", e))?;
    std::os::unix::fs::fchown(&out, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| fail("chown", e))?;
    out.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| fail("chmod", e))?;
    std::fs::rename(tmp, file).map_err(|e| fail("rename", e))?;
    if let Some(dir) = file.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    drop(lock);
    Ok(true)
}
