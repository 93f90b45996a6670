//! Announcing an armed user to NSS through a systemd *userdb* drop-in
//! record, read by the stock `nss-systemd` module (`passwd: files systemd`).
//!
//! sshd looks a name up once, at the first userauth request, and hides the
//! real password from PAM when the name does not resolve; so between a
//! proven answer and the login, `user-<hex>` must resolve with exactly the
//! uid, gid, home and shell the account will later be created with. The
//! record is withdrawn before `useradd` runs (which refuses a name NSS
//! already reports) and whenever the user is revoked or expires.
//!
//! Both files appear atomically: `<user>.user` through a rename, and the
//! `<uid>.user` symlink (for lookups by uid) through a rename of a symlink.
//!
//! A grant of a profile that adds groups also announces its
//! memberships, `<user>:<group>.membership` (nss-systemd's drop-in for
//! `getgrouplist`; systemd reads an empty file as a mask, so each holds a
//! line): sshd evaluates `Match Group` when it first looks the user up,
//! before the account exists, and a `commands` or `container` grant's
//! forced gate hangs on its profile's group. They are written before the
//! record (so the name never resolves without them) and withdrawn with it.

use crate::error::{HelperError, Result};
use crate::lifecycle::Account;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// The JSON user record for `account`.
pub fn record(account: &Account) -> serde_json::Value {
    serde_json::json!({
        "userName": account.name.as_str(),
        "uid": account.uid,
        "gid": account.gid,
        "realName": "codext temporary user",
        "homeDirectory": account.home,
        "shell": account.shell,
        "disposition": "regular",
    })
}

fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| HelperError::system(format!("cannot create {}", dir.display()), e))
}

/// Writes the record and its uid link (and first its memberships of
/// `groups`).
pub fn announce(dir: &Path, account: &Account, groups: &[String]) -> Result<()> {
    ensure_dir(dir)?;
    for group in groups {
        crate::store::write_atomic(
            dir,
            &format!("{}:{group}.membership", account.name),
            b"codext\n",
            0o644,
        )?;
    }
    let name = format!("{}.user", account.name);
    let bytes = serde_json::to_vec(&record(account))
        .map_err(|e| HelperError::state_data("cannot encode user record", e, ""))?;
    crate::store::write_atomic(dir, &name, &bytes, 0o644)?;
    let link = dir.join(format!("{}.user", account.uid));
    let tmp = dir.join(format!(".{}.user.tmp", account.uid));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&name, &tmp)
        .and_then(|()| std::fs::rename(&tmp, &link))
        .map_err(|e| HelperError::system(format!("cannot link {}", link.display()), e))
}

/// `user`'s membership records in `dir`.
fn memberships(dir: &Path, user: &str) -> Vec<std::path::PathBuf> {
    let prefix = format!("{user}:");
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with(&prefix) && n.ends_with(".membership")
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the record and its uid link, then its memberships (absent
/// ones are fine).
pub fn withdraw(dir: &Path, user: &str, uid: u32) -> Result<()> {
    let mut paths = vec![dir.join(format!("{user}.user"))];
    // The uid link only if it is this user's (a membership found alone
    // comes with no uid).
    let link = dir.join(format!("{uid}.user"));
    if std::fs::read_link(&link).is_ok_and(|t| t == Path::new(&format!("{user}.user"))) {
        paths.push(link);
    }
    paths.extend(memberships(dir, user));
    for path in paths {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(HelperError::system(
                    format!("cannot remove {}", path.display()),
                    e,
                ))
            }
        }
    }
    Ok(())
}

/// Codext records (`user-<hex>.user`, with the uid they announce, or
/// `<uid>.user` links to such a name) that `keep` does not claim.
pub fn orphans(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<(String, u32)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.filter_map(|e| e.ok()) {
        let Ok(file) = e.file_name().into_string() else {
            continue;
        };
        if let Some((name, _)) = file
            .strip_suffix(".membership")
            .and_then(|m| m.split_once(':'))
        {
            // A membership whose user is not kept (and has no record).
            if codext_wire::UserName::parse(name).is_ok() && !keep(name) {
                out.push((name.to_owned(), 0));
            }
            continue;
        }
        let Some(stem) = file.strip_suffix(".user") else {
            continue;
        };
        if codext_wire::UserName::parse(stem).is_ok() {
            if keep(stem) {
                continue;
            }
            let uid = std::fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["uid"].as_u64())
                .and_then(|u| u32::try_from(u).ok())
                .unwrap_or(0);
            out.push((stem.to_owned(), uid));
        } else if let (Ok(uid), Ok(target)) = (stem.parse::<u32>(), std::fs::read_link(e.path())) {
            // A uid link to a codext record that is not kept.
            let name = target
                .to_string_lossy()
                .strip_suffix(".user")
                .map(str::to_owned)
                .unwrap_or_default();
            if codext_wire::UserName::parse(&name).is_ok() && !keep(&name) {
                out.push((name, uid));
            }
        }
    }
    out.sort();
    out.dedup();
    // A name found with its uid needs no uid-less entry too.
    let named: Vec<String> = out
        .iter()
        .filter(|(_, u)| *u != 0)
        .map(|(n, _)| n.clone())
        .collect();
    out.retain(|(n, u)| *u != 0 || !named.contains(n));
    out
}
