//! `init` and puzzle issuing: a fresh name and uid (or a renewal of a live
//! user), a sealed puzzle, and the pending entry holding only the token's
//! hashes; and the channel's view of puzzles still to publish.

use super::entry::{Entry, NewEntry, TokenSlot};
use super::table::Request;
use super::types::{Channel, UnixTime};
use super::Helper;
use crate::audit::AuditEvent;
use crate::error::{HelperError, Result};
use crate::lifecycle::host::KnownAccounts;
use crate::store::Locked;
use codext_core::encoding::hex;
use codext_core::keys::{PrivateKey, PublicKey, MIN_AGENT_BITS, SERVER_BITS};
use codext_core::{hostkeys, ProfileName, Puzzle, PuzzleContent, Token};
use codext_wire::UserName;
use std::os::unix::fs::DirBuilderExt;
use std::time::Duration;

/// What `init` reports.
#[derive(Debug, serde::Serialize)]
pub struct InitReport {
    /// Path of the public key the agent pins.
    pub server_public_key: String,
    /// Its fingerprint.
    pub fingerprint: String,
    /// True when this run created the key.
    pub created: bool,
    /// The temporary users' group.
    pub group: String,
    /// Its gid.
    pub gid: u32,
    /// The killer's system account.
    pub killer_user: String,
    /// Its uid.
    pub killer_uid: u32,
    /// uids of the range held back because something of an earlier
    /// holder no state remembers is still there (see
    /// [`Helper::rescan_range`]).
    pub quarantined: Vec<u32>,
    /// What this run created, and nothing else: an account someone else
    /// made meanwhile is never in it.
    pub made: Vec<InitMade>,
}

/// One thing `init` is about to make ([`Helper::init_with`] says so before
/// it makes it, so `setup` can record it first).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum InitMade {
    /// The server key's folder.
    Folder(std::path::PathBuf),
    /// The server key (private half).
    Key(std::path::PathBuf),
    /// The server key's public half.
    PublicKey(std::path::PathBuf),
    /// A group (the temporary users' group).
    Group(String),
    /// A system account, with its own group of the same name (the killer,
    /// the channel process's user).
    Account(String),
}

/// What `issue` reports.
#[derive(Debug, serde::Serialize)]
pub struct Issued {
    /// The user the puzzle is for.
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// The puzzle's text form.
    pub puzzle: String,
    /// Puzzle id, hex.
    pub puzzle_id: String,
    /// Answer deadline (seconds since the epoch).
    pub expires_at: u64,
    /// The grant's profile.
    pub profile: String,
}

impl Helper {
    /// Creates the server key (if missing), the group and the state folder.
    pub fn init(&self, now: UnixTime) -> Result<InitReport> {
        self.init_with(now, &mut |_| Ok(()))
    }

    /// [`Helper::init`], telling `before` about each thing just before it
    /// makes it (only what is missing): `setup` records it in its manifest
    /// first, so a crash at any point leaves nothing `unsetup` does not
    /// know about. An error from `before` stops init there.
    pub fn init_with(
        &self,
        now: UnixTime,
        before: &mut dyn FnMut(&InitMade) -> Result<()>,
    ) -> Result<InitReport> {
        let key_path = &self.cfg.server_key;
        let pub_path = self.cfg.server_public_key();
        let mut made = Vec::new();
        let mut step = |what: InitMade, made: &mut Vec<InitMade>| -> Result<()> {
            before(&what)?;
            made.push(what);
            Ok(())
        };
        let mut created = false;
        if let Some(dir) = key_path.parent() {
            if !dir.exists() {
                step(InitMade::Folder(dir.to_path_buf()), &mut made)?;
            }
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| HelperError::system(format!("cannot create {}", dir.display()), e))?;
        }
        let comment = format!("codext-server@{}", self.cfg.server_identity());
        let write_public = |public: &PublicKey| {
            codext_core::keys::write_new_file(
                &pub_path,
                format!("{}\n", public.to_openssh()?).as_bytes(),
                0o644,
            )
        };
        let public = if key_path.exists() {
            let public = PrivateKey::load(key_path)?.public(&comment)?;
            public.require_bits(SERVER_BITS, "server")?;
            if !pub_path.exists() {
                step(InitMade::PublicKey(pub_path.clone()), &mut made)?;
                write_public(&public)?;
            }
            public
        } else {
            step(InitMade::Key(key_path.clone()), &mut made)?;
            step(InitMade::PublicKey(pub_path.clone()), &mut made)?;
            let key = PrivateKey::generate(SERVER_BITS)?;
            key.save(key_path)?;
            let public = key.public(&comment)?;
            let _ = std::fs::remove_file(&pub_path);
            write_public(&public)?;
            created = true;
            public
        };
        crate::setup::crash_point("the server key");
        let group = &self.cfg.accounts.group;
        if crate::accounts::lookup_group(group)?.is_none() {
            step(InitMade::Group(group.clone()), &mut made)?;
        }
        let gid = crate::accounts::ensure_group(group)?.as_raw();
        crate::setup::crash_point("the group");
        let a = &self.cfg.accounts;
        let missing = |name: &str| -> Result<bool> {
            nix::unistd::User::from_name(name)
                .map(|u| u.is_none())
                .map_err(|e| HelperError::account(format!("cannot look up {name}"), e))
        };
        if missing(&a.killer_user)? {
            step(InitMade::Account(a.killer_user.clone()), &mut made)?;
        }
        let killer_uid = crate::accounts::ensure_killer(&a.killer_user, (a.uid_min, a.uid_max))?
            .0
            .as_raw();
        crate::setup::crash_point("the killer account");
        // [channel] hook: the DigitalOcean channel process's own user.
        let channel_user = &self.cfg.digitalocean.channel_user;
        if missing(channel_user)? {
            step(InitMade::Account(channel_user.clone()), &mut made)?;
        }
        crate::channel_requests::ensure_channel_user(&self.cfg)?;
        crate::setup::crash_point("the channel account");
        // [recording] hook: the recorder's group, and the recorder's mode.
        let record_group = &self.cfg.recording.group;
        if crate::accounts::lookup_group(record_group)?.is_none() {
            step(InitMade::Group(record_group.clone()), &mut made)?;
        }
        crate::recording::host::ensure(&self.cfg)?;
        // [profiles] hook: each gated profile's own group (its
        // sshd Match).
        for p in self.cfg.profiles.gated() {
            if let Some(g) = p.own_group() {
                if crate::accounts::lookup_group(&g)?.is_none() {
                    step(InitMade::Group(g.clone()), &mut made)?;
                }
                crate::accounts::ensure_group(&g)?;
            }
        }
        // Before any uid is handed out: uids whose earlier holders left
        // something that no state remembers are held back.
        let quarantined = self.rescan_range(now)?;
        self.log(AuditEvent::Init {
            fingerprint: public.fingerprint().to_string(),
            created,
            gid,
            killer_uid,
        });
        Ok(InitReport {
            server_public_key: pub_path.display().to_string(),
            fingerprint: public.fingerprint().to_string(),
            created,
            group: self.cfg.accounts.group.clone(),
            gid,
            killer_user: self.cfg.accounts.killer_user.clone(),
            killer_uid,
            quarantined,
            made,
        })
    }

    /// Issues a puzzle for `client` at `now` and records the pending user;
    /// with `renew`, a further token for that live user (same account,
    /// same agent key) so the agent can open another connection. A grant
    /// of the `shell` profile.
    pub fn issue(
        &self,
        client: &PublicKey,
        ttl: Option<Duration>,
        channel: Channel,
        renew: Option<&UserName>,
        now: UnixTime,
    ) -> Result<Issued> {
        self.issue_profile(client, ttl, channel, renew, &ProfileName::shell(), now)
    }

    /// [`Helper::issue`] for a grant of `profile` (configured in
    /// `[profiles]`): the puzzle signs the profile, the entry keeps what
    /// the profile gives the account (groups, sudo rules, a container) as
    /// it is now, and the account's login shell is the recorder (the gate)
    /// for a profile that runs no shell. A renewal keeps the user's
    /// profile and refuses another.
    pub fn issue_profile(
        &self,
        client: &PublicKey,
        ttl: Option<Duration>,
        channel: Channel,
        renew: Option<&UserName>,
        profile: &ProfileName,
        now: UnixTime,
    ) -> Result<Issued> {
        client.require_bits(MIN_AGENT_BITS, "agent")?;
        let grant = self.cfg.profile(profile).ok_or_else(|| {
            HelperError::Refused(format!(
                "no profile {profile} in [profiles] of the configuration"
            ))
        })?;
        let server = PrivateKey::load(&self.cfg.server_key)
            .map_err(|e| HelperError::Config(format!("{e} (run `codext-helper init` first)")))?;
        let gid = self
            .accounts
            .lookup_group(&self.cfg.accounts.group)?
            .ok_or_else(|| {
                HelperError::Config(format!(
                    "group {} does not exist: run `codext-helper init` first",
                    self.cfg.accounts.group
                ))
            })?;
        let host_keys = hostkeys::fingerprints(&self.cfg.host_key_dir, &self.cfg.host_keys)?;
        let expires_at = now.plus(
            ttl.unwrap_or(self.cfg.ttl.puzzle)
                .max(Duration::from_secs(1)),
        );
        let puzzle_id = codext_core::random::bytes::<16>()?;
        let fingerprint = client.fingerprint().to_string();

        let mut locked = self.store.lock()?;
        let (user, uid) = match renew {
            Some(user) => {
                let entry = locked
                    .state
                    .users
                    .get(user.as_str())
                    .filter(|e| e.permit(Request::Renew).is_ok() && e.account_created())
                    .ok_or_else(|| {
                        HelperError::Refused(format!("{user} is not logged in: nothing to renew"))
                    })?;
                if entry.client_fingerprint != fingerprint {
                    return Err(HelperError::Refused(format!(
                        "{user} belongs to another agent key"
                    )));
                }
                if entry.profile != *profile {
                    return Err(HelperError::Refused(format!(
                        "{user} is a grant of the profile {}, not {profile}",
                        entry.profile
                    )));
                }
                (user.clone(), entry.uid)
            }
            None => {
                let known = self.accounts.known();
                (
                    self.fresh_name(&locked, known.as_ref())?,
                    self.allocate_uid(&mut locked, known.as_ref())?,
                )
            }
        };
        let content = PuzzleContent {
            puzzle_id,
            issued_at: now.0,
            expires_at: expires_at.0,
            user: user.clone(),
            server_id: self.cfg.server_identity(),
            host_keys,
            token: Token::generate()?,
            profile: profile.clone(),
        };
        let puzzle = Puzzle::seal(&content, client, &server)?;
        let slot = TokenSlot {
            puzzle_id,
            login_hash: Some(content.token.login_hash(&user)),
            proof: content.token.proof(&puzzle_id, &user),
            answer_by: expires_at,
            login_by: None,
        };
        drop(content);
        match renew {
            Some(_) => {
                if let Some(entry) = locked.state.users.get_mut(user.as_str()) {
                    entry
                        .renew(slot)
                        .map_err(|e| HelperError::Refused(format!("{user}: {}", e.reason())))?;
                }
            }
            None => {
                let entry = Entry::issued(NewEntry {
                    user: user.clone(),
                    uid,
                    gid,
                    home: self.cfg.accounts.home_base.join(user.as_str()),
                    shell: self.cfg.login_shell_for(grant.gated()),
                    token: slot,
                    client_fingerprint: fingerprint.clone(),
                    channel,
                    issued_at: now,
                    puzzle: (channel != Channel::Manual).then(|| puzzle.to_text()),
                    // Kept for the grant key after the login.
                    client_key: client.to_openssh().ok(),
                    profile: profile.clone(),
                    groups: grant.account_groups(),
                    sudo: grant.sudo.clone(),
                    container: grant.kind() == crate::profiles::Kind::Container,
                });
                locked.state.users.insert(user.to_string(), entry);
            }
        }
        locked.save()?;
        drop(locked);
        self.log(AuditEvent::Issue {
            user: user.to_string(),
            uid,
            puzzle_id: hex(&puzzle_id),
            renewal: renew.is_some(),
            client_fingerprint: fingerprint,
            channel: channel.to_string(),
            expires_at: expires_at.0,
            profile: profile.to_string(),
        });
        Ok(Issued {
            user: user.to_string(),
            uid,
            puzzle: puzzle.to_text(),
            puzzle_id: hex(&puzzle_id),
            expires_at: expires_at.0,
            profile: profile.to_string(),
        })
    }

    fn fresh_name(&self, locked: &Locked, known: &dyn KnownAccounts) -> Result<UserName> {
        for _ in 0..32 {
            let name = UserName::from_random(codext_core::random::bytes::<6>()?);
            if !locked.state.users.contains_key(name.as_str()) && !known.name_taken(name.as_str()) {
                return Ok(name);
            }
        }
        Err(HelperError::System(
            "could not find a free user name".into(),
        ))
    }

    /// A free uid for a new user (see [`super::uids::choose`]); moves the
    /// never-used cursor when it hands out a never-used uid.
    fn allocate_uid(&self, locked: &mut Locked, known: &dyn KnownAccounts) -> Result<u32> {
        let range = super::uids::UidRange::of(&self.cfg);
        let state = &locked.state;
        let in_use: std::collections::BTreeSet<u32> = state.users.values().map(|e| e.uid).collect();
        let pool = super::uids::Pool {
            in_use: &in_use,
            quarantined: &state.quarantine.keys().copied().collect(),
            freed: &state.freed,
            cursor: state.next_uid,
        };
        match range.choose(&pool, |uid| known.uid_taken(uid)) {
            Some((uid, never_used)) => {
                if never_used {
                    locked.state.next_uid = Some(range.after(uid));
                }
                Ok(uid)
            }
            None if !locked.state.quarantine.is_empty() => Err(HelperError::Refused(format!(
                "no free uid in {range}: {} are quarantined because their last holders left files behind; \
                 inspect them with `codext-helper quarantine list`, clean up, then `codext-helper quarantine release UID`",
                locked.state.quarantine.len()
            ))),
            None => Err(HelperError::NoUid),
        }
    }

    /// Puzzles a channel has yet to publish: (user, puzzle id, text).
    pub fn unpublished(&self, channel: Channel) -> Result<Vec<(String, [u8; 16], String)>> {
        let locked = self.store.lock()?;
        Ok(locked
            .state
            .users
            .values()
            .filter(|e| e.channel == channel && e.permit(Request::Publish).is_ok() && !e.published)
            .filter_map(|e| Some((e.user.to_string(), e.token.puzzle_id, e.puzzle.clone()?)))
            .collect())
    }

    /// Marks `user`'s puzzle as published (its text is no longer kept).
    pub fn mark_published(&self, user: &str) -> Result<()> {
        let mut locked = self.store.lock()?;
        let Some(e) = locked.state.users.get_mut(user) else {
            return Ok(());
        };
        // Only a pending puzzle is published; anything later is left be.
        if e.mark_published().is_err() {
            return Ok(());
        }
        let event = AuditEvent::Publish {
            user: e.user.to_string(),
            channel: e.channel.to_string(),
            puzzle_id: hex(&e.token.puzzle_id),
        };
        locked.save()?;
        drop(locked);
        self.log(event);
        Ok(())
    }
}
