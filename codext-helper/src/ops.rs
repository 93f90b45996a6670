//! What the helper does, shared by the CLI verbs and the daemon: issue a
//! puzzle, accept an answer (arm), verify a password (and create the
//! account), track sessions, revoke, expire, and remove accounts.
//!
//! Every state change happens under the state lock ([`crate::store`]);
//! account creation and removal happen under the account lock, which is
//! never taken while the state lock is held (lock order: accounts, then
//! state), so the daemon and the verbs cannot deadlock or race.

use crate::accounts;
use crate::accounts::sweep::Sweep;
use crate::audit::{Audit, Stranger};
use crate::config::Config;
use crate::error::{HelperError, Result};
use crate::ids::Uid;
use crate::store::{Entry, Locked, Phase, Quarantine, RemovalProgress, Renewal, Session, Store};
use crate::userdb;
use codext_core::encoding::{hex, hex_decode};
use codext_core::keys::{PrivateKey, PublicKey, MIN_AGENT_BITS, SERVER_BITS};
use codext_core::{hostkeys, time, Answer, Puzzle, PuzzleContent, Token};
use codext_wire::{Secret, UserName};
use serde_json::json;
use std::os::unix::fs::DirBuilderExt;
use std::time::Duration;

/// How long an account may exist with no session before it is removed
/// (sshd opens the session right after authentication; a client that
/// vanished in between leaves an account nobody will close).
pub const LOGIN_GRACE_SECS: u64 = 60;

/// The helper: configuration, state and audit trail.
#[derive(Debug, Clone)]
pub struct Helper {
    /// The configuration in force.
    pub cfg: Config,
    /// The shared state.
    pub store: Store,
    /// The audit trail.
    pub audit: Audit,
}

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
}

/// The helper's verdict on a PAM request.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Granted.
    Ok(&'static str),
    /// Refused.
    Denied(&'static str),
    /// The password was right and the token is consumed: the account must
    /// now be created ([`Helper::finish_login`]) by the account worker.
    CreateAccount(Box<Entry>),
}

/// Work for the account worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Remove this user's account (it is in [`Phase::Removing`]).
    Remove(String),
}

impl Helper {
    /// Opens the state folder named by `cfg`.
    pub fn new(cfg: Config) -> Result<Helper> {
        let store = Store::open(&cfg.state_dir)?;
        let audit = Audit::new(&cfg.audit_log, &cfg.state_dir, &cfg.audit);
        // Recover the trail's end after a crash before anything is added.
        if let Err(e) = audit.check() {
            crate::log::error!("{e}");
        }
        Ok(Helper { cfg, store, audit })
    }

    /// Appends an event to the audit trail (a failure is reported, not
    /// fatal: the action it records has happened).
    pub(crate) fn log(&self, event: &str, fields: serde_json::Value) {
        if let Err(e) = self.audit.record(event, fields) {
            crate::log::error!("{e}");
        }
    }

    /// Counts an attempt by a stranger in the audit trail's summaries
    /// instead of writing a line for it (strangers must not grow the trail
    /// or the system log without bound).
    pub(crate) fn log_stranger(&self, what: Stranger, user: &str, source: &str) {
        if let Err(e) = self.audit.stranger(what, user, source) {
            crate::log::error!("{e}");
        }
    }

    /// Creates the server key (if missing), the group and the state folder.
    pub fn init(&self) -> Result<InitReport> {
        let key_path = &self.cfg.server_key;
        let pub_path = self.cfg.server_public_key();
        let mut created = false;
        if let Some(dir) = key_path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| HelperError::system(format!("cannot create {}", dir.display()), e))?;
        }
        let public = if key_path.exists() {
            let key = PrivateKey::load(key_path)?;
            let public = key.public(&format!("codext-server@{}", self.cfg.server_identity()))?;
            public.require_bits(SERVER_BITS, "server")?;
            if !pub_path.exists() {
                codext_core::keys::write_new_file(
                    &pub_path,
                    format!("{}\n", public.to_openssh()?).as_bytes(),
                    0o644,
                )?;
            }
            public
        } else {
            let key = PrivateKey::generate(SERVER_BITS)?;
            key.save(key_path)?;
            let public = key.public(&format!("codext-server@{}", self.cfg.server_identity()))?;
            let _ = std::fs::remove_file(&pub_path);
            codext_core::keys::write_new_file(
                &pub_path,
                format!("{}\n", public.to_openssh()?).as_bytes(),
                0o644,
            )?;
            created = true;
            public
        };
        let gid = accounts::ensure_group(&self.cfg.accounts.group)?.as_raw();
        let a = &self.cfg.accounts;
        let killer_uid = accounts::ensure_killer(&a.killer_user, (a.uid_min, a.uid_max))?
            .0
            .as_raw();
        // [channel] hook: the DigitalOcean channel process's own user.
        crate::channel_requests::ensure_channel_user(&self.cfg)?;
        self.log("init", json!({"fingerprint": public.fingerprint().to_string(), "created": created, "gid": gid, "killer_uid": killer_uid}));
        Ok(InitReport {
            server_public_key: pub_path.display().to_string(),
            fingerprint: public.fingerprint().to_string(),
            created,
            group: self.cfg.accounts.group.clone(),
            gid,
            killer_user: self.cfg.accounts.killer_user.clone(),
            killer_uid,
        })
    }

    /// Issues a puzzle for `client` and records the pending user; with
    /// `renew`, a further token for that live user (same account, same
    /// agent key) so the agent can open another connection.
    pub fn issue(
        &self,
        client: &PublicKey,
        ttl: Option<Duration>,
        channel: &str,
        renew: Option<&UserName>,
    ) -> Result<Issued> {
        client.require_bits(MIN_AGENT_BITS, "agent")?;
        let server = PrivateKey::load(&self.cfg.server_key)
            .map_err(|e| HelperError::Config(format!("{e} (run `codext-helper init` first)")))?;
        let gid = accounts::lookup_group(&self.cfg.accounts.group)?
            .ok_or_else(|| {
                HelperError::Config(format!(
                    "group {} does not exist: run `codext-helper init` first",
                    self.cfg.accounts.group
                ))
            })?
            .as_raw();
        let host_keys = hostkeys::fingerprints(&self.cfg.host_key_dir, &self.cfg.host_keys)?;
        let now = time::now();
        let expires_at = now + ttl.unwrap_or(self.cfg.ttl.puzzle).as_secs().max(1);
        let puzzle_id = codext_core::random::bytes::<16>()?;

        let mut locked = self.store.lock()?;
        let (user, uid) = match renew {
            Some(user) => {
                let entry = locked
                    .state
                    .users
                    .get(user.as_str())
                    .filter(|e| e.phase == Phase::Active && e.account_created)
                    .ok_or_else(|| {
                        HelperError::Refused(format!("{user} is not logged in: nothing to renew"))
                    })?;
                if entry.client_fingerprint != client.fingerprint().to_string() {
                    return Err(HelperError::Refused(format!(
                        "{user} belongs to another agent key"
                    )));
                }
                (user.clone(), entry.uid)
            }
            None => {
                let known = accounts::Known::snapshot();
                (
                    self.fresh_name(&locked, &known)?,
                    self.allocate_uid(&mut locked, &known)?,
                )
            }
        };
        let content = PuzzleContent {
            puzzle_id,
            issued_at: now,
            expires_at,
            user: user.clone(),
            server_id: self.cfg.server_identity(),
            host_keys,
            token: Token::generate()?,
        };
        let puzzle = Puzzle::seal(&content, client, &server)?;
        let login_hash = hex(&content.token.login_hash(&user));
        let proof = hex(&content.token.proof(&puzzle_id, &user));
        drop(content);
        match locked
            .state
            .users
            .get_mut(user.as_str())
            .filter(|_| renew.is_some())
        {
            Some(entry) => {
                entry.renewal = Some(Renewal {
                    puzzle_id: hex(&puzzle_id),
                    login_hash,
                    proof,
                    answer_by: expires_at,
                    login_by: None,
                });
            }
            None => {
                let entry = Entry {
                    user: user.to_string(),
                    uid,
                    gid,
                    home: self.cfg.accounts.home_base.join(user.as_str()),
                    shell: self.cfg.accounts.shell.clone(),
                    phase: Phase::Pending,
                    puzzle_id: hex(&puzzle_id),
                    login_hash,
                    proof,
                    client_fingerprint: client.fingerprint().to_string(),
                    channel: channel.to_owned(),
                    issued_at: now,
                    answer_by: expires_at,
                    login_by: None,
                    created_at: None,
                    grant_until: None,
                    attempts: 0,
                    sessions: Vec::new(),
                    account_created: false,
                    renewal: None,
                    removal: None,
                    puzzle: (channel != "manual").then(|| puzzle.to_text()),
                    published: false,
                    // issue 15: kept for the grant key after the login.
                    client_key: client.to_openssh().ok(),
                    linger: None,
                };
                locked.state.users.insert(entry.user.clone(), entry);
            }
        }
        locked.save()?;
        drop(locked);
        self.log(
            "issue",
            json!({"user": user.as_str(), "uid": uid, "puzzle_id": hex(&puzzle_id), "renewal": renew.is_some(),
                   "client_fingerprint": client.fingerprint().to_string(), "channel": channel,
                   "expires_at": expires_at}),
        );
        Ok(Issued {
            user: user.to_string(),
            uid,
            puzzle: puzzle.to_text(),
            puzzle_id: hex(&puzzle_id),
            expires_at,
        })
    }

    fn fresh_name(&self, locked: &Locked, known: &accounts::Known) -> Result<UserName> {
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

    /// Next free uid after the cursor: not in the state, unknown to NSS
    /// and to `/etc/passwd`. The cursor only moves forward (wrapping), so a
    /// uid is handed out again only after the whole range has been used.
    fn allocate_uid(&self, locked: &mut Locked, known: &accounts::Known) -> Result<u32> {
        let (min, max) = (self.cfg.accounts.uid_min, self.cfg.accounts.uid_max);
        let span = max - min + 1;
        let start = locked
            .state
            .next_uid
            .filter(|u| (min..=max).contains(u))
            .unwrap_or(min);
        for i in 0..span {
            let uid = min + (start - min + i) % span;
            let in_state = locked.state.users.values().any(|e| e.uid == uid)
                || locked.state.quarantine.contains_key(&uid);
            if !in_state && !known.uid_taken(Uid::from_raw(uid)) {
                locked.state.next_uid = Some(if uid == max { min } else { uid + 1 });
                return Ok(uid);
            }
        }
        if !locked.state.quarantine.is_empty() {
            return Err(HelperError::Refused(format!(
                "no free uid in {min}..={max}: {} are quarantined because their last holders left files behind; \
                 inspect them with `codext-helper quarantine list`, clean up, then `codext-helper quarantine release UID`",
                locked.state.quarantine.len()
            )));
        }
        Err(HelperError::NoUid)
    }

    /// Checks an answer and arms its user: the userdb record appears.
    pub fn answer(&self, text: &str, source: &str) -> Result<Entry> {
        let answer = Answer::parse(text)?;
        let mut locked = self.store.lock()?;
        let now = time::now();
        let user = answer.user.to_string();
        let Some(entry) = locked.state.users.get_mut(&user) else {
            drop(locked);
            // An operator's typo is worth a line; a channel is open to
            // strangers, whose answers are counted.
            if source == "cli" {
                self.log(
                    "answer",
                    json!({"user": user, "result": "unknown user", "source": source}),
                );
            } else {
                self.log_stranger(Stranger::UnknownUser, &user, source);
            }
            return Err(HelperError::UnknownUser(user));
        };
        if entry.phase == Phase::Active && entry.renewal.is_some() {
            return self.answer_renewal(locked, answer, source, now);
        }
        if entry.phase != Phase::Pending {
            let phase = entry.phase;
            drop(locked);
            self.log(
                "answer",
                json!({"user": user, "result": "not pending", "source": source}),
            );
            return Err(HelperError::Refused(
                format!("{user} is {phase:?}, not waiting for an answer").to_lowercase(),
            ));
        }
        if now > entry.answer_by {
            locked.state.users.remove(&user);
            locked.save()?;
            drop(locked);
            self.log("expire", json!({"user": user, "phase": "pending"}));
            return Err(HelperError::Refused(format!(
                "the puzzle for {user} expired"
            )));
        }
        let expected: Option<[u8; 16]> = hex_decode(&entry.proof).and_then(|b| b.try_into().ok());
        let ok = expected
            .map(|e| codext_core::token::proof_matches(&e, &answer.proof))
            .unwrap_or(false);
        if !ok {
            // A wrong proof changes nothing: the proof is 128 bits and
            // cannot be guessed, and counting it would let anyone who can
            // write to the channel burn other agents' puzzles.
            drop(locked);
            self.log(
                "answer",
                json!({"user": user, "result": "wrong proof", "source": source}),
            );
            return Err(HelperError::Refused(format!("wrong proof for {user}")));
        }
        entry.phase = Phase::Armed;
        entry.login_by = Some(now + self.cfg.ttl.armed.as_secs());
        let armed = entry.clone();
        userdb::announce(&self.cfg.userdb_dir, &armed)?;
        locked.save()?;
        drop(locked);
        self.log(
            "answer",
            json!({"user": user, "result": "armed", "uid": armed.uid, "source": source}),
        );
        Ok(armed)
    }

    fn answer_renewal(
        &self,
        mut locked: Locked,
        answer: Answer,
        source: &str,
        now: u64,
    ) -> Result<Entry> {
        let user = answer.user.to_string();
        let armed_for = self.cfg.ttl.armed.as_secs();
        let Some(entry) = locked.state.users.get_mut(&user) else {
            return Err(HelperError::UnknownUser(user));
        };
        let Some(renewal) = entry.renewal.as_mut() else {
            return Err(HelperError::UnknownUser(user));
        };
        if renewal.login_by.is_some() {
            return Err(HelperError::Refused(format!(
                "the renewal for {user} is already armed"
            )));
        }
        if now > renewal.answer_by {
            entry.renewal = None;
            locked.save()?;
            return Err(HelperError::Refused(format!(
                "the renewal puzzle for {user} expired"
            )));
        }
        let expected: Option<[u8; 16]> = hex_decode(&renewal.proof).and_then(|b| b.try_into().ok());
        if !expected.is_some_and(|e| codext_core::token::proof_matches(&e, &answer.proof)) {
            drop(locked);
            self.log(
                "answer",
                json!({"user": user, "result": "wrong proof", "renewal": true, "source": source}),
            );
            return Err(HelperError::Refused(format!("wrong proof for {user}")));
        }
        renewal.login_by = Some(now + armed_for);
        let snapshot = entry.clone();
        locked.save()?;
        drop(locked);
        self.log(
            "answer",
            json!({"user": user, "result": "armed", "renewal": true, "source": source}),
        );
        Ok(snapshot)
    }

    /// A snapshot of every entry.
    pub fn status(&self) -> Result<Vec<Entry>> {
        Ok(self.store.lock()?.state.users.values().cloned().collect())
    }

    /// Revokes `user`: a pending or armed user is forgotten (its record
    /// withdrawn); a logged-in user's sessions are ended and its account
    /// removed.
    pub fn revoke(&self, user: &UserName, reason: &str) -> Result<()> {
        let mut locked = self.store.lock()?;
        let Some(entry) = locked.state.users.get_mut(user.as_str()) else {
            return Err(HelperError::UnknownUser(user.to_string()));
        };
        match entry.phase {
            Phase::Pending | Phase::Armed => {
                let (name, uid) = (entry.user.clone(), entry.uid);
                userdb::withdraw(&self.cfg.userdb_dir, &name, uid)?;
                locked.state.users.remove(&name);
                locked.save()?;
                drop(locked);
                self.log("revoke", json!({"user": name, "reason": reason}));
                Ok(())
            }
            Phase::Creating | Phase::Active | Phase::Removing => {
                entry.phase = Phase::Removing;
                // issue 15: a revoke never lingers.
                entry.linger = None;
                locked.save()?;
                drop(locked);
                self.log("revoke", json!({"user": user.as_str(), "reason": reason}));
                self.remove_account(user.as_str())
            }
        }
    }

    /// PAM authentication: check the password; on success withdraw the
    /// record and consume the token, and ask for the account to be created.
    pub fn authenticate(
        &self,
        user: &UserName,
        password: &Secret,
        source: &str,
    ) -> Result<Verdict> {
        let now = time::now();
        let mut locked = self.store.lock()?;
        let name = user.to_string();
        let Some(entry) = locked.state.users.get_mut(&name) else {
            drop(locked);
            self.log_stranger(Stranger::UnknownUser, &name, source);
            return Ok(Verdict::Denied("unknown user"));
        };
        if entry.phase == Phase::Active
            && entry.renewal.as_ref().is_some_and(|r| r.login_by.is_some())
        {
            return self.authenticate_renewal(locked, user, password, source, now);
        }
        if entry.phase != Phase::Armed {
            let reason = if entry.phase == Phase::Pending {
                "not armed"
            } else {
                "token already used"
            };
            drop(locked);
            self.log(
                "verify",
                json!({"user": name, "result": reason, "source": source}),
            );
            return Ok(Verdict::Denied(reason));
        }
        if entry.login_by.is_some_and(|t| now > t) {
            let uid = entry.uid;
            userdb::withdraw(&self.cfg.userdb_dir, &name, uid)?;
            locked.state.users.remove(&name);
            locked.save()?;
            drop(locked);
            self.log("expire", json!({"user": name, "phase": "armed"}));
            return Ok(Verdict::Denied("expired"));
        }
        let expected: Option<[u8; 32]> =
            hex_decode(&entry.login_hash).and_then(|b| b.try_into().ok());
        let ok = expected
            .is_some_and(|e| codext_core::token::password_matches(&e, user, password.expose()));
        if !ok {
            entry.attempts += 1;
            let attempts = entry.attempts;
            let uid = entry.uid;
            let revoked = attempts >= self.cfg.limits.max_attempts;
            if revoked {
                userdb::withdraw(&self.cfg.userdb_dir, &name, uid)?;
                locked.state.users.remove(&name);
            }
            locked.save()?;
            drop(locked);
            self.log("verify", json!({"user": name, "result": "wrong password", "attempts": attempts, "source": source}));
            if revoked {
                self.log(
                    "revoke",
                    json!({"user": name, "reason": "too many wrong passwords"}),
                );
            }
            return Ok(Verdict::Denied("wrong password"));
        }
        // Consume the token before anything else: a second use fails even
        // if account creation is slow or fails.
        userdb::withdraw(&self.cfg.userdb_dir, &name, entry.uid)?;
        entry.login_hash.clear();
        entry.phase = Phase::Creating;
        entry.created_at = Some(now);
        entry.grant_until = Some(now + self.cfg.ttl.grant.as_secs());
        let snapshot = entry.clone();
        locked.save()?;
        drop(locked);
        self.log(
            "verify",
            json!({"user": name, "result": "ok", "source": source}),
        );
        Ok(Verdict::CreateAccount(Box::new(snapshot)))
    }

    fn authenticate_renewal(
        &self,
        mut locked: Locked,
        user: &UserName,
        password: &Secret,
        source: &str,
        now: u64,
    ) -> Result<Verdict> {
        let name = user.to_string();
        let max = self.cfg.limits.max_attempts;
        let Some(entry) = locked.state.users.get_mut(&name) else {
            return Ok(Verdict::Denied("unknown user"));
        };
        let Some(renewal) = entry.renewal.as_ref() else {
            return Ok(Verdict::Denied("token already used"));
        };
        if renewal.login_by.is_some_and(|t| now > t) {
            entry.renewal = None;
            locked.save()?;
            drop(locked);
            self.log("expire", json!({"user": name, "phase": "renewal"}));
            return Ok(Verdict::Denied("expired"));
        }
        let expected: Option<[u8; 32]> =
            hex_decode(&renewal.login_hash).and_then(|b| b.try_into().ok());
        if !expected
            .is_some_and(|e| codext_core::token::password_matches(&e, user, password.expose()))
        {
            entry.attempts += 1;
            let attempts = entry.attempts;
            if attempts >= max {
                entry.renewal = None;
            }
            locked.save()?;
            drop(locked);
            self.log("verify", json!({"user": name, "result": "wrong password", "renewal": true, "attempts": attempts, "source": source}));
            return Ok(Verdict::Denied("wrong password"));
        }
        entry.renewal = None;
        locked.save()?;
        drop(locked);
        self.log(
            "verify",
            json!({"user": name, "result": "ok", "renewal": true, "source": source}),
        );
        Ok(Verdict::Ok("further session allowed"))
    }

    /// Second half of a successful login: creates the account announced by
    /// `entry` (the token is already consumed). On failure the user is
    /// forgotten and the login denied.
    pub fn finish_login(&self, entry: &Entry) -> Result<Verdict> {
        let made = self.create_accounts(std::slice::from_ref(entry)).pop();
        self.finish_creation(
            entry,
            made.unwrap_or_else(|| Err(HelperError::System("no result".into()))),
        )
    }

    /// What follows `useradd` for one login (its result in `made`): the
    /// check that the account is the announced one and the audit line; on
    /// failure the user is forgotten, or its half-made account handed to
    /// the reaper.
    pub fn finish_creation(&self, entry: &Entry, made: Result<()>) -> Result<Verdict> {
        match made
            .and_then(|()| accounts::verify_created(entry))
            .map(|()| {
                self.log(
                "create",
                json!({"user": entry.user, "uid": entry.uid, "gid": entry.gid, "home": entry.home}),
            );
            }) {
            Ok(()) => {
                // issue 15: the agent key may now reconnect within the grant.
                self.authorize_grant_key(entry);
                Ok(Verdict::Ok("account created"))
            }
            Err(e) => {
                crate::log::error!("{e}");
                self.log(
                    "create",
                    json!({"user": entry.user, "result": "failed", "error": e.to_string()}),
                );
                let mut locked = self.store.lock()?;
                // If useradd did create it (and something after failed),
                // it is ours to remove: the reaper's next pass does that.
                // A revoke that came first already handed it to the
                // remover. Otherwise there is nothing to clean up.
                match locked.state.users.get_mut(&entry.user) {
                    Some(e) if accounts::is_ours_on_disk(entry) => {
                        e.account_created = true;
                        e.phase = Phase::Removing;
                    }
                    Some(e) if e.phase == Phase::Removing => {}
                    _ => {
                        locked.state.users.remove(&entry.user);
                    }
                }
                locked.save()?;
                Err(e)
            }
        }
    }

    /// Runs `useradd` for each of `entries` (logins whose token was just
    /// consumed), under one hold of the account lock and two of the state
    /// lock for the whole batch: a burst of logins costs one `useradd`
    /// each and little else. Only what must be exclusive happens here —
    /// the phase re-check (a revoke that came first moved the user on, and
    /// no account may be made for it now), `useradd`, and the record of its
    /// success (a remover waiting for the lock then sees the account).
    pub fn create_accounts(&self, entries: &[Entry]) -> Vec<Result<()>> {
        let fail = |e: &HelperError| HelperError::System(e.to_string());
        let _accounts = match self.store.lock_accounts() {
            Ok(l) => l,
            Err(e) => return entries.iter().map(|_| Err(fail(&e))).collect(),
        };
        let phases: Vec<Option<Phase>> = match self.store.lock() {
            Ok(locked) => entries
                .iter()
                .map(|e| locked.state.users.get(&e.user).map(|x| x.phase))
                .collect(),
            Err(e) => return entries.iter().map(|_| Err(fail(&e))).collect(),
        };
        let mut results: Vec<Result<()>> = entries
            .iter()
            .zip(phases)
            .map(|(entry, phase)| {
                if phase != Some(Phase::Creating) {
                    return Err(HelperError::Refused(format!(
                        "{} was revoked before its account was made",
                        entry.user
                    )));
                }
                accounts::create(entry, self.cfg.limits.tool_timeout)
            })
            .collect();
        let saved = self.store.lock().and_then(|mut locked| {
            for (entry, _) in entries.iter().zip(&results).filter(|(_, r)| r.is_ok()) {
                if let Some(e) = locked.state.users.get_mut(&entry.user) {
                    e.account_created = true;
                    if e.phase == Phase::Creating {
                        e.phase = Phase::Active;
                    }
                }
            }
            locked.save()
        });
        if let Err(e) = saved {
            // The accounts exist but the state does not say so: reported
            // as failures, whose handling marks them for removal.
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(fail(&e));
            }
        }
        results
    }

    /// PAM account management: only an account codext created and whose
    /// grant runs is valid.
    pub fn account(&self, user: &UserName) -> Result<Verdict> {
        let locked = self.store.lock()?;
        Ok(match locked.state.users.get(user.as_str()) {
            Some(e) if e.phase == Phase::Active && e.account_created => {
                if e.grant_until.is_some_and(|t| time::now() > t) {
                    Verdict::Denied("grant expired")
                } else {
                    Verdict::Ok("account valid")
                }
            }
            _ => Verdict::Denied("not a live codext account"),
        })
    }

    /// A session opens in sshd process `pid`.
    pub fn open_session(&self, user: &UserName, pid: u32, source: &str) -> Result<Verdict> {
        let mut locked = self.store.lock()?;
        let Some(entry) = locked.state.users.get_mut(user.as_str()) else {
            return Ok(Verdict::Denied("not a live codext account"));
        };
        if entry.phase != Phase::Active || !entry.account_created {
            return Ok(Verdict::Denied("not a live codext account"));
        }
        let start_time = process_start_time(pid).unwrap_or(0);
        // issue 15: a session ends any linger.
        entry.linger = None;
        entry.sessions.retain(|s| s.pid != pid);
        entry.sessions.push(Session {
            pid,
            start_time,
            opened_at: time::now(),
        });
        let count = entry.sessions.len();
        locked.save()?;
        drop(locked);
        self.log(
            "session_open",
            json!({"user": user.as_str(), "pid": pid, "sessions": count, "source": source}),
        );
        Ok(Verdict::Ok("session opened"))
    }

    /// The session of `pid` closes (`event` is `session_close`, or
    /// `session_lost` when its sshd process died without closing it).
    /// Returns the removal to schedule when it was the last one.
    pub fn close_session(&self, user: &UserName, pid: u32, event: &str) -> Result<Option<Removal>> {
        let mut locked = self.store.lock()?;
        let Some(entry) = locked.state.users.get_mut(user.as_str()) else {
            return Ok(None);
        };
        let before = entry.sessions.len();
        entry.sessions.retain(|s| s.pid != pid);
        if entry.sessions.len() == before {
            return Ok(None);
        }
        let left = entry.sessions.len();
        let removal = if left == 0 && entry.phase == Phase::Active {
            entry.phase = Phase::Removing;
            // issue 15: this removal may become a linger (grant_keys).
            entry.linger = Some(crate::grant_keys::Linger {
                at_last_close: true,
                until: None,
            });
            Some(Removal::Remove(entry.user.clone()))
        } else {
            None
        };
        locked.save()?;
        drop(locked);
        self.log(
            event,
            json!({"user": user.as_str(), "pid": pid, "sessions": left}),
        );
        Ok(removal)
    }

    /// Removes the account of a user in [`Phase::Removing`] and forgets it.
    /// Idempotent: a user already gone is fine. An attempt that does not
    /// finish is recorded in the entry (`status` shows it) and retried by
    /// the reaper.
    pub fn remove_account(&self, user: &str) -> Result<()> {
        let _removals = self.store.lock_removals()?;
        let entry = {
            // Taking the account lock waits out a `useradd` in flight, so
            // the entry says for certain whether an account exists.
            let _accounts = self.store.lock_accounts()?;
            let mut locked = self.store.lock()?;
            let Some(e) = locked.state.users.get_mut(user) else {
                return Ok(());
            };
            if e.phase != Phase::Removing {
                return Ok(());
            }
            if !e.account_created && accounts::is_ours_on_disk(e) {
                e.account_created = true;
            }
            let progress = e.removal.get_or_insert_with(|| RemovalProgress {
                started_at: time::now(),
                ..RemovalProgress::default()
            });
            progress.attempts += 1;
            let snapshot = e.clone();
            locked.save()?;
            snapshot
        };
        // issue 15: at the last session's close the grant may linger.
        if self.linger_instead(&entry)? {
            return Ok(());
        }
        let removed = match entry.account_created {
            true => self.remove_created(&entry),
            false => Ok((None, Sweep::default())),
        };
        let (repaired, swept) = match removed {
            Ok(r) => r,
            Err(e) => {
                let mut locked = self.store.lock()?;
                if let Some(p) = locked
                    .state
                    .users
                    .get_mut(user)
                    .and_then(|x| x.removal.as_mut())
                {
                    p.last_error = Some(e.to_string());
                }
                locked.save()?;
                drop(locked);
                self.log(
                    "remove",
                    json!({"user": user, "result": "failed", "error": e.to_string()}),
                );
                return Err(e);
            }
        };
        if let Some(what) = repaired {
            self.log("repair", json!({"user": user, "what": what}));
        }
        userdb::withdraw(&self.cfg.userdb_dir, &entry.user, entry.uid)?;
        self.withdraw_grant_key(&entry.user);
        let mut locked = self.store.lock()?;
        locked.state.users.remove(user);
        let clean = swept.is_clean();
        if !clean {
            // Files of the uid remain: it is not handed out again until a
            // later sweep finds nothing or the operator releases it.
            locked.state.quarantine.insert(
                entry.uid,
                Quarantine {
                    user: entry.user.clone(),
                    home: entry.home.clone(),
                    since: time::now(),
                    leftovers: swept.leftovers,
                    named: swept.named.clone(),
                },
            );
        }
        locked.save()?;
        drop(locked);
        if clean {
            self.log(
                "remove",
                json!({"user": user, "uid": entry.uid, "result": "ok", "swept": swept.removed}),
            );
        } else {
            self.log(
                "remove",
                json!({"user": user, "uid": entry.uid, "result": "incomplete", "swept": swept.removed, "leftovers": swept.leftovers}),
            );
            self.log(
                "quarantine",
                json!({"uid": entry.uid, "user": user, "leftovers": swept.leftovers, "named": swept.named}),
            );
        }
        Ok(())
    }

    /// The first steps of every removal (and of a linger): checks the
    /// entry is codext's, removes its at jobs and crontab, then kills every
    /// process of the uid and its IPC objects.
    pub(crate) fn stop_everything_of(&self, entry: &Entry) -> Result<()> {
        let a = &self.cfg.accounts;
        accounts::check_ours(entry, (a.uid_min, a.uid_max))?;
        let killer = accounts::killer_ids(&a.killer_user)?;
        accounts::remove_jobs(entry, self.cfg.limits.sweep_time);
        accounts::kill(entry, killer, self.cfg.limits.tool_timeout)
    }

    /// Kills, deletes the record, sweeps (see [`accounts`]); only the
    /// `userdel` step holds the account lock, so logins are never queued
    /// behind a slow kill or sweep.
    fn remove_created(&self, entry: &Entry) -> Result<(Option<String>, Sweep)> {
        let timeout = self.cfg.limits.tool_timeout;
        self.stop_everything_of(entry)?;
        let repaired = {
            let _accounts = self.store.lock_accounts()?;
            accounts::delete_record(entry, timeout)?
        };
        let swept = accounts::sweep_leftovers(
            Uid::from_raw(entry.uid),
            &entry.home,
            self.cfg.limits.sweep_time,
        );
        if swept.unfinished {
            return Err(HelperError::Account(format!(
                "the sweep of uid {}'s files did not finish within {}s ({} removed so far); the reaper continues",
                entry.uid,
                self.cfg.limits.sweep_time.as_secs(),
                swept.removed
            )));
        }
        Ok((repaired, swept))
    }

    /// Looks again at every quarantined uid (reaper pass): one whose files
    /// are all gone now is released.
    pub fn recheck_quarantine(&self) -> Result<()> {
        let held: Vec<(u32, Quarantine)> = self
            .store
            .lock()?
            .state
            .quarantine
            .iter()
            .map(|(u, q)| (*u, q.clone()))
            .collect();
        for (uid, q) in held {
            let swept =
                accounts::sweep_leftovers(Uid::from_raw(uid), &q.home, self.cfg.limits.sweep_time);
            let mut locked = self.store.lock()?;
            if swept.is_clean() {
                locked.state.quarantine.remove(&uid);
                locked.save()?;
                drop(locked);
                self.log(
                    "quarantine_release",
                    json!({"uid": uid, "user": q.user, "by": "sweep", "removed": swept.removed}),
                );
            } else if let Some(held) = locked.state.quarantine.get_mut(&uid) {
                held.leftovers = swept.leftovers;
                held.named = swept.named;
                locked.save()?;
            }
        }
        Ok(())
    }

    /// The quarantined uids.
    pub fn quarantined(&self) -> Result<std::collections::BTreeMap<u32, Quarantine>> {
        Ok(self.store.lock()?.state.quarantine.clone())
    }

    /// Releases quarantined `uid` by the operator's word (after looking).
    pub fn release_quarantine(&self, uid: u32) -> Result<Quarantine> {
        let mut locked = self.store.lock()?;
        let q = locked
            .state
            .quarantine
            .remove(&uid)
            .ok_or_else(|| HelperError::Refused(format!("uid {uid} is not quarantined")))?;
        locked.save()?;
        drop(locked);
        self.log(
            "quarantine_release",
            json!({"uid": uid, "user": q.user, "by": "operator", "leftovers_at_last_look": q.leftovers}),
        );
        Ok(q)
    }

    /// One pass of the reaper at time `now`: expires puzzles, armed users
    /// and grants, drops sessions whose sshd process is gone, and returns
    /// the removals to run.
    pub fn reap(&self, now: u64) -> Result<Vec<Removal>> {
        if let Err(e) = self.audit.flush_summaries(now) {
            crate::log::error!("{e}");
        }
        let mut locked = self.store.lock()?;
        let mut events = Vec::new();
        let mut removals = Vec::new();
        let mut forget = Vec::new();
        for entry in locked.state.users.values_mut() {
            match entry.phase {
                Phase::Pending if now > entry.answer_by => {
                    forget.push((entry.user.clone(), entry.uid));
                    events.push(("expire", json!({"user": entry.user, "phase": "pending"})));
                }
                Phase::Armed if entry.login_by.is_some_and(|t| now > t) => {
                    forget.push((entry.user.clone(), entry.uid));
                    events.push(("expire", json!({"user": entry.user, "phase": "armed"})));
                }
                Phase::Active if entry.account_created => {
                    if entry
                        .renewal
                        .as_ref()
                        .is_some_and(|r| now > r.login_by.unwrap_or(r.answer_by))
                    {
                        entry.renewal = None;
                        events.push(("expire", json!({"user": entry.user, "phase": "renewal"})));
                    }
                    let before = entry.sessions.len();
                    entry.sessions.retain(session_alive);
                    let dropped = before - entry.sessions.len();
                    if dropped > 0 {
                        events.push(("session_lost", json!({"user": entry.user, "sessions": entry.sessions.len(), "dropped": dropped})));
                    }
                    let idle = entry.sessions.is_empty()
                        && !crate::grant_keys::lingering(entry, now)
                        && (dropped > 0
                            || entry.created_at.is_some_and(|t| now > t + LOGIN_GRACE_SECS)
                            || crate::grant_keys::linger_over(entry, now));
                    let expired = entry.grant_until.is_some_and(|t| now > t);
                    if idle || expired {
                        entry.phase = Phase::Removing;
                        removals.push(Removal::Remove(entry.user.clone()));
                        if expired {
                            events.push(("expire", json!({"user": entry.user, "phase": "active"})));
                        }
                    }
                }
                Phase::Removing => removals.push(Removal::Remove(entry.user.clone())),
                _ => {}
            }
        }
        for (user, uid) in &forget {
            userdb::withdraw(&self.cfg.userdb_dir, user, *uid)?;
            locked.state.users.remove(user);
        }
        locked.save()?;
        drop(locked);
        for (event, fields) in events {
            self.log(event, fields);
        }
        Ok(removals)
    }

    /// Every open session: (user, pid, start time).
    pub fn sessions(&self) -> Result<Vec<(UserName, Session)>> {
        let locked = self.store.lock()?;
        Ok(locked
            .state
            .users
            .values()
            .filter(|e| e.phase == Phase::Active)
            .flat_map(|e| {
                let user = UserName::parse(&e.user).ok();
                e.sessions
                    .iter()
                    .filter_map(move |s| user.clone().map(|u| (u, s.clone())))
            })
            .collect())
    }

    /// Brings state, accounts and userdb records back into agreement after a
    /// crash or a reboot (run when the daemon starts):
    /// * an account codext created with no live session is removed;
    /// * an account whose creation was interrupted is adopted if
    ///   `/etc/passwd` shows it exactly as announced, else forgotten;
    /// * an armed user whose record vanished (empty `/run` after a reboot)
    ///   is announced again;
    /// * a codext userdb record no armed user stands behind is removed;
    /// * removals that were under way are run again.
    pub fn reconcile(&self, now: u64) -> Result<Vec<Removal>> {
        let mut locked = self.store.lock()?;
        let mut removals = Vec::new();
        let mut events = Vec::new();
        let mut forget = Vec::new();
        for entry in locked.state.users.values_mut() {
            match entry.phase {
                Phase::Pending => {}
                Phase::Armed => {
                    let record = self.cfg.userdb_dir.join(format!("{}.user", entry.user));
                    if !record.exists() && entry.login_by.is_some_and(|t| now <= t) {
                        userdb::announce(&self.cfg.userdb_dir, entry)?;
                        events.push((
                            "repair",
                            json!({"user": entry.user, "what": "userdb record announced again"}),
                        ));
                    }
                }
                Phase::Active => {
                    if !entry.account_created {
                        if accounts::is_ours_on_disk(entry) {
                            entry.account_created = true;
                            events.push(("repair", json!({"user": entry.user, "what": "adopted an interrupted creation"})));
                        } else {
                            forget.push(entry.user.clone());
                            events.push(("repair", json!({"user": entry.user, "what": "creation never happened; forgotten"})));
                            continue;
                        }
                    }
                    let before = entry.sessions.len();
                    entry.sessions.retain(session_alive);
                    if entry.sessions.is_empty() && !crate::grant_keys::lingering(entry, now) {
                        entry.phase = Phase::Removing;
                        removals.push(Removal::Remove(entry.user.clone()));
                        events.push((
                            "orphan",
                            json!({"user": entry.user, "uid": entry.uid, "sessions_lost": before}),
                        ));
                    }
                }
                Phase::Creating => {
                    // The helper stopped while `useradd` ran (or was about
                    // to): whatever exists now is removed.
                    entry.account_created = accounts::is_ours_on_disk(entry);
                    entry.phase = Phase::Removing;
                    removals.push(Removal::Remove(entry.user.clone()));
                    events.push((
                        "repair",
                        json!({"user": entry.user, "what": "creation interrupted; removing", "account_created": entry.account_created}),
                    ));
                }
                Phase::Removing => removals.push(Removal::Remove(entry.user.clone())),
            }
        }
        for user in forget {
            locked.state.users.remove(&user);
        }
        let armed: Vec<String> = locked
            .state
            .users
            .values()
            .filter(|e| e.phase == Phase::Armed)
            .map(|e| e.user.clone())
            .collect();
        // issue 15: a grant key only while its account lives.
        let live: Vec<String> = locked
            .state
            .users
            .values()
            .filter(|e| e.phase == Phase::Active && e.account_created)
            .map(|e| e.user.clone())
            .collect();
        self.withdraw_stray_grant_keys(&live);
        for (name, uid) in userdb::orphans(&self.cfg.userdb_dir, |n| armed.iter().any(|a| a == n)) {
            userdb::withdraw(&self.cfg.userdb_dir, &name, uid)?;
            events.push((
                "repair",
                json!({"user": name, "what": "stray userdb record removed"}),
            ));
        }
        locked.save()?;
        drop(locked);
        for (event, fields) in events {
            self.log(event, fields);
        }
        Ok(removals)
    }

    /// Records a PAM request that was refused before reaching the state
    /// (wrong service, rate limit).
    pub fn log_refusal(&self, kind: &str, user: &str, reason: &str, source: &str) {
        self.log(
            "refuse",
            json!({"request": kind, "user": user, "reason": reason, "source": source}),
        );
    }
}

/// Field 22 (starttime) of `/proc/<pid>/stat`.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn session_alive(s: &Session) -> bool {
    process_start_time(s.pid).is_some_and(|t| s.start_time == 0 || t == s.start_time)
}

impl Helper {
    /// Puzzles a channel has yet to publish: (user, puzzle id, text).
    pub fn unpublished(&self, channel: &str) -> Result<Vec<(String, [u8; 16], String)>> {
        let locked = self.store.lock()?;
        Ok(locked
            .state
            .users
            .values()
            .filter(|e| e.channel == channel && e.phase == Phase::Pending && !e.published)
            .filter_map(|e| {
                let id: [u8; 16] = hex_decode(&e.puzzle_id)?.try_into().ok()?;
                Some((e.user.clone(), id, e.puzzle.clone()?))
            })
            .collect())
    }

    /// Marks `user`'s puzzle as published (its text is no longer kept).
    pub fn mark_published(&self, user: &str) -> Result<()> {
        let mut locked = self.store.lock()?;
        if let Some(e) = locked.state.users.get_mut(user) {
            e.published = true;
            e.puzzle = None;
            let fields = json!({"user": e.user, "channel": e.channel, "puzzle_id": e.puzzle_id});
            locked.save()?;
            drop(locked);
            self.log("publish", fields);
        }
        Ok(())
    }
}
