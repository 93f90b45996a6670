//! The argument groups several subcommands share (flattened into them):
//! the keys, the profile, a persistent task's choices and the API access.

use crate::error::Result;
use crate::{digitalocean, ssh};
use codext_core::keys::{PrivateKey, PublicKey, SERVER_BITS};
use codext_core::time::now;
use codext_core::{OpenedPuzzle, ProfileName, Puzzle};
use std::path::PathBuf;

/// The grant profile asked for and expected.
#[derive(clap::Args, Debug)]
pub(super) struct ProfileArg {
    /// The grant profile (what the account may do: the server's operator
    /// names them; default shell). A request asks for it, and a puzzle
    /// granting another profile is refused.
    #[arg(long, value_parser = ProfileName::parse)]
    pub(super) profile: Option<ProfileName>,
}

impl ProfileArg {
    /// Refuses `opened` unless it grants the profile asked for (any, when
    /// none was named).
    pub(super) fn check(&self, opened: &OpenedPuzzle) -> Result<()> {
        digitalocean::check_profile(opened, self.profile.as_ref())
    }
}

/// `open`'s choices: a whole task on one grant.
#[derive(clap::Args, Debug)]
pub(super) struct PersistArgs {
    /// The alias is codext-NAME (default: from the host).
    #[arg(long)]
    name: Option<String>,
    /// Keep the account this long after the connection drops, for a
    /// reconnect with the key (the server caps it; never past the grant).
    #[arg(long, default_value = "0s", value_parser = parse_linger)]
    linger: std::time::Duration,
    /// End the connection after this long with no command.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    idle: std::time::Duration,
    /// Leave ~/.ssh/config alone (use `ssh -F ~/.ssh/codext/NAME.conf`).
    #[arg(long)]
    no_include: bool,
    /// JSON event lines on stdout.
    #[arg(long)]
    pub(super) json: bool,
}

impl PersistArgs {
    pub(super) fn open(
        &self,
        key: &std::path::Path,
        opened: &OpenedPuzzle,
        host: String,
        port: u16,
    ) -> Result<crate::persist::Open> {
        let agent = PrivateKey::load(key)?;
        let name = match &self.name {
            Some(n) => n.clone(),
            None => crate::persist::default_name(&host),
        };
        Ok(crate::persist::Open {
            login: ssh::Login::from_puzzle(opened, host, port, Vec::new()),
            key: key.to_path_buf(),
            public_key: agent.public("codext-agent")?.to_openssh()?,
            name,
            linger: self.linger.as_secs(),
            idle: self.idle,
            include: !self.no_include,
        })
    }
}

fn parse_linger(s: &str) -> std::result::Result<std::time::Duration, String> {
    if s.trim() == "0" || s.trim() == "0s" {
        return Ok(std::time::Duration::ZERO);
    }
    parse_duration(s)
}

/// How to reach the DigitalOcean API (the token itself comes from
/// `DIGITALOCEAN_TOKEN` or `--token-file`, never from the command line).
#[derive(clap::Args, Debug)]
pub(super) struct ApiArgs {
    /// API base URL.
    #[arg(long, default_value = codext_do::DEFAULT_API_URL)]
    api_url: String,
    /// File holding the API token (mode 0600) instead of DIGITALOCEAN_TOKEN.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Poll period.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: std::time::Duration,
    /// Give up waiting after this long.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    timeout: std::time::Duration,
}

impl ApiArgs {
    pub(super) fn access(&self) -> digitalocean::Access {
        digitalocean::Access {
            api_url: self.api_url.clone(),
            token_file: self.token_file.clone(),
            interval: self.interval,
            timeout: self.timeout,
            progress: true,
            knock: digitalocean::Knock::Off,
        }
    }
}

fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 2s or 10m: {e}"))?;
    if d.is_zero() || d.as_secs() > 24 * 3600 {
        return Err(format!("{s:?} must be between 1s and 24h"));
    }
    Ok(d)
}

/// The agent's key and the server key it pinned.
#[derive(clap::Args, Debug)]
pub(super) struct KeyArgs {
    /// The agent's private key.
    #[arg(long)]
    pub(super) key: PathBuf,
    /// The server's public key, pinned (OpenSSH format).
    #[arg(long)]
    server_key: PathBuf,
}

impl KeyArgs {
    /// The agent key and the pinned server key (which must be RSA-4096+).
    pub(super) fn load(&self) -> Result<(PrivateKey, PublicKey)> {
        let agent = PrivateKey::load(&self.key)?;
        let server = PublicKey::load(&self.server_key)?;
        server.require_bits(SERVER_BITS, "server")?;
        Ok((agent, server))
    }

    /// Loads both keys and opens `puzzle`.
    pub(super) fn open(&self, puzzle: &Puzzle) -> Result<OpenedPuzzle> {
        let (agent, server) = self.load()?;
        Ok(puzzle.open(&agent, &server, now())?)
    }
}
