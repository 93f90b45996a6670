//! The names a grant's container goes by: its docker name and label, and
//! the folder of its account files.

use std::path::{Path, PathBuf};

/// The label every codext container carries, with its user.
pub const LABEL_USER: &str = "codext.user";

/// The container of `user`.
pub fn name_of(user: &str) -> String {
    format!("codext-{user}")
}

/// Where the helper keeps a container's account files (`passwd`,
/// `group`: the image's own plus the grant's line, bind-mounted read-only
/// over `/etc/passwd` and `/etc/group`: programs such as sftp-server need
/// the uid to have a name). Removed with the container.
pub const FILES_DIR: &str = "/run/codext/containers";

/// `user`'s account files' folder.
pub fn files_of(user: &str) -> PathBuf {
    Path::new(FILES_DIR).join(user)
}
