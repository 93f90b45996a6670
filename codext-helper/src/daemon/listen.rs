//! Binding a socket the helper serves, shared by every listener (the PAM
//! socket here, the recording and enter sockets, the channel socket in
//! [`crate::channel_requests`]): a fresh socket, never looser than 0600
//! for a moment; the caller then sets the mode it needs.

use crate::error::{HelperError, Result};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;

/// Listens on a fresh socket at `path` (a stale socket there is replaced,
/// anything else refused), created 0600 by the umask: there is no window in
/// which it exists with looser permissions.
pub(crate) fn listen_fresh(path: &std::path::Path) -> Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path).map_err(|e| {
            HelperError::system(format!("cannot remove stale {}", path.display()), e)
        })?,
        Ok(_) => {
            return Err(HelperError::System(format!(
                "{} exists and is not a socket; not touching it",
                path.display()
            )))
        }
        Err(_) => {}
    }
    // No window where the socket exists with looser permissions.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener
        .map_err(|e| HelperError::system(format!("cannot listen on {}", path.display()), e))?;
    Ok(listener)
}
