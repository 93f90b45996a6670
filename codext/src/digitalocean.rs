//! The agent's side of the DigitalOcean channel: publish its key, ask the
//! server for a puzzle, wait for it, answer, wait until the server armed
//! the user, and log in — all through the API, the only way out of the
//! agent's sandbox besides SSH.
//!
//! The API token comes from `DIGITALOCEAN_TOKEN` or a file only the agent
//! can read (`--token-file`); never from the command line, never logged.
//!
//! Waits between reads of the droplet follow the token's budget by the same
//! rules as the server's channel (`codext_do::budget`): every `interval`
//! while the budget allows, slower as `ratelimit-remaining` falls below
//! half the limit, and none at all with `RESERVE` requests or fewer left
//! (those are kept for posting the answer). A long wait backs off: the pause
//! is at least a tenth of the time waited so far, at most `BACKOFF_MAX` (the
//! server's idle period: a server that has not answered yet is polling no
//! faster). After posting a request or an
//! answer the agent waits one pause before its first read: the server
//! cannot have answered yet, and the read would be a wasted call.
//!
//! Tags are channel format v3 (`codext_do::tags::v3`; puzzles in v2 tags,
//! `codext_do::tags::v2`, are read too, and answered in v2): every tag the
//! agent writes or reads names the droplet it is for, so agents of two
//! servers in one account never see each other's requests, puzzles or
//! answers. The agent attaches its request and its answer to the droplet
//! (the server reads only the droplet); a v3 puzzle's chunk tags are
//! attached to nothing, so the agent reads them, and its answer's removal,
//! in the account's tag listing (`GET /v2/tags`: one call per 200 tags of
//! the account). A v3 answer is accepted when the server has removed it
//! and the puzzle's chunks; a v2 one when its ready tag appears on the
//! droplet.

use crate::error::{ClientError, Result};
use codext_core::secret_file::{read_secret, Owner};
use codext_core::{OpenedPuzzle, PrivateKey, ProfileName, PublicKey, Puzzle};
use codext_do::budget::{Activity, Pacing, Policy};
use codext_do::tags::{Space, Space3};
use codext_do::{ApiConfig, Client};
use std::time::Duration;
use zeroize::Zeroizing;

/// Where and how to reach the API.
#[derive(Debug, Clone)]
pub struct Access {
    /// API base URL.
    pub api_url: String,
    /// Token file, if not from the environment.
    pub token_file: Option<std::path::PathBuf>,
    /// Poll period.
    pub interval: Duration,
    /// Give up after this long.
    pub timeout: Duration,
    /// Say on stderr what is being waited for.
    pub progress: bool,
    /// How to wake the server after posting a request.
    pub knock: Knock,
}

/// How the agent wakes the server's channel after posting its request, so
/// the server need not notice it at its next idle poll (see
/// `codext_do::budget`, "Wakes").
#[derive(Clone, Default)]
pub enum Knock {
    /// Not at all: the server finds the request at its own pace.
    #[default]
    Off,
    /// An SSH attempt at a random codext name on this port of the
    /// droplet's public address ([`crate::ssh::knock`]).
    Ssh(u16),
    /// A call (the fleet benchmark rings the simulated channel's bell
    /// directly).
    Call(std::sync::Arc<dyn Fn() + Send + Sync>),
}

impl std::fmt::Debug for Knock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Knock::Off => write!(f, "Off"),
            Knock::Ssh(port) => write!(f, "Ssh({port})"),
            Knock::Call(_) => write!(f, "Call"),
        }
    }
}

/// Requests of the agent token's budget never spent on waiting.
pub const RESERVE: u64 = 250;
/// Longest back-off of a long wait.
pub const BACKOFF_MAX: Duration = Duration::from_secs(15);
/// The first read after posting a request comes this many `interval`s
/// later, after posting an answer [`ANSWER_WAIT`] (measured against the
/// emulator at 150–250 ms a call: sooner reads mostly found nothing yet and
/// cost a call each).
pub const REQUEST_WAIT: f64 = 1.5;
/// See [`REQUEST_WAIT`].
pub const ANSWER_WAIT: f64 = 1.5;
/// Share of the agent token's hourly budget its waits may spend.
pub const SHARE: f64 = 0.5;

/// The agent's waits: [`codext_do::budget`] with `interval` as the pace.
#[derive(Debug)]
pub struct Waits {
    pacing: Pacing,
    calls: u64,
    start: Duration,
}

impl Waits {
    /// Starts the clock of a wait for `c`'s calls.
    pub fn new(c: &Client, access: &Access) -> Waits {
        Waits {
            pacing: Pacing::new(Policy {
                busy: access.interval,
                idle: access.interval,
                hot_for: access.timeout,
                share: SHARE,
                reserve: RESERVE,
            }),
            calls: c.calls(),
            start: c.clock().now(),
        }
    }

    /// Time since the wait began.
    pub fn elapsed(&self, c: &Client) -> Duration {
        c.clock().now().saturating_sub(self.start)
    }

    /// Sleeps the pause the budget allows after the calls made since the
    /// last pause.
    pub fn pause(&mut self, c: &Client) {
        self.pause_at_least(c, Duration::ZERO);
    }

    /// Like [`Waits::pause`], at least `min`.
    pub fn pause_at_least(&mut self, c: &Client, min: Duration) {
        let clock = c.clock();
        let cost = c.calls().saturating_sub(self.calls);
        let d = self.pacing.after_pass(
            clock.now(),
            clock.unix().as_secs(),
            cost,
            Activity {
                happened: true,
                in_flight: false,
            },
            c.budget(),
        );
        let backoff = (self.elapsed(c) / 10).min(BACKOFF_MAX);
        clock.sleep(d.max(backoff).max(min));
        self.calls = c.calls();
    }
}

/// Reads the token: the token file (the agent's own, not readable by
/// others) when one is named, else `DIGITALOCEAN_TOKEN`.
pub fn token(access: &Access) -> Result<Zeroizing<String>> {
    if let Some(path) = &access.token_file {
        let text = read_secret(path, "the token file", Owner::Me)?;
        return Ok(Zeroizing::new(text.trim().to_owned()));
    }
    match std::env::var("DIGITALOCEAN_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Ok(Zeroizing::new(t.trim().to_owned())),
        _ => Err(ClientError::Input(
            "no DigitalOcean API token: set DIGITALOCEAN_TOKEN or pass --token-file".into(),
        )),
    }
}

/// An API client for `access`.
pub fn client(access: &Access) -> Result<Client> {
    Ok(Client::new(ApiConfig::new(
        access.api_url.clone(),
        token(access)?.to_string(),
    )))
}

/// Publishes the agent's public key in the account as `codext-…`;
/// returns (id, DigitalOcean fingerprint, already there).
pub fn publish_key(c: &Client, public: &PublicKey, name: &str) -> Result<(u64, String, bool)> {
    let name = if name.starts_with("codext-") {
        name.to_owned()
    } else {
        format!("codext-{name}")
    };
    let line = public.to_openssh()?;
    let (key, existed) = c.create_key(&name, line.trim())?;
    Ok((key.id, key.fingerprint, existed))
}

/// The channel format a puzzle came in (and its answer goes out in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `codext2:` tags, with a ready notice (servers of the previous
    /// release, or an operator's puzzle published by one).
    V2,
    /// `codext3:` tags.
    V3,
}

/// A puzzle fetched from the channel.
#[derive(Debug)]
pub struct Fetched {
    /// Its text form.
    pub text: String,
    /// Opened with the agent's key.
    pub opened: OpenedPuzzle,
    /// The format its answer goes out in.
    pub format: Format,
    /// The droplet's public IPv4 address, if it was read on the way (for
    /// the knock).
    pub address: Option<std::net::Ipv4Addr>,
}

/// Asks the server for a puzzle for `public` granting `profile` (a v3
/// request tag on the droplet; the profile rides in it).
pub fn request(c: &Client, droplet: u64, public: &PublicKey, profile: &ProfileName) -> Result<()> {
    Ok(c.attach_new_tag(
        &Space3::new(droplet).request_tag(&public.fingerprint(), profile),
        droplet,
    )?)
}

/// Refuses `opened` unless it grants `expected` (when the agent
/// named a profile): the server signed what the grant may do, and an agent
/// that asked for one thing must not log in to another.
pub fn check_profile(opened: &OpenedPuzzle, expected: Option<&ProfileName>) -> Result<()> {
    match expected {
        Some(want) if *want != opened.content.profile => Err(ClientError::Refused(format!(
            "the puzzle for {} grants the profile {}, not {want}: not logging in",
            opened.content.user, opened.content.profile
        ))),
        _ => Ok(()),
    }
}

fn progress(what: &str, droplet: u64, elapsed: Duration) {
    eprintln!(
        "codext: waiting for {what} on droplet {droplet} ({} s)",
        elapsed.as_secs()
    );
}

/// Reads the account's tags until a puzzle of `droplet` for `agent`
/// appears that opens with the pinned `server` key; returns it with its
/// text and format.
fn wait_puzzle(
    c: &Client,
    access: &Access,
    droplet: u64,
    agent: &PrivateKey,
    server: &PublicKey,
    expect: Option<&ProfileName>,
    waits: &mut Waits,
) -> Result<(String, OpenedPuzzle, Format)> {
    let mine = agent.public("")?.fingerprint();
    let mut refused = std::collections::HashSet::new();
    loop {
        // v3 chunks are attached to nothing, v2 ones to the droplet: the
        // account's listing holds both.
        let tags = c.list_tags()?;
        let found = Space3::new(droplet)
            .collect_puzzles(&tags)
            .into_iter()
            .map(|t| (t, Format::V3))
            .chain(
                Space::new(droplet)
                    .collect_puzzles(&tags)
                    .into_iter()
                    .map(|t| (t, Format::V2)),
            );
        for (text, format) in found {
            let Ok(p) = Puzzle::from_text(&text) else {
                continue;
            };
            if p.recipient != mine || refused.contains(&text) {
                continue;
            }
            match p.open(agent, server, codext_core::time::now()) {
                Ok(opened) => {
                    if let Err(e) = check_profile(&opened, expect) {
                        // Another grant for this key (an operator's), not
                        // the one asked for: not this login's.
                        eprintln!("codext: ignoring a puzzle: {e}");
                        refused.insert(text);
                        continue;
                    }
                    return Ok((text, opened, format));
                }
                Err(e) => {
                    // Anyone who can write tags could post a forgery: say
                    // so, ignore it, keep waiting for the real one.
                    eprintln!(
                        "codext: ignoring a puzzle for this key that does not check out: {e}"
                    );
                    refused.insert(text);
                }
            }
        }
        if waits.elapsed(c) > access.timeout {
            return Err(no_puzzle(c, droplet, &mine, access.timeout));
        }
        if access.progress {
            progress("a puzzle", droplet, waits.elapsed(c));
        }
        waits.pause(c);
    }
}

/// Why no puzzle came, as far as the agent can tell: the server cannot say
/// that a key is off its allow-list, but the agent can check (one call,
/// only now) whether its key is in the account at all.
fn no_puzzle(
    c: &Client,
    droplet: u64,
    mine: &codext_core::Fingerprint,
    waited: Duration,
) -> ClientError {
    let waited = waited.as_secs();
    match c.list_keys() {
        Ok(keys) => {
            let published = keys.iter().find(|k| {
                PublicKey::from_openssh(&k.public_key).is_ok_and(|p| &p.fingerprint() == mine)
            });
            ClientError::Other(match published {
                None => format!(
                    "no puzzle for this key on droplet {droplet} after {waited} s: the key is not \
                     in the DigitalOcean account; run `codext publish-key` first"
                ),
                Some(k) => format!(
                    "no puzzle for this key on droplet {droplet} after {waited} s, although it is \
                     in the account as {:?}: the server issues puzzles only to keys on its \
                     allow-list (ask its operator to add {mine}), or its channel is not running",
                    k.name
                ),
            })
        }
        Err(e) => ClientError::Other(format!(
            "no puzzle for this key on droplet {droplet} after {waited} s (is the key on the \
             server's allow-list?); listing the account's keys to tell more failed: {e}"
        )),
    }
}

/// Posts the answer, in the format its puzzle came in.
pub fn answer(
    c: &Client,
    droplet: u64,
    answer: &codext_core::Answer,
    format: Format,
) -> Result<()> {
    let tag = match format {
        Format::V3 => Space3::new(droplet).answer_tag(answer),
        Format::V2 => Space::new(droplet).answer_tag(answer),
    };
    Ok(c.attach_new_tag(&tag, droplet)?)
}

/// Polls until the server has taken the answer to `opened` (v3: the
/// answer and the puzzle's chunks are gone from the account's tags; v2:
/// the ready tag is up on the droplet), the first read one pause after the
/// answer was posted; returns the droplet's public IPv4 address (`address`
/// when it is already known, else read from the droplet).
pub fn wait_ready(
    c: &Client,
    access: &Access,
    droplet: u64,
    opened: &OpenedPuzzle,
    format: Format,
    mut address: Option<std::net::Ipv4Addr>,
) -> Result<String> {
    let user = &opened.content.user;
    let mut waits = Waits::new(c, access);
    // The server sees the answer at its next poll (a login in flight polls
    // every second), then reads and deletes: a read sooner than this
    // mostly comes too early.
    let mut first = access.interval.mul_f64(ANSWER_WAIT);
    loop {
        waits.pause_at_least(c, std::mem::take(&mut first));
        let ready = match format {
            Format::V3 => Space3::new(droplet).accepted(
                &c.list_tags()?,
                &opened.answer,
                &opened.content.puzzle_id,
            ),
            Format::V2 => {
                let d = c.droplet(droplet)?;
                address = Some(d.public_address().map_err(ClientError::Host)?);
                Space::new(droplet).is_ready(&d.tags, user)
            }
        };
        if ready {
            let address = match address {
                Some(a) => a,
                None => c
                    .droplet(droplet)?
                    .public_address()
                    .map_err(ClientError::Host)?,
            };
            return Ok(address.to_string());
        }
        if waits.elapsed(c) > access.timeout {
            return Err(ClientError::Other(format!(
                "the server did not accept the answer for {user} within {} s",
                access.timeout.as_secs()
            )));
        }
        if access.progress {
            progress("the server to arm the user", droplet, waits.elapsed(c));
        }
    }
}

/// Asks for a puzzle for `agent` unless `ask` is false (the operator
/// issued one), and waits for one that opens with the pinned `server` key.
pub fn fetch_puzzle(
    c: &Client,
    access: &Access,
    droplet: u64,
    agent: &PrivateKey,
    server: &PublicKey,
    ask: bool,
    profile: Option<&ProfileName>,
) -> Result<Fetched> {
    let mut waits = Waits::new(c, access);
    let mut address = None;
    if ask {
        // The droplet's address, to knock at: one read, made while the
        // request is posted.
        let public = agent.public("")?;
        let (read, posted) = std::thread::scope(|s| {
            let address = match access.knock {
                Knock::Off => None,
                _ => Some(s.spawn(|| c.droplet(droplet))),
            };
            let shell = ProfileName::shell();
            let posted = request(c, droplet, &public, profile.unwrap_or(&shell));
            let address = address.map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(codext_do::Error::Http("the droplet read panicked".into()))
                })
            });
            (address, posted)
        });
        posted?;
        address = match read {
            Some(d) => Some(d?.public_address().map_err(ClientError::Host)?),
            None => None,
        };
        match (&access.knock, &address) {
            (Knock::Ssh(port), Some(host)) => {
                // The knock runs in the background; a failure to start it
                // only means the server finds the request later.
                if let Err(e) = crate::ssh::knock(&host.to_string(), *port) {
                    eprintln!("codext: {e}");
                }
            }
            (Knock::Call(f), _) => f(),
            _ => {}
        }
        // The server, woken, reads the droplet, has the helper issue the
        // puzzle and publishes it: a read sooner than this mostly comes
        // too early.
        waits.pause_at_least(c, access.interval.mul_f64(REQUEST_WAIT));
    }
    let (text, opened, format) =
        wait_puzzle(c, access, droplet, agent, server, profile, &mut waits)?;
    Ok(Fetched {
        text,
        opened,
        format,
        address,
    })
}
