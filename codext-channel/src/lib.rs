//! The DigitalOcean channel of a codext server, as its own unprivileged
//! process (`codext-channel.service`, user `codext-channel`).
//!
//! It holds the DigitalOcean API token (from `LoadCredential=`) and all of
//! codext's HTTP and TLS code; it has no access to the helper's state,
//! keys or audit trail. Everything only root may do it asks the root
//! `codext-helper` over the channel socket (`docs/PROTOCOL.md`, "The
//! channel socket"), where each request is re-validated: "an agent with
//! this key asks for a puzzle" (the helper checks its allow-list), "here
//! is an answer", "what is to be published", "it is published", "what is
//! still live". So this process, once compromised, can at most deny
//! service and ask for puzzles for keys the operator allowed.
//!
//! The pause between passes follows the token's rate-limit budget
//! ([`budget`]). Each pass ([`pass::Pass`]) reads the droplet once, hands answers and
//! requests found in its tags (channel format v2, [`codext_core::tags`]) to
//! the helper, publishes new puzzles, and removes every tag of its own
//! droplet's namespace that nothing live stands behind.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod budget;
pub mod check;
pub mod link;
pub mod pass;
pub mod token;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where the helper serves the channel socket by default.
pub const DEFAULT_SOCKET: &str = "/run/codext-channel/helper.sock";
/// The command line.
pub const USAGE: &str =
    "usage: codext-channel [--socket PATH] [--token-file PATH] [--once]\n       codext-channel --check [--token-stdin] [--api-url URL] [--metadata-url URL] [--droplet ID]\n  the token: $CREDENTIALS_DIRECTORY/digitalocean.token (systemd LoadCredential=), else --token-file, else DIGITALOCEAN_TOKEN\n  --check: which of the channel's calls the token may make (JSON lines; `codext-helper doctor` runs it)";

/// Everything that can go wrong.
#[derive(Debug)]
pub enum ChannelError {
    /// Arguments, token, refusing to run as root.
    Config(String),
    /// The helper's socket: unreachable, closed, or an unexpected reply.
    Helper(String),
    /// The DigitalOcean API.
    Api(codext_core::Error),
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::Config(m) => write!(f, "{m}"),
            ChannelError::Helper(m) => write!(f, "helper: {m}"),
            ChannelError::Api(e) => write!(f, "DigitalOcean: {e}"),
        }
    }
}

impl std::error::Error for ChannelError {}

impl From<codext_core::Error> for ChannelError {
    fn from(e: codext_core::Error) -> ChannelError {
        ChannelError::Api(e)
    }
}

/// Result with [`ChannelError`].
pub type Result<T> = std::result::Result<T, ChannelError>;

/// The command line, parsed.
#[derive(Debug, Clone)]
pub struct Args {
    /// The helper's channel socket.
    pub socket: PathBuf,
    /// Token file when there is no credentials folder.
    pub token_file: Option<PathBuf>,
    /// One pass, then exit (for tests and `systemd-run`).
    pub once: bool,
    /// `--check`: probe the token's scopes ([`check`]) and exit.
    pub check: Option<check::Target>,
    /// Read the token from standard input (for `--check`).
    pub token_stdin: bool,
}

impl Args {
    /// Parses `--socket PATH`, `--token-file PATH`, `--once`.
    pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args> {
        let mut args = Args {
            socket: PathBuf::from(DEFAULT_SOCKET),
            token_file: None,
            once: false,
            check: None,
            token_stdin: false,
        };
        let mut target = check::Target {
            api_url: "https://api.digitalocean.com".into(),
            metadata_url: "http://169.254.169.254/metadata/v1".into(),
            droplet_id: 0,
        };
        let mut checking = false;
        while let Some(a) = it.next() {
            let mut value = || {
                it.next()
                    .map(PathBuf::from)
                    .ok_or_else(|| ChannelError::Config(format!("{a} needs a value")))
            };
            match a.as_str() {
                "--socket" => args.socket = value()?,
                "--token-file" => args.token_file = Some(value()?),
                "--once" => args.once = true,
                "--check" => checking = true,
                "--token-stdin" => args.token_stdin = true,
                "--api-url" => target.api_url = value()?.to_string_lossy().into_owned(),
                "--metadata-url" => target.metadata_url = value()?.to_string_lossy().into_owned(),
                "--droplet" => {
                    let v = value()?;
                    target.droplet_id = v.to_string_lossy().parse().map_err(|_| {
                        ChannelError::Config(format!("--droplet {v:?} is not a droplet id"))
                    })?
                }
                other => return Err(ChannelError::Config(format!("unknown argument {other:?}"))),
            }
        }
        if checking {
            args.check = Some(target);
        } else if args.token_stdin {
            return Err(ChannelError::Config(
                "--token-stdin goes with --check".into(),
            ));
        }
        Ok(args)
    }
}

/// Runs passes until killed (or one, with `--once`).
pub fn run(args: &Args) -> Result<()> {
    if nix::unistd::geteuid().is_root() || nix::unistd::getuid().is_root() {
        return Err(ChannelError::Config(
            "refusing to run as root: run as the channel user (codext-channel.service)".into(),
        ));
    }
    let token = if args.token_stdin {
        token::from_stdin()?
    } else {
        token::read(args.token_file.as_deref())?
    };
    if let Some(target) = &args.check {
        for probe in check::run(target, &token) {
            println!("{}", probe.to_json());
        }
        return Ok(());
    }
    let mut pass: Option<pass::Pass> = None;
    let mut last_activity: Option<std::time::Instant> = None;
    // What a pass costs, smoothed (API calls).
    let mut calls_per_pass = 1.0f64;
    // This server's calls in the last hour: (when, how many) per pass.
    let mut spent: std::collections::VecDeque<(std::time::Instant, u64)> =
        std::collections::VecDeque::new();
    loop {
        let pause = match link::Link::connect(&args.socket) {
            Ok((mut link, settings)) => {
                if pass.is_none() {
                    match pass::Pass::start(&settings, &token) {
                        Ok(p) => {
                            eprintln!("codext-channel: watching droplet {}", p.droplet());
                            pass = Some(p);
                        }
                        Err(e) => eprintln!("codext-channel: cannot start: {e}"),
                    }
                }
                let before = pass.as_ref().map_or(0, pass::Pass::calls);
                let result = pass.as_mut().map(|p| p.run(&mut link));
                let after = pass.as_ref().map_or(0, pass::Pass::calls);
                let cost = after.saturating_sub(before);
                calls_per_pass = 0.8 * calls_per_pass + 0.2 * cost as f64;
                spent.push_back((std::time::Instant::now(), cost));
                while spent
                    .front()
                    .is_some_and(|(t, _)| t.elapsed() > Duration::from_secs(3600))
                {
                    spent.pop_front();
                }
                let spent_last_hour: u64 = spent.iter().map(|(_, c)| c).sum();
                match result {
                    Some(Ok(happened)) => {
                        if happened {
                            last_activity = Some(std::time::Instant::now());
                        }
                        let hot =
                            last_activity.is_some_and(|t| t.elapsed() < settings.policy.hot_for);
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        let budget = pass.as_ref().and_then(pass::Pass::budget);
                        budget::next_pause(
                            &settings.policy,
                            hot,
                            budget,
                            calls_per_pass,
                            spent_last_hour,
                            now,
                        )
                    }
                    Some(Err(e)) => {
                        eprintln!("codext-channel: {e}");
                        settings.poll_busy.max(Duration::from_secs(5))
                    }
                    None => settings.poll_idle,
                }
            }
            Err(e) => {
                eprintln!("codext-channel: {e}");
                Duration::from_secs(2)
            }
        };
        if args.once {
            return Ok(());
        }
        std::thread::sleep(pause);
    }
}
