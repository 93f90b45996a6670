//! The one way codext reads a secret from a file (a private key, an API
//! token): opened without following a symlink, checked on the open
//! descriptor (never by path, which could change between a check and the
//! open), and refused unless it is a regular file of the expected owner that
//! nobody else can read, of a sane size. The contents are zeroized on drop.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use zeroize::Zeroizing;

/// A secret file larger than this is not a key or a token.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Who must own a secret file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The process's effective user, as ssh requires of a private key.
    Me,
    /// A given uid (root's token file: 0).
    Uid(u32),
    /// A systemd credential (`LoadCredential=`, in `$CREDENTIALS_DIRECTORY`,
    /// a read-only mount private to the unit): the process's effective
    /// user's with mode `0400` (Debian 12's systemd 252), or root's, group
    /// root, mode `0440`, read through an ACL entry for the unit's user
    /// (Debian 13's systemd 257). Never readable by others either way.
    Credential,
}

impl Owner {
    fn uid(self) -> u32 {
        match self {
            Owner::Me | Owner::Credential => nix::unistd::geteuid().as_raw(),
            Owner::Uid(uid) => uid,
        }
    }

    /// The mode bits that must be clear for a file of `file_uid` and
    /// `file_gid`, or `None` when that owner is not accepted.
    fn forbidden_bits(self, file_uid: u32, file_gid: u32) -> Option<u32> {
        match self {
            // systemd's own: only root's group (root alone) may read it.
            Owner::Credential if file_uid == 0 && file_gid == 0 => Some(0o037),
            _ if file_uid == self.uid() => Some(0o077),
            _ => None,
        }
    }
}

/// Reads the secret file at `path` (`what` names it in errors, e.g. "the
/// API token file"), owned by `owner` and of mode `0600` or stricter.
pub fn read_secret(path: &Path, what: &str, owner: Owner) -> Result<Zeroizing<String>> {
    let file = open(path, what)?;
    check(&file, path, what, owner)?;
    let mut text = Zeroizing::new(String::new());
    (&file)
        .take(MAX_SECRET_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(format!("cannot read {what} {}", path.display()), e))?;
    Ok(text)
}

fn open(path: &Path, what: &str) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Error::FilePolicy(format!(
                    "{what} {} is a symbolic link; name the file itself",
                    path.display()
                ))
            } else {
                Error::io(format!("cannot open {what} {}", path.display()), e)
            }
        })
}

fn check(file: &File, path: &Path, what: &str, owner: Owner) -> Result<()> {
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat {what} {}", path.display()), e))?;
    let shown = path.display();
    if !meta.file_type().is_file() {
        return Err(Error::FilePolicy(format!(
            "{what} {shown} is not a regular file"
        )));
    }
    let expected = owner.uid();
    let Some(forbidden) = owner.forbidden_bits(meta.uid(), meta.gid()) else {
        return Err(Error::FilePolicy(format!(
            "{what} {shown} belongs to uid {}, not {expected}: chown it",
            meta.uid()
        )));
    };
    if meta.mode() & forbidden != 0 {
        return Err(Error::FilePolicy(format!(
            "{what} {shown} is readable by others (mode {:o}): chmod 600 it",
            meta.mode() & 0o777
        )));
    }
    if meta.len() > MAX_SECRET_BYTES {
        return Err(Error::FilePolicy(format!(
            "{what} {shown} is {} bytes; a secret file is at most {MAX_SECRET_BYTES}",
            meta.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("codext-secret-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn given_a_private_file_of_mine_then_it_is_read() {
        let dir = scratch("ok");
        let f = dir.join("token");
        write(&f, "dop_v1_abc\n", 0o600);
        assert_eq!(
            &*read_secret(&f, "the token file", Owner::Me).unwrap(),
            "dop_v1_abc\n"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_a_file_others_can_read_then_it_is_refused_with_the_fix() {
        let dir = scratch("mode");
        let f = dir.join("token");
        write(&f, "x", 0o640);
        let e = read_secret(&f, "the token file", Owner::Me)
            .unwrap_err()
            .to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_a_symlink_then_it_is_refused_even_to_a_good_file() {
        let dir = scratch("link");
        let f = dir.join("token");
        write(&f, "x", 0o600);
        let link = dir.join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let e = read_secret(&link, "the token file", Owner::Me)
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_another_owner_then_it_is_refused() {
        let dir = scratch("owner");
        let f = dir.join("token");
        write(&f, "x", 0o600);
        let other = Owner::Uid(Owner::Me.uid().wrapping_add(1));
        let e = read_secret(&f, "the token file", other)
            .unwrap_err()
            .to_string();
        assert!(e.contains("chown"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_credentials_as_systemd_252_and_257_make_them_then_each_is_read_and_nothing_looser() {
        let dir = scratch("credential");
        let f = dir.join("token");
        // (Each file written afresh: a 0400 file is not writable as a user.)
        let write = |f: &Path, text: &str, mode: u32| {
            let _ = std::fs::remove_file(f);
            write(f, text, mode);
        };
        // systemd 252: the unit's user's, 0400.
        write(&f, "t", 0o400);
        assert_eq!(
            &*read_secret(&f, "the credential", Owner::Credential).unwrap(),
            "t"
        );
        // Group-readable and not root's: refused.
        write(&f, "t", 0o440);
        if Owner::Me.uid() != 0 {
            let e = read_secret(&f, "the credential", Owner::Credential)
                .unwrap_err()
                .to_string();
            assert!(e.contains("readable by others"), "{e}");
        } else {
            // systemd 257: root's, group root, 0440 (the ACL is systemd's).
            std::os::unix::fs::chown(&f, Some(0), Some(0)).unwrap();
            assert_eq!(
                &*read_secret(&f, "the credential", Owner::Credential).unwrap(),
                "t"
            );
            // ... but not as a plain secret file, and never with bits for others
            // or another group.
            assert!(read_secret(&f, "the token file", Owner::Me).is_err());
            write(&f, "t", 0o444);
            assert!(read_secret(&f, "the credential", Owner::Credential).is_err());
            write(&f, "t", 0o440);
            std::os::unix::fs::chown(&f, Some(0), Some(1)).unwrap();
            assert!(read_secret(&f, "the credential", Owner::Credential).is_err());
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn given_a_folder_or_a_huge_file_then_it_is_refused() {
        let dir = scratch("kind");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = read_secret(&dir, "the token file", Owner::Me)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let big = dir.join("big");
        write(&big, &"x".repeat(MAX_SECRET_BYTES as usize + 1), 0o600);
        let e = read_secret(&big, "the token file", Owner::Me)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
