//! The channel socket: the root helper's side of the boundary with the
//! unprivileged `codext-channel` process, which does every DigitalOcean
//! API call (the helper links no HTTP or TLS code).
//!
//! What it guarantees (OpenSSH's monitor is the model):
//! * served only to the configured channel user: `SO_PEERCRED` is checked
//!   on every connection (the socket is also 0660 root:<channel group> in
//!   a 0750 folder, but modes are not trusted alone); at most
//!   [`MAX_CONNECTIONS`] at once, each with read and write timeouts;
//! * one gate, [`TABLE`] (OpenSSH's `mon_table`): a row per verb says in
//!   which stage of the connection it is allowed (a connection must open
//!   with `hello` and the right protocol version, and says it once) and
//!   what it must name, checked before its handler runs: a puzzle only for
//!   a key on the allow-list (checked here, from the key itself), an
//!   answer only for a user of this server on this channel, "published"
//!   only for a puzzle waiting to be published; a verb without a row is
//!   refused;
//! * every refusal is a clear [`Reply::Refused`] and changes nothing;
//! * requests are rate-limited (a token bucket of [`BURST`] refilled at
//!   [`PER_SECOND`] a second, shared by all connections) and the puzzles
//!   out on this channel are capped at [`MAX_PENDING`], so a compromised
//!   channel process can at most deny service and ask for puzzles for
//!   allowed keys (which only their holders can open).
//!
//! The requests call the same [`Helper`] methods as the CLI verbs.
//!
//! Why one file over 400 lines: the listener, the rate limit, the table
//! and the handler of each verb are the whole boundary with the channel
//! process, kept together so it is reviewed in one reading.

use crate::config::Config;
use crate::error::{HelperError, Result};
use crate::ids::{Gid, Uid};
use crate::lifecycle::{Channel, Entry, Helper, Phase, UnixTime};
use crate::log::{error, info, warn};
use codext_core::channel_wire::{
    ChannelRequest, Refusal, Reply, ToPublish, CHANNEL_PROTOCOL, MAX_KEY_LINE, MAX_LIVE,
    MAX_WAIT_MS,
};
use codext_core::{Answer, Fingerprint, PublicKey};
use codext_wire::{read_frame, write_frame};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Channel connections served at once.
pub const MAX_CONNECTIONS: usize = 4;
/// Requests allowed in a burst.
pub const BURST: f64 = 64.0;
/// Requests allowed per second, sustained.
pub const PER_SECOND: f64 = 32.0;
/// Most puzzles out on this channel (pending or armed) at once.
pub const MAX_PENDING: usize = 32;
/// A connection idle this long is closed (the channel reconnects each pass).
const IDLE: Duration = Duration::from_secs(30);

/// The comment `init` gives the channel user: the Debian package's purge
/// removes an account of that name only when it carries this comment.
pub const CHANNEL_USER_COMMENT: &str = "codext DigitalOcean channel (never logs in)";

/// Creates the channel process's system user (`init`, so `setup`),
/// whether or not the channel is on: the package ships
/// `codext-channel.service`, which runs as that user, and turning the
/// channel on later must not need another account-making step. The
/// account can do nothing by itself (no shell, no home, password locked;
/// the helper serves the channel socket only when the channel is on).
pub fn ensure_channel_user(cfg: &Config) -> Result<()> {
    let a = &cfg.accounts;
    crate::accounts::ensure_system_account(
        &cfg.digitalocean.channel_user,
        CHANNEL_USER_COMMENT,
        (a.uid_min, a.uid_max),
    )?;
    Ok(())
}

/// Serves the channel socket on a thread of its own; if it cannot (no
/// channel user yet) it says why and tries again later.
pub fn spawn(helper: Helper) {
    let _ = std::thread::Builder::new()
        .name("channel-socket".into())
        .stack_size(256 * 1024)
        .spawn(move || loop {
            if let Err(e) = serve(&helper) {
                error!("channel socket not served: {e}");
            }
            std::thread::sleep(
                helper
                    .cfg
                    .digitalocean
                    .poll_idle
                    .max(Duration::from_secs(1)),
            );
        });
}

struct Shared {
    helper: Helper,
    bucket: Mutex<(f64, Instant)>,
    limited: AtomicUsize,
    open: AtomicUsize,
}

fn serve(helper: &Helper) -> Result<()> {
    let d = &helper.cfg.digitalocean;
    let (uid, gid) = crate::accounts::killer_ids(&d.channel_user).map_err(|_| {
        HelperError::Config(format!(
            "the channel user {} is not in /etc/passwd: run `codext-helper init`",
            d.channel_user
        ))
    })?;
    let listener = bind(&d.channel_socket, gid)?;
    info!(
        "channel socket on {} for uid {uid}",
        d.channel_socket.display()
    );
    let shared = Arc::new(Shared {
        helper: helper.clone(),
        bucket: Mutex::new((BURST, Instant::now())),
        limited: AtomicUsize::new(0),
        open: AtomicUsize::new(0),
    });
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(IDLE));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(3)));
        let peer = getsockopt(&stream, PeerCredentials).map(|c| Uid::from_raw(c.uid()));
        if peer != Ok(uid) {
            match &peer {
                Ok(uid) => warn!("channel socket: refused a peer with uid {uid}"),
                Err(e) => warn!("channel socket: refused a peer without credentials ({e})"),
            }
            let reply =
                Reply::refused(Refusal::Foreign, "this socket serves the channel user only");
            let _ = write_frame(&mut stream, &reply.encode());
            continue;
        }
        if shared.open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            let reply = Reply::refused(Refusal::RateLimited, "too many channel connections");
            let _ = write_frame(&mut stream, &reply.encode());
            continue;
        }
        let s = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("channel-conn".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                s.connection(stream);
                s.open.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared.open.fetch_sub(1, Ordering::SeqCst);
        }
    }
    Ok(())
}

/// The socket: its folder root:`gid` 0750, itself root:`gid` 0660, with
/// no window in which it exists with looser permissions.
fn bind(path: &Path, gid: Gid) -> Result<UnixListener> {
    let dir = path
        .parent()
        .ok_or_else(|| HelperError::System(format!("{} has no folder", path.display())))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| HelperError::system(format!("cannot create {}", dir.display()), e))?;
    let group = Some(nix::unistd::Gid::from_raw(gid.as_raw()));
    nix::unistd::chown(dir, Some(nix::unistd::Uid::from_raw(0)), group)
        .map_err(|e| HelperError::system(format!("cannot chown {}", dir.display()), e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
        .map_err(|e| HelperError::system(format!("cannot chmod {}", dir.display()), e))?;
    let listener = crate::daemon::listen_fresh(path)?;
    nix::unistd::chown(path, None, group)
        .map_err(|e| HelperError::system(format!("cannot chown {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| HelperError::system(format!("cannot chmod {}", path.display()), e))?;
    Ok(listener)
}

impl Shared {
    fn connection(&self, mut stream: UnixStream) {
        let mut conn = Conn { channel: None };
        loop {
            let Ok(frame) = read_frame(&mut stream) else {
                return;
            };
            // Charged before the frame is even decoded: beyond the bucket
            // every frame is refused unread (PROTOCOL.md), whatever its verb.
            let reply = if !self.take_token() {
                let n = self.limited.fetch_add(1, Ordering::Relaxed);
                if n % 1000 == 0 {
                    warn!("channel socket: rate limit hit ({} so far)", n + 1);
                }
                Reply::refused(Refusal::RateLimited, "too many requests; slow down")
            } else {
                match ChannelRequest::decode(&frame) {
                    Err((code, reason)) => Reply::refused(code, reason),
                    Ok(req) => self.gate(&mut conn, req).unwrap_or_else(|e| {
                        error!("channel socket: {e}");
                        Reply::refused(Refusal::Failed, "helper error")
                    }),
                }
            };
            if write_frame(&mut stream, &reply.encode()).is_err() {
                return;
            }
        }
    }

    /// The one gate of the channel socket: the request's row of [`TABLE`]
    /// says in which stages of the connection it is allowed and what it
    /// must name; both are checked here, for every verb alike, before its
    /// handler runs.
    fn gate(&self, conn: &mut Conn, req: ChannelRequest) -> Result<Reply> {
        let Some(row) = TABLE.iter().find(|r| r.verb == req.verb()) else {
            return Ok(Reply::refused(
                Refusal::UnknownVerb,
                "not a verb this socket serves",
            ));
        };
        let stage = conn.stage();
        if !row.stages.contains(&stage) {
            return Ok(Reply::refused(Refusal::OutOfPhase, stage.refusal(row.verb)));
        }
        let checked = match self.check(row.names, conn, &req)? {
            Ok(c) => c,
            Err(refusal) => return Ok(refusal),
        };
        (row.handler)(self, conn, req, checked)
    }

    /// What a request names, checked ([`Names`]); `Err` is the refusal.
    fn check(&self, names: Names, conn: &Conn, req: &ChannelRequest) -> Result<Checks> {
        if names == Names::Nothing {
            return Ok(Ok(Checked::Nothing));
        }
        let channel = conn.greeted()?;
        match (names, req) {
            (Names::AllowedKey, ChannelRequest::Request { key, name, profile }) => {
                self.allowed_key(channel, key, name, profile.as_deref())
            }
            (Names::ChannelUser, ChannelRequest::Answer { text }) => {
                self.channel_user(channel, text)
            }
            (Names::WaitingPuzzle, ChannelRequest::Published { user, id }) => {
                self.waiting_puzzle(channel, user, id)
            }
            _ => Ok(Err(Reply::refused(Refusal::Failed, "internal: wrong row"))),
        }
    }

    fn take_token(&self) -> bool {
        let Ok(mut b) = self.bucket.lock() else {
            return false;
        };
        let now = Instant::now();
        let refill = now.duration_since(b.1).as_secs_f64() * PER_SECOND;
        *b = ((b.0 + refill).min(BURST), now);
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }

    fn channel_entries(&self, channel: Channel) -> Result<Vec<Entry>> {
        Ok(self
            .helper
            .status()?
            .into_iter()
            .filter(|e| e.channel == channel && matches!(e.phase(), Phase::Pending | Phase::Armed))
            .collect())
    }

    /// Refuses a request (`key` or `user` names what it was about). The
    /// refusal changes nothing and whoever writes to the account can repeat
    /// it: it is counted in the audit trail's summaries, not written a line
    /// each.
    fn refuse(
        &self,
        code: Refusal,
        channel: Channel,
        request: &str,
        key: Option<String>,
        user: Option<String>,
        reason: &str,
    ) -> Reply {
        self.helper.log_counted(crate::audit::Counted {
            request,
            user: user.as_deref(),
            key: key.as_deref(),
            result: reason,
            source: channel.as_str(),
        });
        Reply::refused(code, reason)
    }

    /// [`Names::AllowedKey`]: a well-formed key on the allow-list, asking
    /// for a profile it may have.
    fn allowed_key(
        &self,
        channel: Channel,
        line: &str,
        name: &str,
        profile: Option<&str>,
    ) -> Result<Checks> {
        if line.len() > MAX_KEY_LINE || name.len() > 255 {
            return Ok(Err(Reply::refused(
                Refusal::Malformed,
                "key line or name too long",
            )));
        }
        let Ok(key) = PublicKey::from_openssh(line) else {
            return Ok(Err(Reply::refused(
                Refusal::Malformed,
                "not an OpenSSH public key line",
            )));
        };
        let fp = key.fingerprint().to_string();
        let Some(d) = self.helper.cfg.channel(channel) else {
            return Ok(Err(Reply::refused(
                Refusal::NotAllowed,
                format!("the channel {channel} is not configured"),
            )));
        };
        let named = name.to_ascii_lowercase().starts_with("codext-");
        // (issue 26) The profile asked for; none: shell.
        let profile = match profile.map(codext_core::ProfileName::parse) {
            None => codext_core::ProfileName::shell(),
            Some(Ok(p)) => p,
            Some(Err(_)) => {
                return Ok(Err(Reply::refused(
                    Refusal::Malformed,
                    "not a profile name",
                )))
            }
        };
        // The key's own profiles; the opt-in for any codext key gives
        // shell only.
        let may: Vec<String> = match d.allowed_keys.profiles_of(&fp) {
            Some(p) => p,
            None if d.issue_to_any_codext_key && named => {
                vec![codext_core::profile::SHELL.to_owned()]
            }
            None => {
                return Ok(Err(self.refuse(
                    Refusal::NotAllowed,
                    channel,
                    "puzzle",
                    Some(fp),
                    None,
                    "key not on the allow-list",
                )))
            }
        };
        if !may.iter().any(|p| p == profile.as_str()) {
            return Ok(Err(self.refuse(
                Refusal::NotAllowed,
                channel,
                "puzzle",
                Some(fp),
                None,
                &format!(
                    "the key may not ask for the profile {profile} (allowed: {})",
                    may.join(", ")
                ),
            )));
        }
        Ok(Ok(Checked::Key {
            key: Box::new(key),
            fp,
            profile,
        }))
    }

    /// [`Names::ChannelUser`]: an answer text naming a user of this
    /// server whose puzzle went out on this channel.
    fn channel_user(&self, channel: Channel, text: &str) -> Result<Checks> {
        let Ok(answer) = Answer::parse(text) else {
            return Ok(Err(Reply::refused(
                Refusal::Malformed,
                "not an answer text",
            )));
        };
        let user = answer.user.to_string();
        let known = self
            .helper
            .status()?
            .into_iter()
            .find(|e| e.user.as_str() == user)
            .map(|e| e.channel == channel);
        Ok(match known {
            None => {
                self.helper.log_stranger(
                    crate::audit::Stranger::UnknownUser,
                    &user,
                    channel.as_str(),
                );
                Err(Reply::refused(
                    Refusal::Foreign,
                    format!("{user} is not a user of this server"),
                ))
            }
            Some(false) => Err(self.refuse(
                Refusal::Foreign,
                channel,
                "answer",
                None,
                Some(user),
                "the user's puzzle went out on another channel",
            )),
            Some(true) => Ok(Checked::User(user)),
        })
    }

    /// [`Names::WaitingPuzzle`]: the puzzle `id` of `user`, of this
    /// channel, waiting to be published.
    fn waiting_puzzle(&self, channel: Channel, user: &str, id: &str) -> Result<Checks> {
        let waiting = self
            .helper
            .unpublished(channel)?
            .into_iter()
            .any(|(u, i, _)| {
                u == user && codext_core::encoding::hex(&i) == id.to_ascii_lowercase()
            });
        Ok(if waiting {
            Ok(Checked::User(user.to_owned()))
        } else {
            Err(Reply::refused(
                Refusal::OutOfPhase,
                "no puzzle of that user and id is waiting to be published",
            ))
        })
    }

    fn hello(&self, conn: &mut Conn, req: ChannelRequest, _: Checked) -> Result<Reply> {
        let ChannelRequest::Hello { version, channel } = req else {
            return Ok(wrong_row());
        };
        if version != CHANNEL_PROTOCOL {
            return Ok(Reply::refused(
                Refusal::Version,
                format!("this helper speaks channel protocol {CHANNEL_PROTOCOL}, not {version}"),
            ));
        }
        let (channel, d) = match announced(&self.helper.cfg, channel.as_deref()) {
            Ok(c) => c,
            Err(why) => {
                warn!("channel socket: refused a hello: {why}");
                return Ok(Reply::refused(Refusal::NotAllowed, why));
            }
        };
        conn.channel = Some(channel);
        let ms = |t: Duration| u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        Ok(Reply::Hello {
            version: CHANNEL_PROTOCOL,
            api_url: d.api_url.clone(),
            metadata_url: d.metadata_url.clone(),
            droplet_id: d.droplet_id,
            poll_busy_ms: ms(d.poll_busy),
            poll_idle_ms: ms(d.poll_idle),
            hot_for_ms: ms(d.hot_for),
            budget_share_percent: d.budget_share,
            budget_reserve: d.budget_reserve,
        })
    }

    fn request(&self, conn: &mut Conn, _: ChannelRequest, checked: Checked) -> Result<Reply> {
        let Checked::Key { key, fp, profile } = checked else {
            return Ok(wrong_row());
        };
        let channel = conn.greeted()?;
        let live = self.channel_entries(channel)?;
        if live.iter().any(|e| e.client_fingerprint == fp) {
            return Ok(Reply::Ok {
                user: None,
                note: "a puzzle for this key is already out".into(),
            });
        }
        if live.len() >= MAX_PENDING {
            return Ok(self.refuse(
                Refusal::RateLimited,
                channel,
                "puzzle",
                Some(fp),
                None,
                "too many puzzles out on this channel",
            ));
        }
        match self
            .helper
            .issue_profile(&key, None, channel, None, &profile, UnixTime::now())
        {
            Ok(issued) => Ok(Reply::Ok {
                user: Some(issued.user),
                note: "issued".into(),
            }),
            Err(e) => Ok(Reply::refused(Refusal::Failed, e.to_string())),
        }
    }

    fn answer(&self, conn: &mut Conn, req: ChannelRequest, checked: Checked) -> Result<Reply> {
        let (ChannelRequest::Answer { text }, Checked::User(_)) = (req, checked) else {
            return Ok(wrong_row());
        };
        let channel = conn.greeted()?;
        match self.helper.answer(&text, channel.as_str(), UnixTime::now()) {
            Ok(entry) => Ok(Reply::Ok {
                user: Some(entry.user.to_string()),
                note: "armed".into(),
            }),
            Err(e) => Ok(Reply::refused(Refusal::Failed, e.to_string())),
        }
    }

    fn next(&self, conn: &mut Conn, _: ChannelRequest, _: Checked) -> Result<Reply> {
        let channel = conn.greeted()?;
        let puzzle =
            self.helper
                .unpublished(channel)?
                .into_iter()
                .next()
                .map(|(user, id, text)| ToPublish {
                    user,
                    id: codext_core::encoding::hex(&id),
                    text,
                });
        Ok(Reply::Next { puzzle })
    }

    fn published(&self, _: &mut Conn, _: ChannelRequest, checked: Checked) -> Result<Reply> {
        let Checked::User(user) = checked else {
            return Ok(wrong_row());
        };
        self.helper.mark_published(&user)?;
        Ok(Reply::Ok {
            user: Some(user),
            note: "published".into(),
        })
    }

    fn live(&self, conn: &mut Conn, _: ChannelRequest, _: Checked) -> Result<Reply> {
        let entries = self.channel_entries(conn.greeted()?)?;
        let mut puzzles = Vec::new();
        let mut keys = Vec::new();
        let mut armed = Vec::new();
        for e in &entries {
            if let Some(fp) = Fingerprint::parse(&e.client_fingerprint) {
                keys.push(codext_core::encoding::hex(&fp.0[..16]));
            }
            match e.phase() {
                Phase::Pending => puzzles.push(codext_core::encoding::hex(&e.token.puzzle_id[..4])),
                _ => armed.push(e.user.to_string()),
            }
        }
        let complete =
            puzzles.len() <= MAX_LIVE && keys.len() <= MAX_LIVE && armed.len() <= MAX_LIVE;
        for l in [&mut puzzles, &mut keys, &mut armed] {
            l.truncate(MAX_LIVE);
        }
        Ok(Reply::Live {
            puzzles,
            keys,
            armed,
            complete,
        })
    }

    fn wait(&self, _: &mut Conn, req: ChannelRequest, _: Checked) -> Result<Reply> {
        let ChannelRequest::Wait { timeout_ms } = req else {
            return Ok(wrong_row());
        };
        Ok(Reply::Wait {
            woken: crate::wake::wait(Duration::from_millis(timeout_ms.min(MAX_WAIT_MS))),
        })
    }
}

fn wrong_row() -> Reply {
    Reply::refused(Refusal::Failed, "internal: wrong row")
}

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Connected; only `hello` may come.
    BeforeHello,
    /// `hello` accepted: the connection's version is known.
    AfterHello,
}

impl Stage {
    /// Why a verb not allowed now is refused.
    fn refusal(self, verb: &str) -> String {
        match self {
            Stage::BeforeHello => format!("{verb} before hello"),
            // Only `hello`'s row leaves this stage out.
            Stage::AfterHello => format!("{verb} twice"),
        }
    }
}

/// One connection's state.
struct Conn {
    /// The channel its `hello` announced; `None` before it.
    channel: Option<Channel>,
}

impl Conn {
    fn stage(&self) -> Stage {
        match self.channel {
            None => Stage::BeforeHello,
            Some(_) => Stage::AfterHello,
        }
    }

    /// The announced channel, for a verb allowed only after `hello` (the
    /// gate has checked the stage).
    fn greeted(&self) -> Result<Channel> {
        self.channel.ok_or_else(|| {
            HelperError::System("internal: a verb of after hello ran before it".into())
        })
    }
}

/// The channel a `hello` announces (none: `digitalocean`, as a channel
/// process of an earlier release means), with its settings; refused, with
/// the reason, unless it is a channel this helper knows and whose table
/// (`[channels.<name>]`) is on.
fn announced<'c>(
    cfg: &'c Config,
    name: Option<&str>,
) -> std::result::Result<(Channel, &'c crate::config::DigitalOcean), String> {
    let name = name.unwrap_or(Channel::DigitalOcean.as_str());
    let channel = match Channel::parse(name) {
        // The manual channel has no process: `issue` and `answer` are its.
        Some(c) if c != Channel::Manual => c,
        _ => {
            let shown: String = name.chars().take(32).filter(|c| !c.is_control()).collect();
            return Err(format!(
                "unknown channel {shown:?}: this helper serves only the channel {}",
                Channel::DigitalOcean
            ));
        }
    };
    match cfg.channel(channel) {
        Some(settings) => Ok((channel, settings)),
        None => Err(format!(
            "the channel {channel} is not configured here ([channels.{channel}] enabled = true in helper.toml)"
        )),
    }
}

/// What a request must name, checked by the gate before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    /// Nothing beyond its fields' types.
    Nothing,
    /// A well-formed key on the allow-list, and a profile that key may ask
    /// for (refused `malformed` or `not_allowed`).
    AllowedKey,
    /// A user of this server whose puzzle went out on this channel
    /// (refused `malformed` or `foreign`).
    ChannelUser,
    /// A puzzle of this channel waiting to be published, by user and id
    /// (refused `out_of_phase`).
    WaitingPuzzle,
}

/// A check's outcome: what the request names, or its refusal.
type Checks = std::result::Result<Checked, Reply>;

/// What the gate found a request names, for its handler.
enum Checked {
    /// [`Names::Nothing`].
    Nothing,
    /// [`Names::AllowedKey`]: the key, its fingerprint, the profile.
    Key {
        key: Box<PublicKey>,
        fp: String,
        profile: codext_core::ProfileName,
    },
    /// [`Names::ChannelUser`] and [`Names::WaitingPuzzle`]: the user.
    User(String),
}

/// One row of the channel socket's dispatch table.
struct Row {
    /// The verb (`ChannelRequest::verb`).
    verb: &'static str,
    /// The stages of the connection it is allowed in; in any other it is
    /// refused `out_of_phase`.
    stages: &'static [Stage],
    /// What it must name, checked before its handler.
    names: Names,
    /// What answers it once the checks above passed.
    handler: fn(&Shared, &mut Conn, ChannelRequest, Checked) -> Result<Reply>,
}

/// Every verb the channel socket serves and the checks made before each,
/// in one place (OpenSSH's `mon_table`): what is not here is refused. Every
/// frame, whatever its verb, is first charged to the token bucket
/// ([`Shared::connection`]).
const TABLE: &[Row] = &[
    Row {
        verb: "hello",
        stages: &[Stage::BeforeHello],
        names: Names::Nothing,
        handler: Shared::hello,
    },
    Row {
        verb: "request",
        stages: &[Stage::AfterHello],
        names: Names::AllowedKey,
        handler: Shared::request,
    },
    Row {
        verb: "answer",
        stages: &[Stage::AfterHello],
        names: Names::ChannelUser,
        handler: Shared::answer,
    },
    Row {
        verb: "next",
        stages: &[Stage::AfterHello],
        names: Names::Nothing,
        handler: Shared::next,
    },
    Row {
        verb: "published",
        stages: &[Stage::AfterHello],
        names: Names::WaitingPuzzle,
        handler: Shared::published,
    },
    Row {
        verb: "live",
        stages: &[Stage::AfterHello],
        names: Names::Nothing,
        handler: Shared::live,
    },
    Row {
        verb: "wait",
        stages: &[Stage::AfterHello],
        names: Names::Nothing,
        handler: Shared::wait,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table, written out again: a change to any row shows here.
    #[test]
    fn given_the_channel_socket_table_then_every_verb_has_exactly_these_checks() {
        let rendered: Vec<String> = TABLE
            .iter()
            .map(|r| format!("{} stages={:?} names={:?}", r.verb, r.stages, r.names))
            .collect();
        assert_eq!(
            rendered,
            [
                "hello stages=[BeforeHello] names=Nothing",
                "request stages=[AfterHello] names=AllowedKey",
                "answer stages=[AfterHello] names=ChannelUser",
                "next stages=[AfterHello] names=Nothing",
                "published stages=[AfterHello] names=WaitingPuzzle",
                "live stages=[AfterHello] names=Nothing",
                "wait stages=[AfterHello] names=Nothing",
            ]
        );
    }

    #[test]
    fn given_every_verb_of_the_protocol_then_the_table_has_its_row_once() {
        for verb in ChannelRequest::VERBS {
            assert_eq!(TABLE.iter().filter(|r| r.verb == verb).count(), 1, "{verb}");
        }
        assert_eq!(TABLE.len(), ChannelRequest::VERBS.len());
    }

    fn config(text: &str) -> Config {
        Config::from_toml_str(text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn given_a_hello_without_a_channel_then_it_means_digitalocean() {
        let on = config("[channels.digitalocean]\nenabled = true\ndroplet_id = 7\n");
        let (channel, settings) = announced(&on, None).unwrap();
        assert_eq!(channel, Channel::DigitalOcean);
        assert_eq!(settings.droplet_id, 7);
        let (channel, _) = announced(&on, Some("digitalocean")).unwrap();
        assert_eq!(channel, Channel::DigitalOcean);
        // The earlier spelling of the table is the same channel.
        let earlier = config("[digitalocean]\nenabled = true\n");
        assert_eq!(announced(&earlier, None).unwrap().0, Channel::DigitalOcean);
    }

    #[test]
    fn given_a_hello_naming_an_unknown_channel_then_refused_with_the_reason() {
        let on = config("[channels.digitalocean]\nenabled = true\n");
        for name in ["aws", "manual", "", "digitalocean\n", "DigitalOcean"] {
            let why = announced(&on, Some(name)).unwrap_err();
            assert!(why.starts_with("unknown channel"), "{name:?}: {why}");
            assert!(why.contains("only the channel digitalocean"), "{why}");
        }
        let long = "x".repeat(4000);
        assert!(announced(&on, Some(&long)).unwrap_err().len() < 128);
    }

    #[test]
    fn given_a_hello_naming_a_channel_not_configured_then_refused_with_the_reason() {
        for off in [
            "",
            "[channels.digitalocean]\nenabled = false\n",
            "[digitalocean]\nenabled = false\n",
        ] {
            for name in [None, Some("digitalocean")] {
                let why = announced(&config(off), name).unwrap_err();
                assert_eq!(
                    why,
                    "the channel digitalocean is not configured here \
                     ([channels.digitalocean] enabled = true in helper.toml)"
                );
            }
        }
    }

    #[test]
    fn given_a_stage_then_its_refusal_says_why() {
        assert_eq!(Stage::BeforeHello.refusal("live"), "live before hello");
        assert_eq!(Stage::AfterHello.refusal("hello"), "hello twice");
    }
}
