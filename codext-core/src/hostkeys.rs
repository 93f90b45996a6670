//! The fingerprints of the server's SSH host keys, which a puzzle binds so
//! the agent can check the host it logs in to (strict host-key checking,
//! against keys the server signed: a man in the middle cannot collect the
//! token).

use crate::error::{Error, Result};
use crate::keys::Fingerprint;
use std::path::{Path, PathBuf};

/// The host public key files in `dir` named `ssh_host_*_key.pub` (sshd's
/// default names), sorted by name.
pub fn host_key_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("cannot list host keys in {}", dir.display()), e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| Error::io(format!("cannot list host keys in {}", dir.display()), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("ssh_host_") && name.ends_with("_key.pub") {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Fingerprint of one OpenSSH public key file (any algorithm).
pub fn fingerprint_file(path: &Path) -> Result<Fingerprint> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read host key {}", path.display()), e))?;
    fingerprint_line(&text).map_err(|e| Error::KeyFormat(format!("{}: {e}", path.display())))
}

/// Fingerprint of one OpenSSH public key line (any algorithm).
pub fn fingerprint_line(line: &str) -> Result<Fingerprint> {
    let key = ssh_key::PublicKey::from_openssh(line.trim())
        .map_err(|e| Error::KeyFormat(format!("not an OpenSSH public key ({e})")))?;
    Ok(Fingerprint::of(&key))
}

/// Fingerprints of the given files, or of every `ssh_host_*_key.pub` in
/// `dir` when `files` is empty. No key at all is an error: a puzzle without
/// host keys would let the agent log in to anyone.
pub fn fingerprints(dir: &Path, files: &[PathBuf]) -> Result<Vec<Fingerprint>> {
    let files = if files.is_empty() {
        host_key_files(dir)?
    } else {
        files.to_vec()
    };
    if files.is_empty() {
        return Err(Error::KeyFormat(format!(
            "no SSH host keys (ssh_host_*_key.pub) in {}: sshd has none to prove itself with",
            dir.display()
        )));
    }
    files.iter().map(|f| fingerprint_file(f)).collect()
}
