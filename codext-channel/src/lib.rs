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
//! ([`budget`]). Each pass is the channel-agnostic [`relay`] over a
//! [`relay::Carrier`]: here DigitalOcean's ([`pass::Pass`]), which reads
//! the droplet once, hands the answers and requests found in its tags
//! (channel formats v3 and v2, [`codext_do::tags`]) to the helper,
//! publishes new puzzles, and removes every tag of its own droplet's
//! namespace that nothing live stands behind.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

/// The pacing policy (shared with the agent: it lives in `codext-do`).
pub use codext_do::budget;
pub mod check;
pub mod link;
pub mod pass;
pub mod relay;
pub mod token;

use codext_core::channel_wire::{ChannelRequest, Reply, MAX_WAIT_MS};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where the helper serves the channel socket by default.
pub const DEFAULT_SOCKET: &str = "/run/codext-channel/helper.sock";
/// The channel this process carries: its name in `hello`, and in the
/// helper's configuration (`[channels.digitalocean]`) and state.
pub const CHANNEL: &str = "digitalocean";

/// Everything that can go wrong.
#[derive(Debug)]
pub enum ChannelError {
    /// Arguments, token, refusing to run as root.
    Config(String),
    /// The helper's socket: unreachable, closed, or an unexpected reply.
    Helper(String),
    /// The DigitalOcean API.
    Api(codext_do::Error),
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

impl From<codext_do::Error> for ChannelError {
    fn from(e: codext_do::Error) -> ChannelError {
        ChannelError::Api(e)
    }
}

impl From<codext_core::Error> for ChannelError {
    fn from(e: codext_core::Error) -> ChannelError {
        ChannelError::Api(codext_do::Error::Core(e))
    }
}

/// Result with [`ChannelError`].
pub type Result<T> = std::result::Result<T, ChannelError>;

/// The command line as clap defines it: `--help`, the man page and the
/// shell completions (`packaging/gen-docs`) come from this one definition.
#[derive(clap::Parser, Debug)]
#[command(
    name = "codext-channel",
    version,
    about = "The DigitalOcean channel of a codext server (unprivileged; talks to the API, asks codext-helper)",
    long_about = "The DigitalOcean channel of a codext server: the only codext process that talks \
to the API. It runs as the unprivileged system user codext-channel \
(codext-channel.service), holds the API token and all HTTP/TLS code, and asks the \
root codext-helper, over the channel socket, for whatever only root may do; the \
helper re-checks every request. Its settings (API URL, droplet, allow-list, \
polling) come from the helper ([channels.digitalocean] in /etc/codext/helper.toml).\n\n\
The API token: $CREDENTIALS_DIRECTORY/digitalocean.token (systemd's \
LoadCredential=), else --token-file, else DIGITALOCEAN_TOKEN. It refuses to run as root."
)]
struct Cli {
    /// The helper's channel socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// File holding the API token (this user's, mode 0600), read when there
    /// is no $CREDENTIALS_DIRECTORY.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// One pass, then exit (for tests and systemd-run).
    #[arg(long, conflicts_with = "check")]
    once: bool,
    /// Probe which of the channel's calls the token may make (one JSON line
    /// per scope), then exit; `codext-helper doctor` runs it.
    #[arg(long)]
    check: bool,
    /// Read the token from standard input (with --check).
    #[arg(long, requires = "check")]
    token_stdin: bool,
    /// API base URL (with --check; the service takes it from the helper).
    #[arg(long, value_name = "URL", requires = "check")]
    api_url: Option<String>,
    /// Metadata service base URL (with --check).
    #[arg(long, value_name = "URL", requires = "check")]
    metadata_url: Option<String>,
    /// The droplet's id (with --check; 0 asks the metadata service).
    #[arg(long, value_name = "ID", requires = "check")]
    droplet: Option<u64>,
}

/// The clap definition, for generated man pages and shell completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

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
    /// The process's arguments, or the exit status after clap printed
    /// its message (a usage error: one line, status 2; `--help` and
    /// `--version`: status 0).
    pub fn from_env() -> std::result::Result<Args, i32> {
        codext_core::cli_args::parse_args::<Cli>("codext-channel").map(Args::from)
    }

    /// Parses `args` (without the program name), for tests.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Args> {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("codext-channel".to_string()).chain(args))
            .map(Args::from)
            .map_err(|e| ChannelError::Config(e.to_string()))
    }
}

impl From<Cli> for Args {
    fn from(c: Cli) -> Args {
        let check = c.check.then(|| check::Target {
            api_url: c
                .api_url
                .unwrap_or_else(|| "https://api.digitalocean.com".into()),
            metadata_url: c
                .metadata_url
                .unwrap_or_else(|| "http://169.254.169.254/metadata/v1".into()),
            droplet_id: c.droplet.unwrap_or(0),
        });
        Args {
            socket: c.socket,
            token_file: c.token_file,
            once: c.once,
            check,
            token_stdin: c.token_stdin,
        }
    }
}

/// Sets up the log: lines named `codext-channel`, with their journald
/// priority when stderr is the journal, at the level `CODEXT_LOG_LEVEL`
/// names (default `info`); `CODEXT_CHANNEL_DEBUG` (any value) is `debug`.
pub fn init_log() {
    use codext_core::log;
    log::set_program("codext-channel");
    log::set_priority_prefix(log::stderr_is_journal());
    let level = if std::env::var_os("CODEXT_CHANNEL_DEBUG").is_some() {
        log::Level::Debug
    } else {
        log::Level::Info
    };
    if let Some(why) = log::set_level(level) {
        codext_core::log_warn!("{why}");
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
    let mut pacing: Option<budget::Pacing> = None;
    loop {
        let mut link = None;
        let pause = match link::Link::connect(&args.socket, CHANNEL) {
            Ok((l, settings)) => {
                let link = link.insert(l);
                if pass.is_none() {
                    match pass::Pass::start(&settings, &token) {
                        Ok(p) => {
                            codext_core::log_info!("watching droplet {}", p.droplet());
                            pass = Some(p);
                        }
                        Err(e) => codext_core::log_error!("cannot start: {e}"),
                    }
                }
                let pacing = pacing.get_or_insert_with(|| budget::Pacing::new(settings.policy));
                pacing.set_policy(settings.policy);
                match pass.as_mut() {
                    Some(p) => {
                        let (pause, result) = step(p, link, pacing);
                        if let Err(e) = result {
                            codext_core::log_warn!("{e}");
                        }
                        pause
                    }
                    None => settings.poll_idle,
                }
            }
            Err(e) => {
                codext_core::log_warn!("{e}");
                Duration::from_secs(2)
            }
        };
        if args.once {
            return Ok(());
        }
        match (pass.as_ref(), pacing.as_mut(), link.as_mut()) {
            (Some(p), Some(pacing), Some(link)) => {
                let clock = p.client().clock().clone();
                wait_for_next(&clock, pacing, pause, |d| listen(link, d));
            }
            (Some(p), _, _) => p.client().clock().sleep(pause),
            _ => std::thread::sleep(pause),
        }
    }
}

/// Asks the helper to wait up to `d` for a knock: whether one came. A
/// helper that cannot (an older one without `wait`, a broken connection)
/// is not listened to: the time is slept.
fn listen(link: &mut link::Link, d: Duration) -> Option<bool> {
    let ms = u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_WAIT_MS);
    match link.call(&ChannelRequest::Wait { timeout_ms: ms }) {
        Ok(Reply::Wait { woken }) => Some(woken),
        _ => {
            std::thread::sleep(d);
            Some(false)
        }
    }
}

/// Waits out `pause` after a pass (on `clock`), ending it early when a
/// knock comes and the pacing honours it ([`budget::Pacing::wake`]).
/// `listen(d)` waits up to `d` of real time (or less) for a knock:
/// `Some(true)` if one came, `Some(false)` if none did, `None` to stop
/// waiting at once. The fleet benchmark passes a bell of its own.
pub fn wait_for_next(
    clock: &codext_do::SharedClock,
    pacing: &mut budget::Pacing,
    pause: Duration,
    mut listen: impl FnMut(Duration) -> Option<bool>,
) {
    let until = clock.now() + pause;
    loop {
        let left = until.saturating_sub(clock.now());
        if left.is_zero() {
            return;
        }
        match listen(clock.real(left)) {
            Some(true) if pacing.wake(clock.now()) => {
                codext_core::log_debug!("woken at {:.1} s", clock.now().as_secs_f64());
                return;
            }
            Some(_) => {}
            None => return,
        }
    }
}

/// Pause after a failed pass at least.
pub const AFTER_FAILURE: Duration = Duration::from_secs(5);

/// One pass, then the pause before the next (by the token's budget, see
/// [`budget`]; at least [`AFTER_FAILURE`] after a failure) and how the
/// pass went. A failed pass counts too: its calls were spent. The fleet
/// benchmark runs the same step.
pub fn step(
    p: &mut pass::Pass,
    link: &mut link::Link,
    pacing: &mut budget::Pacing,
) -> (Duration, Result<()>) {
    let before = p.calls();
    let result = p.run(link);
    let cost = p.calls().saturating_sub(before);
    let clock = p.client().clock();
    let activity = result.as_ref().copied().unwrap_or_default();
    let pause = pacing.after_pass(
        clock.now(),
        clock.unix().as_secs(),
        cost,
        activity,
        p.budget(),
    );
    codext_core::log_debug!(
        "pass at {:.1} s: {cost} calls, {activity:?}, fleet {:.1}, next in {:.1} s",
        clock.now().as_secs_f64(),
        pacing.fleet(),
        pause.as_secs_f64()
    );
    match result {
        Ok(_) => (pause, Ok(())),
        Err(e) => (pause.max(AFTER_FAILURE), Err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::Args;

    fn parse(args: &[&str]) -> super::Result<Args> {
        Args::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn given_no_arguments_then_the_service_defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.socket, std::path::Path::new(super::DEFAULT_SOCKET));
        assert!(a.check.is_none() && !a.once && !a.token_stdin && a.token_file.is_none());
    }

    #[test]
    fn given_check_with_a_target_then_it_is_kept() {
        let a = parse(&[
            "--check",
            "--token-stdin",
            "--api-url",
            "http://127.0.0.1:9",
            "--droplet",
            "7",
        ])
        .unwrap();
        let t = a.check.unwrap();
        assert_eq!(
            (t.api_url.as_str(), t.droplet_id),
            ("http://127.0.0.1:9", 7)
        );
        assert_eq!(t.metadata_url, "http://169.254.169.254/metadata/v1");
        assert!(a.token_stdin);
    }

    #[test]
    fn given_check_options_without_check_or_a_bad_droplet_then_refused() {
        for bad in [
            &["--token-stdin"][..],
            &["--api-url", "http://x"],
            &["--check", "--droplet", "web-1"],
            &["--check", "--once"],
            &["--bogus"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
