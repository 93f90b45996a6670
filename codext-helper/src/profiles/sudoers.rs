//! A profile's sudo rules: one drop-in per account,
//! `/etc/sudoers.d/codext-<user>`, written when the account is made and
//! removed with it (before the kill, so no sudo starts during the
//! removal).
//!
//! A rule is an absolute path and fixed words, nothing sudoers would read
//! as a pattern: each word is `[A-Za-z0-9_./@+=:-]` only (no `*`, `?`,
//! `[`, `\`, `,`, `!`, `#`, `%`, quotes, spaces inside a word), the path
//! holds no `..`. A rule of a path alone is written with `""`, which
//! sudoers reads as "no arguments" (a bare path would allow any). The file
//! is checked with `visudo -c -f` before it is renamed into place (a
//! broken drop-in would break sudo for everyone), root's, 0440; its name
//! has no dot, which sudo requires of the files it reads from the folder.

use crate::error::{HelperError, Result};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The folder.
pub const DIR: &str = "/etc/sudoers.d";
/// Every codext drop-in is `codext-<user>`.
pub const FILE_PREFIX: &str = "codext-user-";
/// `visudo`.
pub const VISUDO: &str = "/usr/sbin/visudo";

/// Checks one rule as configured.
pub fn check_rule(rule: &str) -> std::result::Result<(), String> {
    let words = super::words(rule);
    let Some(first) = words.first() else {
        return Err("an empty sudo rule".into());
    };
    if !first.starts_with('/') || first.split('/').any(|c| c == "..") {
        return Err(format!(
            "sudo rule {rule:?}: the command must be an absolute path"
        ));
    }
    for w in &words {
        if !w
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./@+=:-".contains(&b))
        {
            return Err(format!(
                "sudo rule {rule:?}: {w:?} holds a character sudoers would read as a pattern or \
                 separator (only A-Z a-z 0-9 _ . / @ + = : - are allowed)"
            ));
        }
    }
    if rule.contains('\t') || rule.contains('\n') {
        return Err(format!("sudo rule {rule:?}: one line of plain words"));
    }
    Ok(())
}

/// The drop-in's path for `user`.
pub fn path_of(user: &str) -> PathBuf {
    Path::new(DIR).join(format!("codext-{user}"))
}

/// The drop-in's text for `user` and `rules` (checked by [`check_rule`]).
pub fn text(user: &str, profile: &str, rules: &[String]) -> String {
    let cmds: Vec<String> = rules
        .iter()
        .map(|r| {
            let w = super::words(r);
            if w.len() == 1 {
                format!("{} \"\"", w.join(" "))
            } else {
                w.join(" ")
            }
        })
        .collect();
    format!(
        "# codext grant {user} (profile {profile}): removed with the account by codext-helper\n\
         {user} ALL=(root) NOPASSWD: {}\n",
        cmds.join(", ")
    )
}

/// Writes `user`'s drop-in, checked by visudo, atomically.
pub fn install(user: &str, profile: &str, rules: &[String], deadline: Duration) -> Result<()> {
    let dir = Path::new(DIR);
    if !dir.is_dir() {
        return Err(HelperError::Account(format!(
            "{DIR} does not exist: install sudo (the profile {profile} has sudo rules)"
        )));
    }
    let tmp = dir.join(format!(".codext-{user}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let body = text(user, profile, rules);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o440)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(body.as_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| HelperError::account(format!("cannot write {}", tmp.display()), e))?;
    let tmp_text = tmp.to_string_lossy().into_owned();
    let checked = crate::accounts::tools::run(VISUDO, &["-c", "-q", "-f", &tmp_text], deadline);
    match checked {
        Ok(run) if run.success() => {}
        Ok(run) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(HelperError::Account(format!(
                "visudo refused the sudo rules of {user}: {}",
                run.describe()
            )));
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    let target = path_of(user);
    std::fs::rename(&tmp, &target)
        .map_err(|e| HelperError::account(format!("cannot install {}", target.display()), e))?;
    let _ = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o440));
    Ok(())
}

/// Removes `user`'s drop-in: true when there was one.
pub fn remove(user: &str) -> Result<bool> {
    let target = path_of(user);
    match std::fs::remove_file(&target) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(HelperError::account(
            format!("cannot remove {}", target.display()),
            e,
        )),
    }
}

/// The users that have a codext drop-in now (with whether it is root's,
/// 0440).
pub fn present() -> Vec<(String, bool)> {
    let Ok(d) = std::fs::read_dir(DIR) else {
        return Vec::new();
    };
    let mut out: Vec<(String, bool)> = d
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let user = n.strip_prefix("codext-")?.to_owned();
            codext_wire::UserName::parse(&user).ok()?;
            let m = e.metadata().ok()?;
            Some((user, m.uid() == 0 && m.mode() & 0o7777 == 0o440))
        })
        .collect();
    out.sort();
    out
}
