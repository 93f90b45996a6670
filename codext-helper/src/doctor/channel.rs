//! The checks of the DigitalOcean channel: its user, its token file's
//! owner and mode, and the token's scopes ([`super::token_scopes`]).

use super::report::Report;
use super::token_scopes;
use crate::config::Config;
use std::os::unix::fs::MetadataExt;

pub(super) fn digitalocean_check(r: &mut Report, cfg: &Config) {
    let d = &cfg.digitalocean;
    if !d.enabled {
        // The package carries codext-channel: say how to turn it on, so an
        // installed but unconfigured channel reads as a choice, not a fault.
        let detail = match token_scopes::channel_binary() {
            Some(bin) => format!(
                "the DigitalOcean channel is off ({} is installed; to use it: the API token in {}, \
                 [channels.digitalocean] enabled = true in helper.toml, then systemctl enable --now codext-channel)",
                bin.display(),
                d.token_file.display()
            ),
            None => "the DigitalOcean channel is off".to_owned(),
        };
        r.ok("digitalocean", detail);
        return;
    }
    match crate::accounts::killer_ids(&d.channel_user) {
        Ok((uid, _)) => r.ok(
            "digitalocean.channel",
            format!(
                "the channel process runs as {} (uid {uid}); the helper serves it {}",
                d.channel_user,
                d.channel_socket.display()
            ),
        ),
        Err(_) => r.fail(
            "digitalocean.channel",
            format!("the channel user {} does not exist", d.channel_user),
            "codext-helper init (it creates the user), then systemctl enable --now codext-channel",
        ),
    }
    let path = &d.token_file;
    match std::fs::symlink_metadata(path) {
        Err(e) if std::env::var_os("DIGITALOCEAN_TOKEN").is_none() => {
            r.fail("digitalocean", format!("{}: {e}", path.display()), format!("put the API token in {} (0600, root)", path.display()))
        }
        Err(_) => r.warn("digitalocean", "the token comes from DIGITALOCEAN_TOKEN", format!("prefer {} (0600, root)", path.display())),
        Ok(m) if !m.is_file() || m.uid() != 0 || m.mode() & 0o077 != 0 => r.fail(
            "digitalocean",
            format!("{} has uid {} mode {:o}: others may read the API token", path.display(), m.uid(), m.mode() & 0o7777),
            format!("chown root:root {0} && chmod 600 {0}", path.display()),
        ),
        Ok(_) => r.ok(
            "digitalocean",
            format!("{} is root's, 0600 (codext-channel.service reads it with LoadCredential=); the token needs droplet:read, tag:read, tag:create, tag:delete, ssh_key:read", path.display()),
        ),
    }
    let token = match std::fs::symlink_metadata(path) {
        Ok(_) => codext_core::secret_file::read_secret(
            path,
            "the API token file",
            codext_core::secret_file::Owner::Uid(0),
        )
        .ok(),
        Err(_) => std::env::var("DIGITALOCEAN_TOKEN")
            .ok()
            .map(zeroize::Zeroizing::new),
    };
    match token {
        Some(t) if !t.trim().is_empty() => {
            token_scopes::check(r, cfg, &zeroize::Zeroizing::new(t.trim().to_owned()))
        }
        _ => {}
    }
}
