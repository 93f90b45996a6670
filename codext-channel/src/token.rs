//! The DigitalOcean API token: from systemd's credentials folder
//! (`LoadCredential=digitalocean.token:…`), else a token file, else
//! `DIGITALOCEAN_TOKEN`. A file is read by `codext_core::secret_file`: it
//! must be a regular file of this process's uid that nobody else can read
//! (a credential may also be root's, as systemd 257 makes them:
//! [`Owner::Credential`]). The token is never logged.

use crate::{ChannelError, Result};
use codext_core::secret_file::{read_secret, Owner};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The credential's name in `$CREDENTIALS_DIRECTORY`.
pub const CREDENTIAL: &str = "digitalocean.token";

fn from_file(path: &Path, owner: Owner) -> Result<Zeroizing<String>> {
    let text = read_secret(path, "the API token file", owner)
        .map_err(|e| ChannelError::Config(e.to_string()))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(ChannelError::Config(format!("{} is empty", path.display())));
    }
    Ok(Zeroizing::new(t.to_owned()))
}

/// Reads the token (see the module docs).
pub fn read(token_file: Option<&Path>) -> Result<Zeroizing<String>> {
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        return from_file(&PathBuf::from(dir).join(CREDENTIAL), Owner::Credential);
    }
    if let Some(path) = token_file {
        return from_file(path, Owner::Me);
    }
    match std::env::var("DIGITALOCEAN_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Ok(Zeroizing::new(t.trim().to_owned())),
        _ => Err(ChannelError::Config(
            "no API token: no $CREDENTIALS_DIRECTORY, no --token-file, no DIGITALOCEAN_TOKEN"
                .into(),
        )),
    }
}

/// Reads the token from standard input (`--check --token-stdin`, as
/// `codext-helper doctor` runs it: the token never on a command line or in
/// the environment).
pub fn from_stdin() -> Result<Zeroizing<String>> {
    use std::io::Read;
    let mut text = Zeroizing::new(String::new());
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut text)
        .map_err(|e| ChannelError::Config(format!("reading the token from standard input: {e}")))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(ChannelError::Config("no token on standard input".into()));
    }
    Ok(Zeroizing::new(t.to_owned()))
}
