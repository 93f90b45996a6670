//! The grant's account inside its container: the `passwd` and `group`
//! files bind-mounted over the image's, made and removed by root.

use super::names::files_of;
use crate::error::{HelperError, Result};
use std::path::{Path, PathBuf};

/// The grant's account inside its container.
#[derive(Debug, Clone)]
pub struct Account {
    /// The user name.
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// The workspace (its home inside).
    pub home: PathBuf,
    /// The sessions' shell.
    pub shell: PathBuf,
}

impl Account {
    pub(super) fn passwd_line(&self) -> String {
        format!(
            "{}:x:{}:{}:codext temporary user:{}:{}\n",
            self.user,
            self.uid,
            self.gid,
            self.home.display(),
            self.shell.display()
        )
    }
    pub(super) fn group_line(&self) -> String {
        format!("codext:x:{}:\n", self.gid)
    }
}

/// The image's file (`passwd` or `group`) with the grant's line `ours`
/// added: a line of the image with the same name, or the same id, goes
/// (inside, that name and that id are the grant's).
pub(super) fn merged(theirs: &str, ours: &str, a: &Account) -> String {
    let name = ours.split(':').next().unwrap_or("");
    let id = ours.split(':').nth(2).unwrap_or("");
    let mut out: String = theirs
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split(':').collect();
            f.first() != Some(&name) && f.get(2) != Some(&id) && f.first() != Some(&a.user.as_str())
        })
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(ours);
    out
}

pub(super) fn read_capped(path: &Path) -> Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path)
        .map_err(|e| HelperError::account(format!("cannot read {}", path.display()), e))?;
    let mut text = String::new();
    f.take(1 << 20)
        .read_to_string(&mut text)
        .map_err(|e| HelperError::account(format!("cannot read {}", path.display()), e))?;
    Ok(text)
}

/// The account files' folder, root's 0755 (the files 0644: the container
/// reads them), empty files in place for the mounts.
pub(super) fn prepare_files(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| HelperError::account(format!("cannot create {}", dir.display()), e))?;
    for f in ["passwd", "group"] {
        std::fs::write(dir.join(f), b"").map_err(|e| {
            HelperError::account(format!("cannot create {}", dir.join(f).display()), e)
        })?;
    }
    Ok(())
}

/// Removes `user`'s account files (with its container).
pub fn forget_files(user: &str) {
    if codext_wire::UserName::parse(user).is_ok() {
        let _ = std::fs::remove_dir_all(files_of(user));
    }
}
