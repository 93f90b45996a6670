//! The files setup touches: read, written atomically with their mode kept,
//! put back byte for byte, diffed; and the manifest that records them.

use super::{refused, sys, Manifest, MANIFEST};
use crate::config::Config;
use crate::error::{HelperError, Result};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub(super) fn read_opt(path: &Path) -> Result<Option<String>> {
    match std::fs::read(path) {
        Ok(b) => String::from_utf8(b).map(Some).map_err(|_| {
            refused(format!(
                "{} is not UTF-8 text; not touching it",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HelperError::system(
            format!("cannot read {}", path.display()),
            e,
        )),
    }
}

pub(super) fn read_data(dir: &Path, name: &str) -> Result<String> {
    let p = dir.join(name);
    std::fs::read_to_string(&p).map_err(|e| {
        HelperError::Input(format!(
            "cannot read {} ({e}): pass --data-dir with the shipped files (the source tree's pam.d/)",
            p.display()
        ))
    })
}

/// Replaces `path` with `text` atomically; a new file is root's, 0644; an
/// existing one keeps its mode and owner.
pub(super) fn write_file(path: &Path, text: &str) -> Result<()> {
    write_bytes(path, text.as_bytes(), 0o644)
}

/// Like [`write_file`] with bytes; a new file gets `new_mode`.
pub(super) fn write_bytes(path: &Path, bytes: &[u8], new_mode: u32) -> Result<()> {
    let fail = |what: &str, e: std::io::Error| {
        HelperError::system(format!("cannot {what} {}", path.display()), e)
    };
    let dir = path
        .parent()
        .ok_or_else(|| sys(format!("{} has no folder", path.display())))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let old = std::fs::symlink_metadata(path).ok();
    if old.as_ref().is_some_and(|m| !m.is_file()) {
        return Err(refused(format!(
            "{} is not a regular file; not touching it",
            path.display()
        )));
    }
    let tmp = dir.join(format!(".{name}.codext-setup"));
    let _ = std::fs::remove_file(&tmp);
    let mode = old.as_ref().map_or(new_mode, |m| m.mode() & 0o7777);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| fail("create a temporary file for", e))?;
    let done = f
        .write_all(bytes)
        .and_then(|()| f.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|()| match &old {
            Some(m) => std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid())),
            None => Ok(()),
        })
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("write", e));
    }
    Ok(())
}

pub(super) fn put_back(path: &Path, before: Option<&str>) -> Result<()> {
    match before {
        Some(text) => write_file(path, text),
        None => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(HelperError::system(
                format!("cannot remove {}", path.display()),
                e,
            )),
        },
    }
}

pub(super) fn diff(path: &Path, before: Option<&str>, after: Option<&str>) -> String {
    let name = path.display().to_string();
    let (a, b) = (before.unwrap_or(""), after.unwrap_or(""));
    let old = if before.is_some() {
        name.clone()
    } else {
        "/dev/null".into()
    };
    let new = if after.is_some() {
        name
    } else {
        "/dev/null".into()
    };
    similar::TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(2)
        .header(&old, &new)
        .to_string()
}

pub(super) fn names_in(file: &str) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split(':')
                .next()
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
        })
        .collect()
}

pub(super) fn manifest_path(cfg: &Config) -> PathBuf {
    cfg.state_dir.join(MANIFEST)
}

/// Reads the manifest, if setup ran.
pub fn load_manifest(cfg: &Config) -> Result<Option<Manifest>> {
    let path = manifest_path(cfg);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| HelperError::state_data(format!("{} is corrupt", path.display()), e, "")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HelperError::state(
            format!("cannot read {}", path.display()),
            e,
        )),
    }
}

pub(super) fn save_manifest(cfg: &Config, m: &Manifest) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(m)
        .map_err(|e| HelperError::state_data("cannot encode the manifest", e, ""))?;
    // The manifest comes before anything else setup makes: the state
    // folder too, the first time.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(&cfg.state_dir)
        .map_err(|e| HelperError::state(format!("cannot create {}", cfg.state_dir.display()), e))?;
    crate::store::write_atomic(&cfg.state_dir, MANIFEST, &bytes, 0o600)
}
