//! One grant, many connections (a whole task on one grant): the agent's key for reconnects,
//! and the linger that lets a reconnect find the account.
//!
//! **Key reconnects.** After the first successful token login, the agent
//! key the puzzle was sealed to is written to `KEYS_DIR/<user>`, a
//! root-owned file in a root-owned folder that the shipped sshd drop-in
//! names as the *only* `AuthorizedKeysFile` for `user-*` (with
//! `AuthorizedKeysCommand none`, so nothing the user writes — its own
//! `~/.ssh/authorized_keys` — is ever read). The line carries `restrict`
//! (no forwarding, no `~/.ssh/rc`) with `pty` put back, and
//! `expiry-time="<grant end>"`, which sshd enforces by itself even if the
//! file outlived the grant. The file exists only between the first token
//! login and the account's removal, so sshd offers `publickey` to nobody
//! else. sshd reads the file as the user (auth2-pubkey.c,
//! `temporarily_use_uid`), hence mode 0644 in a 0711 folder: a public key,
//! readable only by someone who knows the user name.
//!
//! On top of sshd's check, the PAM module names the key that authenticated
//! (`SSH_AUTH_INFO_0`, which OpenSSH 9.2 fills in only after
//! `pam_acct_mgmt`, so this happens at session open) in a `KeyAccount`
//! request; the helper allows it only for a live grant whose agent key it
//! is, revokes the grant otherwise, and writes the key's fingerprint to the
//! audit trail.
//!
//! **Linger.** When the last session closes, every process of the user is
//! killed exactly as before. Then, if the agent asked for a linger (the
//! number of seconds in `~/.codext-linger`, read only after the kill, when
//! nothing of the user runs), capped by `ttl.linger_max` and never past
//! the grant, only the account record and home stay; the shared folders
//! are swept. A key login within the linger finds the account; when the
//! linger ends with no session, the account is removed as usual. A linger
//! of 0 (no file, `codext close`) is the old behaviour: removed at once.
//!
//! This file is the adapter to the files (the key folder, the user's linger
//! file) and the key line's format; the lifecycle calls it. The decisions
//! (authorise, withdraw, the key login's check, the linger after the kill)
//! are the lifecycle's, in `lifecycle/reconnect.rs`; the linger state is
//! the entry's ([`crate::lifecycle::Linger`]).

use crate::error::{HelperError, Result};
use codext_core::keys::PublicKey;
use codext_core::time;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The folder of grant keys; the sshd drop-in names `KEYS_DIR/%u`.
pub const KEYS_DIR: &str = "/run/codext-keys";

/// The file in the user's home holding the linger it asks for, in seconds
/// (`0` or no file: none). `codext open --linger` writes it, `codext close`
/// writes 0.
pub const LINGER_FILE: &str = ".codext-linger";

/// `expiry-time` text for `secs` (UTC): `YYYYMMDDHHMMSSZ`.
pub fn expiry_time(secs: u64) -> String {
    let digits: String = time::rfc3339(secs)
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("{digits}Z")
}

/// The authorized-keys line for `key` until `grant_until`: only the
/// algorithm and the base64 blob of the parsed key (never its comment).
pub fn key_line(key: &PublicKey, grant_until: u64, user: &str) -> Result<String> {
    let text = key.to_openssh()?;
    let mut parts = text.split_whitespace();
    let (Some(algo), Some(blob)) = (parts.next(), parts.next()) else {
        return Err(HelperError::System("cannot encode the agent key".into()));
    };
    Ok(format!(
        "restrict,pty,expiry-time=\"{}\" {algo} {blob} codext-grant-{user}\n",
        expiry_time(grant_until)
    ))
}

/// Writes `user`'s grant key file (the real [`crate::lifecycle::host::Records`]).
pub fn write_key(user: &str, line: &str) -> Result<()> {
    crate::store::write_atomic(&keys_dir()?, user, line.as_bytes(), 0o644)
}

fn keys_dir() -> Result<PathBuf> {
    let dir = PathBuf::from(KEYS_DIR);
    match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .mode(0o711)
                .create(&dir)
                .map_err(|e| HelperError::system(format!("cannot create {KEYS_DIR}"), e))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
                .map_err(|e| HelperError::system(format!("cannot chmod {KEYS_DIR}"), e))?;
        }
        Err(e) => return Err(HelperError::system(format!("cannot stat {KEYS_DIR}"), e)),
        Ok(m) if !m.is_dir() || m.uid() != 0 || m.mode() & 0o022 != 0 => {
            return Err(HelperError::System(format!(
                "{KEYS_DIR} must be a folder of root's that nobody else can write"
            )))
        }
        // Made 0700 by someone else (or an old umask): sshd reads the file
        // as the user, who must be able to pass through.
        Ok(m) if m.mode() & 0o7777 != 0o711 => {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
                .map_err(|e| HelperError::system(format!("cannot chmod {KEYS_DIR}"), e))?;
        }
        Ok(_) => {}
    }
    Ok(dir)
}

/// The linger the user asked for, in seconds: the number in its
/// `~/.codext-linger`, or 0 when there is none or it is not a small
/// regular file of the user's holding a number. Read as root, after every
/// process of the user was killed: opened without following a symlink and
/// without blocking on a FIFO, checked on the open descriptor.
pub fn read_linger(home: &Path, uid: u32) -> u64 {
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(home.join(LINGER_FILE))
    else {
        return 0;
    };
    match f.metadata() {
        Ok(m) if m.is_file() && m.uid() == uid && m.len() <= 32 => {}
        _ => return 0,
    }
    let mut text = String::new();
    if f.by_ref().take(32).read_to_string(&mut text).is_err() {
        return 0;
    }
    text.trim().parse::<u64>().unwrap_or(0)
}

/// A linger asked for, as a duration (for messages).
pub fn describe(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_time_then_expiry_is_utc_digits_with_z() {
        assert_eq!(expiry_time(0), "19700101000000Z");
        assert_eq!(expiry_time(951_782_400), "20000229000000Z");
    }

    #[test]
    fn given_key_with_a_hostile_comment_then_the_line_has_only_options_algo_and_blob() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/test-vectors/v1/agent.pub"
        ))
        .unwrap();
        let key = PublicKey::from_openssh(&text).unwrap();
        let line = key_line(&key, 0, "user-00112233aabb").unwrap();
        assert!(line.starts_with("restrict,pty,expiry-time=\"19700101000000Z\" ssh-rsa AAAA"));
        assert!(line.ends_with(" codext-grant-user-00112233aabb\n"));
        assert_eq!(line.lines().count(), 1);
    }

    #[test]
    fn given_linger_files_then_only_a_small_regular_file_of_the_user_counts() {
        let dir = std::env::temp_dir().join(format!("codext-linger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let f = dir.join(LINGER_FILE);
        assert_eq!(read_linger(&dir, me), 0, "no file");
        std::fs::write(&f, "600\n").unwrap();
        assert_eq!(read_linger(&dir, me), 600);
        assert_eq!(read_linger(&dir, me + 1), 0, "someone else's file");
        std::fs::write(&f, "x".repeat(64)).unwrap();
        assert_eq!(read_linger(&dir, me), 0, "too long");
        std::fs::remove_file(&f).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &f).unwrap();
        assert_eq!(read_linger(&dir, me), 0, "a symlink is not followed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
