//! The whole lifecycle as a normal user: a temporary state folder, real
//! puzzles (the test-vector keys), and fakes of the account tool and the
//! records, so no root, namespace, `useradd` or `/run` is involved.

use super::host::{AccountTool, KnownAccounts, Records};
use super::session::Closed;
use super::*;
use crate::accounts::sweep::Sweep;
use crate::error::{HelperError, Result};
use codext_core::keys::{PrivateKey, PublicKey};
use codext_core::{OpenedPuzzle, Puzzle};
use codext_wire::{Secret, UserName};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

const T0: UnixTime = UnixTime(1_800_000_000);
const GID: u32 = 59_999;
const SSHD_PID: u32 = 4242;
const SSHD_START: u64 = 77;

/// What the fakes hold: accounts (`/etc/passwd`), records, grant keys,
/// running processes, and every call made.
#[derive(Debug, Default)]
struct Machine {
    passwd: BTreeMap<String, u32>,
    records: BTreeSet<String>,
    keys: BTreeMap<String, String>,
    processes: BTreeMap<u32, u64>,
    fail_create: bool,
    fail_userdel: bool,
    fail_kill: bool,
    keys_left: u64,
    found: BTreeMap<u32, crate::accounts::sweep::Found>,
    linger: u64,
    leftovers: u64,
    calls: Vec<String>,
    /// Containers docker still lists, by user.
    containers: BTreeMap<String, Vec<String>>,
    /// docker fails every call.
    docker_down: bool,
    /// Groups a (killed) userdel left the user in.
    groups_left: Vec<String>,
    /// Sudo drop-ins present, by user.
    sudoers: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Fake(Mutex<Machine>);

impl Fake {
    fn m(&self) -> MutexGuard<'_, Machine> {
        self.0.lock().unwrap()
    }
}

struct Known(BTreeMap<String, u32>);

impl KnownAccounts for Known {
    fn uid_taken(&self, uid: u32) -> bool {
        self.0.values().any(|u| *u == uid)
    }
    fn name_taken(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

impl AccountTool for Fake {
    fn known(&self) -> Box<dyn KnownAccounts> {
        Box::new(Known(self.m().passwd.clone()))
    }
    fn lookup_group(&self, _: &str) -> Result<Option<u32>> {
        Ok(Some(GID))
    }
    fn create(&self, e: &Entry) -> Result<()> {
        let mut m = self.m();
        m.calls.push(format!("useradd {}", e.user));
        if m.fail_create {
            return Err(HelperError::Account("useradd failed".into()));
        }
        // useradd refuses a name NSS reports: the record must be gone.
        assert!(
            !m.records.contains(e.user.as_str()),
            "record still announced"
        );
        m.passwd.insert(e.user.to_string(), e.uid);
        Ok(())
    }
    fn verify_created(&self, a: &Account) -> Result<()> {
        match self.m().passwd.get(a.name.as_str()) {
            Some(uid) if *uid == a.uid.as_raw() => Ok(()),
            _ => Err(HelperError::Account("not as announced".into())),
        }
    }
    fn is_ours_on_disk(&self, a: &Account) -> bool {
        self.m().passwd.get(a.name.as_str()) == Some(&a.uid.as_raw())
    }
    fn stop_everything(&self, a: &Account) -> Result<()> {
        let mut m = self.m();
        m.calls.push(format!("kill {}", a.uid));
        if m.fail_kill {
            return Err(HelperError::Account(format!(
                "uid {} still has processes [4711] and IPC objects [] after 10s",
                a.uid
            )));
        }
        Ok(())
    }
    fn defuse_home(&self, a: &Account) -> Sweep {
        self.m().calls.push(format!("defuse {}", a.uid));
        Sweep::default()
    }
    fn clear_keyrings(&self, uid: u32) -> Result<u64> {
        let mut m = self.m();
        m.calls.push(format!("keyrings {uid}"));
        Ok(m.keys_left)
    }
    fn delete_record(&self, a: &Account) -> Result<Option<String>> {
        let mut m = self.m();
        m.calls.push(format!("userdel {}", a.name));
        if m.fail_userdel {
            return Err(HelperError::Account("userdel failed".into()));
        }
        m.passwd.remove(a.name.as_str());
        Ok(None)
    }
    fn sweep_leftovers(&self, uid: u32, _: &Path) -> Sweep {
        self.m().calls.push(format!("sweep {uid}"));
        let leftovers = self.m().leftovers;
        Sweep {
            leftovers,
            named: (0..leftovers).map(|n| format!("/tmp/left-{n}")).collect(),
            ..Sweep::default()
        }
    }
    fn sweep_shared(&self, uid: u32) -> Sweep {
        self.m().calls.push(format!("sweep-shared {uid}"));
        Sweep::default()
    }
    fn keys_of(&self, _: u32) -> u64 {
        self.m().keys_left
    }
    fn leftovers_in_range(
        &self,
        uids: std::ops::RangeInclusive<u32>,
    ) -> BTreeMap<u32, crate::accounts::sweep::Found> {
        self.m()
            .found
            .iter()
            .filter(|(u, _)| uids.contains(u))
            .map(|(u, f)| (*u, f.clone()))
            .collect()
    }
    fn read_linger(&self, _: &Path, _: u32) -> u64 {
        self.m().linger
    }
    fn process_start_time(&self, pid: u32) -> Option<u64> {
        self.m().processes.get(&pid).copied()
    }
    fn grant_extras(&self, e: &Entry) -> Result<()> {
        let mut m = self.m();
        m.calls.push(format!("extras {}", e.user));
        if !e.sudo.is_empty() {
            m.sudoers.insert(e.user.to_string());
        }
        if e.container {
            m.containers
                .entry(e.user.to_string())
                .or_default()
                .push(format!("codext-{}", e.user));
        }
        Ok(())
    }
    fn remove_sudo(&self, a: &Account) -> Result<()> {
        let mut m = self.m();
        m.calls.push(format!("sudoers {}", a.name));
        m.sudoers.remove(a.name.as_str());
        Ok(())
    }
    fn stop_container(&self, user: &str) -> Result<()> {
        let mut m = self.m();
        m.calls.push(format!("container-stop {user}"));
        if m.docker_down {
            return Err(HelperError::Account("docker: cannot connect".into()));
        }
        m.containers.remove(user);
        Ok(())
    }
    fn containers_left(&self, user: &str) -> Result<Vec<String>> {
        let mut m = self.m();
        m.calls.push(format!("containers-left {user}"));
        if m.docker_down {
            return Err(HelperError::Account("docker: cannot connect".into()));
        }
        Ok(m.containers.get(user).cloned().unwrap_or_default())
    }
    fn leave_groups(&self, a: &Account) -> Result<Vec<String>> {
        let mut m = self.m();
        m.calls.push(format!("groups {}", a.name));
        Ok(std::mem::take(&mut m.groups_left))
    }
    fn remove_strays(&self, live: &[String]) -> Vec<String> {
        let mut m = self.m();
        m.calls.push("strays".into());
        let stray: Vec<String> = m
            .sudoers
            .iter()
            .filter(|u| !live.contains(u))
            .cloned()
            .collect();
        for u in &stray {
            m.sudoers.remove(u);
        }
        stray.iter().map(|u| format!("sudo rules of {u}")).collect()
    }
}

impl Records for Fake {
    fn announce(&self, e: &Entry) -> Result<()> {
        self.m().records.insert(e.user.to_string());
        Ok(())
    }
    fn withdraw(&self, user: &str, _: u32) -> Result<()> {
        self.m().records.remove(user);
        Ok(())
    }
    fn announced(&self, user: &str) -> bool {
        self.m().records.contains(user)
    }
    fn orphans(&self, keep: &[String]) -> Vec<(String, u32)> {
        let m = self.m();
        m.records
            .iter()
            .filter(|r| !keep.contains(r))
            .map(|r| (r.clone(), 0))
            .collect()
    }
    fn write_grant_key(&self, user: &str, line: &str) -> Result<()> {
        self.m().keys.insert(user.into(), line.into());
        Ok(())
    }
    fn remove_grant_key(&self, user: &str) -> std::io::Result<bool> {
        Ok(self.m().keys.remove(user).is_some())
    }
    fn grant_key_users(&self) -> Vec<String> {
        self.m().keys.keys().cloned().collect()
    }
}

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/test-vectors/v1")
}

struct World {
    helper: Helper,
    fake: Arc<Fake>,
    agent: PrivateKey,
    client: PublicKey,
    server: PublicKey,
    dir: PathBuf,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A user issued at `T0` and the opened puzzle (token and answer).
struct Issued {
    user: UserName,
    opened: OpenedPuzzle,
}

impl Issued {
    fn answer(&self) -> String {
        self.opened.answer.to_string()
    }
    fn password(&self) -> Secret {
        Secret::new(self.opened.content.token.password().as_bytes().to_vec())
    }
}

fn world() -> World {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "codext-lifecycle-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = dir.join("server.key");
    std::fs::copy(vectors().join("server.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Two profiles besides shell: a container workspace, and
    // commands with a sudo rule.
    let profiles = "[profiles.ws]\nkind = \"container\"\nimage = \"ws:1\"\n\
                    [profiles.ci]\nkind = \"commands\"\ncommands = [\"make test\"]\n\
                    sudo = [\"/usr/bin/systemctl restart web\"]\n";
    let mut cfg = crate::config::Config::from_toml_str(profiles, Path::new("t.toml")).unwrap();
    cfg.server_key = key;
    cfg.server_id = "test-server".into();
    cfg.host_key_dir = vectors().join("hostkeys");
    cfg.state_dir = dir.join("state");
    cfg.audit_log = dir.join("audit.log");
    cfg.userdb_dir = dir.join("userdb");
    cfg.audit.system_log = false;
    let fake = Arc::new(Fake::default());
    let helper = Helper::with_host(cfg, fake.clone(), fake.clone()).unwrap();
    let agent =
        PrivateKey::from_pkcs8_pem(&std::fs::read_to_string(vectors().join("agent.key")).unwrap())
            .unwrap();
    let client = PublicKey::load(&vectors().join("agent.pub")).unwrap();
    let server = PublicKey::load(&vectors().join("server.pub")).unwrap();
    World {
        helper,
        fake,
        agent,
        client,
        server,
        dir,
    }
}

impl World {
    fn issue_at(&self, now: UnixTime, renew: Option<&UserName>) -> Issued {
        let issued = self
            .helper
            .issue(&self.client, None, Channel::Manual, renew, now)
            .unwrap();
        let puzzle = Puzzle::from_text(&issued.puzzle).unwrap();
        let opened = puzzle.open(&self.agent, &self.server, now.0).unwrap();
        Issued {
            user: opened.content.user.clone(),
            opened,
        }
    }

    fn issue(&self) -> Issued {
        self.issue_at(T0, None)
    }

    /// A user of `profile` in [`Phase::Active`].
    fn active_with(&self, profile: &str) -> Issued {
        let issued = self
            .helper
            .issue_profile(
                &self.client,
                None,
                Channel::Manual,
                None,
                &codext_core::ProfileName::parse(profile).unwrap(),
                T0,
            )
            .unwrap();
        let puzzle = Puzzle::from_text(&issued.puzzle).unwrap();
        let opened = puzzle.open(&self.agent, &self.server, T0.0).unwrap();
        assert_eq!(opened.content.profile.as_str(), profile);
        let i = Issued {
            user: opened.content.user.clone(),
            opened,
        };
        self.login(&i);
        i
    }

    fn entry(&self, user: &UserName) -> Option<Entry> {
        self.helper
            .status()
            .unwrap()
            .into_iter()
            .find(|e| e.user == *user)
    }

    fn phase(&self, user: &UserName) -> Option<Phase> {
        self.entry(user).map(|e| e.phase())
    }

    fn set_phase(&self, user: &UserName, phase: Phase) {
        let mut locked = self.helper.store.lock().unwrap();
        locked
            .state
            .users
            .get_mut(user.as_str())
            .unwrap()
            .force_phase(phase);
        locked.save().unwrap();
    }

    fn armed_for(&self) -> u64 {
        self.helper.cfg.ttl.armed.as_secs()
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.helper.cfg.audit_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn events(&self, name: &str) -> Vec<serde_json::Value> {
        self.audit()
            .into_iter()
            .filter(|v| v["event"] == name)
            .collect()
    }

    /// Answer, password and `useradd`, all at `T0`: an active user.
    fn login(&self, i: &Issued) {
        self.helper.answer(&i.answer(), "cli", T0).unwrap();
        self.password_and_useradd(i);
    }

    /// Password and `useradd` for an armed user.
    fn password_and_useradd(&self, i: &Issued) {
        let v = self
            .helper
            .authenticate(&i.user, &i.password(), "::1", T0)
            .unwrap();
        let LoginOutcome::CreateAccount(entry) = v else {
            panic!("expected a creation, got {v:?}")
        };
        assert!(matches!(
            self.helper.finish_login(&entry).unwrap(),
            Verdict::Ok("account created")
        ));
    }

    /// Drives a fresh user to `phase`.
    fn user_in(&self, phase: Phase) -> Issued {
        let i = self.issue();
        match phase {
            Phase::Pending => {}
            Phase::Armed => {
                self.helper.answer(&i.answer(), "cli", T0).unwrap();
            }
            Phase::Creating => {
                self.helper.answer(&i.answer(), "cli", T0).unwrap();
                let v = self
                    .helper
                    .authenticate(&i.user, &i.password(), "::1", T0)
                    .unwrap();
                assert!(matches!(v, LoginOutcome::CreateAccount(_)));
            }
            Phase::Active => self.login(&i),
            Phase::Removing => {
                self.login(&i);
                self.set_phase(&i.user, Phase::Removing);
            }
        }
        assert_eq!(self.phase(&i.user), Some(phase));
        i
    }

    fn open(&self, user: &UserName) -> Verdict {
        self.fake.m().processes.insert(SSHD_PID, SSHD_START);
        self.helper.open_session(user, SSHD_PID, "::1", T0).unwrap()
    }
}

fn ok(v: &Verdict) -> bool {
    matches!(v, Verdict::Ok(_))
}

// ---- the table, through every entry point -------------------------------

#[test]
fn given_each_phase_then_each_request_is_served_exactly_where_the_table_permits_it() {
    for phase in Phase::ALL {
        let live = phase == Phase::Active;
        let w = world();
        let i = w.user_in(phase);
        let user = &i.user;
        let key = w.client.to_openssh().unwrap();
        let at = |r: Request| format!("{r:?} in {phase:?}");

        let v = w.helper.account(user, T0).unwrap();
        assert_eq!(ok(&v), live, "{}", at(Request::Account));
        let (v, removal) = w.helper.key_account(user, &key, "::1", T0).unwrap();
        assert_eq!(ok(&v), live, "{}", at(Request::KeyAccount));
        assert!(removal.is_none());
        // Publish: only a pending puzzle (manual ones are never listed, so
        // mark it directly).
        w.helper.mark_published(user.as_str()).unwrap();
        let published = w.entry(user).unwrap().published;
        assert_eq!(
            published,
            phase == Phase::Pending,
            "{}",
            at(Request::Publish)
        );
        // Renew: only a live user.
        let renewed = w
            .helper
            .issue(&w.client, None, Channel::Manual, Some(user), T0)
            .is_ok();
        assert_eq!(renewed, live, "{}", at(Request::Renew));
        if renewed {
            let mut locked = w.helper.store.lock().unwrap();
            locked.state.users.get_mut(user.as_str()).unwrap().renewal = None;
            locked.save().unwrap();
        }
        // CreateAccount: only while creating.
        let entry = w.entry(user).unwrap();
        let made = w.helper.create_accounts(std::slice::from_ref(&entry));
        assert_eq!(
            made[0].is_ok(),
            phase == Phase::Creating,
            "{}",
            at(Request::CreateAccount)
        );
        if phase == Phase::Creating {
            w.set_phase(user, Phase::Creating);
        }
        // Answer (the right one): pending arms; active has no renewal slot.
        let answered = w.helper.answer(&i.answer(), "cli", T0);
        assert_eq!(
            answered.is_ok(),
            phase == Phase::Pending,
            "{}",
            at(Request::Answer)
        );
        if phase == Phase::Pending {
            assert_eq!(w.phase(user), Some(Phase::Armed));
            w.set_phase(user, Phase::Pending);
        }
        // Authenticate (the right password).
        let v = w
            .helper
            .authenticate(user, &i.password(), "::1", T0)
            .unwrap();
        let want = match phase {
            Phase::Pending => "not armed",
            Phase::Armed => "created",
            _ => "token already used",
        };
        match v {
            LoginOutcome::Reply(Verdict::Denied(why)) => {
                assert_eq!(why, want, "{}", at(Request::Authenticate))
            }
            LoginOutcome::CreateAccount(_) => assert_eq!(want, "created"),
            LoginOutcome::Reply(Verdict::Ok(_)) => panic!("{}", at(Request::Authenticate)),
        }
    }
}

#[test]
fn given_each_phase_then_sessions_open_only_for_a_live_account_and_close_anywhere() {
    for phase in Phase::ALL {
        let w = world();
        let i = w.user_in(phase);
        let opened = ok(&w.open(&i.user));
        assert_eq!(opened, phase == Phase::Active, "OpenSession in {phase:?}");
        // Closing an unknown session is honoured and changes nothing.
        let r = w.helper.close_session(&i.user, 1, Closed::Closed).unwrap();
        assert_eq!(r, None, "CloseSession in {phase:?}");
        assert_eq!(w.phase(&i.user), Some(phase));
    }
}

#[test]
fn given_each_phase_then_revoke_ends_the_user_and_remove_acts_only_when_removing() {
    for phase in Phase::ALL {
        let w = world();
        let i = w.user_in(phase);
        // Remove before a revoke: only a removing user is removed.
        w.helper.remove_account(i.user.as_str(), T0).unwrap();
        assert_eq!(
            w.entry(&i.user).is_none(),
            phase == Phase::Removing,
            "Remove in {phase:?}"
        );
        if phase == Phase::Removing {
            assert!(!w.fake.m().passwd.contains_key(i.user.as_str()));
            continue;
        }
        w.helper.revoke(&i.user, "operator", T0).unwrap();
        assert!(w.entry(&i.user).is_none(), "Revoke in {phase:?}");
        let m = w.fake.m();
        assert!(
            !m.records.contains(i.user.as_str()),
            "record left in {phase:?}"
        );
        assert!(
            !m.passwd.contains_key(i.user.as_str()),
            "account left in {phase:?}"
        );
        assert!(
            !m.keys.contains_key(i.user.as_str()),
            "grant key left in {phase:?}"
        );
        drop(m);
        assert_eq!(w.events("revoke").len(), 1);
    }
}

// ---- the first login, end to end ------------------------------------------

#[test]
fn given_a_solved_puzzle_then_answer_password_and_sessions_make_and_remove_the_account() {
    let w = world();
    let i = w.issue();
    assert_eq!(w.phase(&i.user), Some(Phase::Pending));
    assert!(!w.fake.m().records.contains(i.user.as_str()));
    w.helper.answer(&i.answer(), "cli", T0).unwrap();
    assert!(
        w.fake.m().records.contains(i.user.as_str()),
        "armed: announced"
    );
    w.password_and_useradd(&i);
    let e = w.entry(&i.user).unwrap();
    assert_eq!(e.phase(), Phase::Active);
    assert!(e.account_created() && e.token.login_hash.is_none());
    assert!(
        !w.fake.m().records.contains(i.user.as_str()),
        "withdrawn before useradd"
    );
    assert!(
        w.fake.m().keys.contains_key(i.user.as_str()),
        "grant key written"
    );
    assert!(ok(&w.open(&i.user)));
    let removal = w
        .helper
        .close_session(&i.user, SSHD_PID, Closed::Closed)
        .unwrap();
    assert_eq!(removal, Some(Removal::Remove(i.user.to_string())));
    w.helper.remove_account(i.user.as_str(), T0).unwrap();
    assert!(w.entry(&i.user).is_none());
    let m = w.fake.m();
    assert!(!m.passwd.contains_key(i.user.as_str()) && !m.keys.contains_key(i.user.as_str()));
    drop(m);
    let names: Vec<String> = w
        .audit()
        .iter()
        .map(|v| v["event"].as_str().unwrap_or("").to_owned())
        .collect();
    for want in [
        "issue",
        "answer",
        "verify",
        "create",
        "key_authorize",
        "session_open",
        "session_close",
        "key_withdraw",
        "remove",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    assert_eq!(w.events("remove")[0]["result"], "ok");
    assert_eq!(w.events("answer")[0]["uid"], e.uid);
}

#[test]
fn given_a_used_token_then_a_second_password_is_refused() {
    let w = world();
    let i = w.user_in(Phase::Active);
    let v = w
        .helper
        .authenticate(&i.user, &i.password(), "::1", T0)
        .unwrap();
    assert!(matches!(
        v,
        LoginOutcome::Reply(Verdict::Denied("token already used"))
    ));
}

#[test]
fn given_wrong_passwords_then_the_limit_revokes_the_armed_user() {
    let w = world();
    let i = w.user_in(Phase::Armed);
    let max = w.helper.cfg.limits.max_attempts;
    let wrong = Secret::new(b"not-the-token".to_vec());
    for n in 1..=max {
        let v = w.helper.authenticate(&i.user, &wrong, "::1", T0).unwrap();
        assert!(matches!(
            v,
            LoginOutcome::Reply(Verdict::Denied("wrong password"))
        ));
        assert_eq!(w.entry(&i.user).is_some(), n < max, "after {n}");
    }
    assert!(!w.fake.m().records.contains(i.user.as_str()));
    assert_eq!(w.events("revoke")[0]["reason"], "too many wrong passwords");
}

#[test]
fn given_a_wrong_proof_then_nothing_changes_and_the_right_one_still_arms() {
    let w = world();
    let i = w.issue();
    let mut bad = i.opened.answer.clone();
    bad.proof[0] ^= 1;
    assert!(w.helper.answer(&bad.to_string(), "cli", T0).is_err());
    assert_eq!(w.phase(&i.user), Some(Phase::Pending));
    w.helper.answer(&i.answer(), "cli", T0).unwrap();
    assert_eq!(w.phase(&i.user), Some(Phase::Armed));
}

#[test]
fn given_a_failed_useradd_then_the_login_is_refused_and_the_user_forgotten() {
    let w = world();
    let i = w.user_in(Phase::Creating);
    w.fake.m().fail_create = true;
    let entry = w.entry(&i.user).unwrap();
    assert!(w.helper.finish_login(&entry).is_err());
    assert!(w.entry(&i.user).is_none());
    assert_eq!(w.events("create")[0]["result"], "failed");
}

#[test]
fn given_a_revoke_before_useradd_then_no_account_is_made() {
    let w = world();
    let i = w.user_in(Phase::Creating);
    let entry = w.entry(&i.user).unwrap();
    w.helper.revoke(&i.user, "operator", T0).unwrap();
    assert!(w.helper.finish_login(&entry).is_err());
    assert!(!w.fake.m().calls.iter().any(|c| c.starts_with("useradd")));
}

// ---- expiry at each boundary ----------------------------------------------

#[test]
fn given_an_answer_one_second_before_at_and_after_the_deadline_then_only_the_last_is_late() {
    for (offset, in_time) in [(-1i64, true), (0, true), (1, false)] {
        let w = world();
        let i = w.issue();
        let by = w.entry(&i.user).unwrap().token.answer_by;
        let now = UnixTime(by.0.checked_add_signed(offset).unwrap());
        let r = w.helper.answer(&i.answer(), "cli", now);
        assert_eq!(r.is_ok(), in_time, "offset {offset}");
        if !in_time {
            assert!(w.entry(&i.user).is_none());
            assert_eq!(w.events("expire")[0]["phase"], "pending");
        }
    }
}

#[test]
fn given_a_login_one_second_before_at_and_after_the_deadline_then_only_the_last_is_late() {
    for (offset, in_time) in [(-1i64, true), (0, true), (1, false)] {
        let w = world();
        let i = w.user_in(Phase::Armed);
        let by = T0.plus_secs(w.armed_for());
        assert_eq!(w.entry(&i.user).unwrap().token.login_by, Some(by));
        let now = UnixTime(by.0.checked_add_signed(offset).unwrap());
        let v = w
            .helper
            .authenticate(&i.user, &i.password(), "::1", now)
            .unwrap();
        assert_eq!(
            matches!(v, LoginOutcome::CreateAccount(_)),
            in_time,
            "offset {offset}"
        );
        if !in_time {
            assert!(matches!(v, LoginOutcome::Reply(Verdict::Denied("expired"))));
            assert!(w.entry(&i.user).is_none());
            assert!(!w.fake.m().records.contains(i.user.as_str()));
        }
    }
}

#[test]
fn given_the_grant_end_one_second_before_at_and_after_then_only_after_is_refused() {
    let w = world();
    let i = w.user_in(Phase::Active);
    let until = w.entry(&i.user).unwrap().grant_until.unwrap();
    assert_eq!(until, T0.plus(w.helper.cfg.ttl.grant));
    let key = w.client.to_openssh().unwrap();
    for (offset, in_time) in [(-1i64, true), (0, true), (1, false)] {
        let now = UnixTime(until.0.checked_add_signed(offset).unwrap());
        assert_eq!(ok(&w.helper.account(&i.user, now).unwrap()), in_time);
        let (v, _) = w.helper.key_account(&i.user, &key, "::1", now).unwrap();
        assert_eq!(ok(&v), in_time, "key login, offset {offset}");
    }
}

#[test]
fn given_the_reaper_around_each_deadline_then_it_expires_only_after_it() {
    let w = world();
    let pending = w.issue();
    let armed = w.user_in(Phase::Armed);
    let answer_by = w.entry(&pending.user).unwrap().token.answer_by;
    let login_by = w.entry(&armed.user).unwrap().token.login_by.unwrap();
    assert!(login_by < answer_by, "the armed window is the shorter one");
    // At the deadline itself nothing expires.
    assert!(w.helper.reap(login_by).unwrap().is_empty());
    assert!(w.entry(&armed.user).is_some());
    w.helper.reap(login_by.plus_secs(1)).unwrap();
    assert!(w.entry(&armed.user).is_none());
    assert!(!w.fake.m().records.contains(armed.user.as_str()));
    w.helper.reap(answer_by).unwrap();
    assert!(w.entry(&pending.user).is_some());
    w.helper.reap(answer_by.plus_secs(1)).unwrap();
    assert!(w.entry(&pending.user).is_none());
}

#[test]
fn given_a_live_account_then_the_reaper_removes_it_after_the_grace_the_grant_or_its_sshd() {
    // No session within the grace after creation.
    let w = world();
    let i = w.user_in(Phase::Active);
    let grace = T0.plus_secs(LOGIN_GRACE_SECS);
    assert!(w.helper.reap(grace).unwrap().is_empty());
    assert_eq!(w.helper.reap(grace.plus_secs(1)).unwrap().len(), 1);
    assert_eq!(w.phase(&i.user), Some(Phase::Removing));

    // A session whose sshd process is gone.
    let w = world();
    let i = w.user_in(Phase::Active);
    assert!(ok(&w.open(&i.user)));
    assert!(
        w.helper.reap(grace.plus_secs(1)).unwrap().is_empty(),
        "sshd alive"
    );
    w.fake.m().processes.insert(SSHD_PID, SSHD_START + 1); // pid reused
    assert_eq!(w.helper.reap(grace.plus_secs(1)).unwrap().len(), 1);
    assert_eq!(w.events("session_lost")[0]["dropped"], 1);

    // The grant's end, even with a session open.
    let w = world();
    let i = w.user_in(Phase::Active);
    assert!(ok(&w.open(&i.user)));
    let until = w.entry(&i.user).unwrap().grant_until.unwrap();
    assert!(w.helper.reap(until).unwrap().is_empty());
    assert_eq!(w.helper.reap(until.plus_secs(1)).unwrap().len(), 1);
    assert_eq!(w.events("expire")[0]["phase"], "active");
}

// ---- renewal ----------------------------------------------------------------

#[test]
fn given_a_live_user_then_a_renewal_token_allows_one_further_login() {
    let w = world();
    let first = w.user_in(Phase::Active);
    let again = w.issue_at(T0.plus_secs(5), Some(&first.user));
    assert_eq!(again.user, first.user);
    // Not armed yet: the password is refused.
    let v = w
        .helper
        .authenticate(&first.user, &again.password(), "::1", T0.plus_secs(5))
        .unwrap();
    assert!(matches!(
        v,
        LoginOutcome::Reply(Verdict::Denied("token already used"))
    ));
    w.helper
        .answer(&again.answer(), "cli", T0.plus_secs(6))
        .unwrap();
    assert!(
        w.helper
            .answer(&again.answer(), "cli", T0.plus_secs(6))
            .is_err(),
        "armed twice"
    );
    assert!(
        !w.fake.m().records.contains(first.user.as_str()),
        "no record for a renewal"
    );
    let v = w
        .helper
        .authenticate(&first.user, &again.password(), "::1", T0.plus_secs(7))
        .unwrap();
    assert!(matches!(
        v,
        LoginOutcome::Reply(Verdict::Ok("further session allowed"))
    ));
    let v = w
        .helper
        .authenticate(&first.user, &again.password(), "::1", T0.plus_secs(8))
        .unwrap();
    assert!(matches!(
        v,
        LoginOutcome::Reply(Verdict::Denied("token already used"))
    ));
    assert_eq!(w.phase(&first.user), Some(Phase::Active));
    // The renewal's use is a line; the two refusals, which changed
    // nothing, are counted in the window's summary.
    assert_eq!(w.events("verify").last().unwrap()["result"], "ok");
    w.helper
        .audit
        .flush_summaries(codext_core::time::now() + 3600)
        .unwrap();
    assert!(
        w.events("refusals_summary")
            .iter()
            .any(|e| e["user"] == first.user.as_str()
                && e["result"] == "token already used"
                && e["count"] == 2),
        "{:?}",
        w.events("refusals_summary")
    );
}

#[test]
fn given_a_renewal_past_its_deadlines_then_it_is_refused_and_cleared() {
    // Answer after the answer deadline.
    let w = world();
    let first = w.user_in(Phase::Active);
    let again = w.issue_at(T0, Some(&first.user));
    let by = w.entry(&first.user).unwrap().renewal.unwrap().answer_by;
    assert!(w
        .helper
        .answer(&again.answer(), "cli", by.plus_secs(1))
        .is_err());
    assert!(w.entry(&first.user).unwrap().renewal.is_none());
    assert_eq!(w.phase(&first.user), Some(Phase::Active));

    // Password after the login deadline.
    let again = w.issue_at(T0, Some(&first.user));
    w.helper.answer(&again.answer(), "cli", T0).unwrap();
    let by = T0.plus_secs(w.armed_for());
    let v = w
        .helper
        .authenticate(&first.user, &again.password(), "::1", by.plus_secs(1))
        .unwrap();
    assert!(matches!(v, LoginOutcome::Reply(Verdict::Denied("expired"))));
    assert!(w.entry(&first.user).unwrap().renewal.is_none());

    // The reaper clears an unanswered one after its deadline only.
    w.issue_at(T0, Some(&first.user));
    assert!(ok(&w.open(&first.user)));
    let by = w.entry(&first.user).unwrap().renewal.unwrap().answer_by;
    w.helper.reap(by).unwrap();
    assert!(w.entry(&first.user).unwrap().renewal.is_some());
    w.helper.reap(by.plus_secs(1)).unwrap();
    assert!(w.entry(&first.user).unwrap().renewal.is_none());
    assert_eq!(w.events("expire").last().unwrap()["phase"], "renewal");
}

#[test]
fn given_a_renewal_for_someone_else_or_another_key_then_it_is_refused() {
    let w = world();
    let pending = w.issue();
    assert!(w
        .helper
        .issue(&w.client, None, Channel::Manual, Some(&pending.user), T0)
        .is_err());
    let live = w.user_in(Phase::Active);
    let other = PublicKey::load(&vectors().join("other-agent.pub")).unwrap();
    let e = w
        .helper
        .issue(&other, None, Channel::Manual, Some(&live.user), T0)
        .unwrap_err();
    assert!(e.to_string().contains("another agent key"), "{e}");
}

#[test]
fn given_a_key_login_with_a_foreign_key_then_the_grant_is_revoked() {
    let w = world();
    let i = w.user_in(Phase::Active);
    let other = std::fs::read_to_string(vectors().join("other-agent.pub")).unwrap();
    let (v, removal) = w.helper.key_account(&i.user, &other, "::1", T0).unwrap();
    assert!(matches!(v, Verdict::Denied("not the grant's agent key")));
    assert_eq!(removal, Some(Removal::Remove(i.user.to_string())));
    assert_eq!(w.phase(&i.user), Some(Phase::Removing));
}

// ---- linger, failed and incomplete removals ---------------------------------

#[test]
fn given_a_linger_asked_for_then_the_account_stays_until_it_ends_and_a_session_ends_it() {
    let w = world();
    let i = w.user_in(Phase::Active);
    w.fake.m().linger = 120;
    assert!(ok(&w.open(&i.user)));
    let r = w
        .helper
        .close_session(&i.user, SSHD_PID, Closed::Closed)
        .unwrap();
    assert!(r.is_some());
    w.helper.remove_account(i.user.as_str(), T0).unwrap();
    let e = w.entry(&i.user).unwrap();
    assert_eq!(e.phase(), Phase::Active, "lingering, not removed");
    let until = T0.plus_secs(120);
    assert_eq!(e.linger.unwrap().until, Some(until));
    assert!(w.fake.m().passwd.contains_key(i.user.as_str()));
    assert!(
        w.fake.m().calls.iter().any(|c| c.starts_with("kill")),
        "processes killed"
    );
    // Within the linger the reaper keeps it; after it, it goes.
    assert!(w.helper.reap(until).unwrap().is_empty());
    assert_eq!(w.helper.reap(until.plus_secs(1)).unwrap().len(), 1);
    w.helper.remove_account(i.user.as_str(), until).unwrap();
    assert!(w.entry(&i.user).is_none());

    // A key login's session within the linger ends it.
    let w = world();
    let i = w.user_in(Phase::Active);
    w.fake.m().linger = 120;
    assert!(ok(&w.open(&i.user)));
    w.helper
        .close_session(&i.user, SSHD_PID, Closed::Closed)
        .unwrap();
    w.helper.remove_account(i.user.as_str(), T0).unwrap();
    assert!(ok(&w.open(&i.user)));
    assert_eq!(w.entry(&i.user).unwrap().linger, None);
}

#[test]
fn given_a_revoke_then_it_never_lingers() {
    let w = world();
    let i = w.user_in(Phase::Active);
    w.fake.m().linger = 120;
    assert!(ok(&w.open(&i.user)));
    w.helper.revoke(&i.user, "operator", T0).unwrap();
    assert!(w.entry(&i.user).is_none());
}

#[test]
fn given_a_failing_userdel_then_the_removal_is_recorded_and_a_retry_finishes_it() {
    let w = world();
    let i = w.user_in(Phase::Removing);
    w.fake.m().fail_userdel = true;
    assert!(w.helper.remove_account(i.user.as_str(), T0).is_err());
    let progress = w.entry(&i.user).unwrap().removal.unwrap();
    assert_eq!((progress.started_at, progress.attempts), (T0, 1));
    assert!(progress.last_error.unwrap().contains("userdel failed"));
    assert_eq!(w.events("remove")[0]["result"], "failed");
    // The reaper hands it back; the next attempt succeeds.
    w.fake.m().fail_userdel = false;
    assert_eq!(w.helper.reap(T0.plus_secs(5)).unwrap().len(), 1);
    w.helper
        .remove_account(i.user.as_str(), T0.plus_secs(5))
        .unwrap();
    assert!(w.entry(&i.user).is_none());
}

#[test]
fn given_a_last_logout_then_one_kill_and_the_removal_steps_in_order_with_or_without_a_linger() {
    let effects = |linger: u64| {
        let w = world();
        let i = w.user_in(Phase::Active);
        let (uid, user) = (w.entry(&i.user).unwrap().uid, i.user.to_string());
        w.fake.m().linger = linger;
        w.fake.m().calls.clear();
        assert!(ok(&w.open(&i.user)));
        w.helper
            .close_session(&i.user, SSHD_PID, Closed::Closed)
            .unwrap();
        w.helper.remove_account(i.user.as_str(), T0).unwrap();
        let calls = w.fake.m().calls.clone();
        (calls, uid, user)
    };
    let (calls, uid, user) = effects(0);
    assert_eq!(
        calls,
        [
            format!("kill {uid}"),
            format!("defuse {uid}"),
            format!("userdel {user}"),
            format!("keyrings {uid}"),
            format!("sweep {uid}"),
        ],
        "an ordinary last logout"
    );
    let (calls, uid, _) = effects(120);
    assert_eq!(
        calls,
        [format!("kill {uid}"), format!("sweep-shared {uid}")],
        "a last logout that lingers"
    );
    // A container grant: docker stops its container before the
    // killer (its processes are the uid's in the host kernel), and after
    // the removal none of the grant's may be left.
    let w = world();
    let i = w.active_with("ws");
    let (uid, user) = (w.entry(&i.user).unwrap().uid, i.user.to_string());
    w.fake.m().calls.clear();
    assert!(ok(&w.open(&i.user)));
    w.helper
        .close_session(&i.user, SSHD_PID, Closed::Closed)
        .unwrap();
    w.helper.remove_account(&user, T0).unwrap();
    assert_eq!(
        w.fake.m().calls,
        [
            format!("container-stop {user}"),
            format!("kill {uid}"),
            format!("defuse {uid}"),
            format!("userdel {user}"),
            format!("groups {user}"),
            format!("keyrings {uid}"),
            format!("sweep {uid}"),
            format!("containers-left {user}"),
        ],
        "a container grant's last logout"
    );
}

/// The removal steps of an ordinary (shell) grant, in order, after its
/// one kill.
fn removal_steps(uid: u32, user: &str) -> Vec<String> {
    vec![
        format!("kill {uid}"),
        format!("defuse {uid}"),
        format!("userdel {user}"),
        format!("keyrings {uid}"),
        format!("sweep {uid}"),
    ]
}

#[test]
fn given_a_login_then_one_useradd_and_the_profiles_extras_in_order() {
    let w = world();
    let i = w.issue();
    w.fake.m().calls.clear();
    w.login(&i);
    let user = i.user.to_string();
    assert_eq!(
        w.fake.m().calls,
        [format!("useradd {user}"), format!("extras {user}")],
        "a login makes the account once, then what its profile adds"
    );
    assert!(ok(&w.open(&i.user)));
    assert_eq!(w.fake.m().calls.len(), 2, "a session opens with no effect");
}

#[test]
fn given_a_grant_that_ends_then_the_reaper_runs_one_kill_and_the_removal_steps_in_order() {
    let w = world();
    let i = w.user_in(Phase::Active);
    let (uid, user) = (w.entry(&i.user).unwrap().uid, i.user.to_string());
    assert!(ok(&w.open(&i.user)));
    w.fake.m().calls.clear();
    let until = w.entry(&i.user).unwrap().grant_until.unwrap();
    let after = until.plus_secs(1);
    let mut removals = w.helper.reap(after).unwrap();
    assert_eq!(removals, [Removal::Remove(user.clone())]);
    // A second pass before the worker ran hands it the same removal, and
    // the session's close (sshd sees the grant refused) comes in between:
    // neither may run anything twice.
    removals.extend(w.helper.reap(after).unwrap());
    assert_eq!(removals.len(), 2);
    let closed = w.helper.close_session(&i.user, SSHD_PID, Closed::Closed);
    assert_eq!(closed.unwrap(), None, "already being removed");
    assert!(w.fake.m().calls.is_empty(), "the reaper only decides");
    for Removal::Remove(name) in removals {
        w.helper.remove_account(&name, after).unwrap();
    }
    assert_eq!(w.fake.m().calls, removal_steps(uid, &user));
    assert!(w.entry(&i.user).is_none());
    // A later pass finds nothing left to do.
    assert!(w.helper.reap(after.plus_secs(1)).unwrap().is_empty());
    assert_eq!(w.fake.m().calls, removal_steps(uid, &user));
}

#[test]
fn given_a_revoke_of_an_active_user_then_one_kill_and_the_removal_steps_in_order() {
    let w = world();
    let i = w.user_in(Phase::Active);
    let (uid, user) = (w.entry(&i.user).unwrap().uid, i.user.to_string());
    assert!(ok(&w.open(&i.user)));
    w.fake.m().calls.clear();
    w.helper.revoke(&i.user, "operator", T0).unwrap();
    assert_eq!(w.fake.m().calls, removal_steps(uid, &user));
    assert!(w.entry(&i.user).is_none());
    // Its sshd process closes the session as it dies, then is gone:
    // nothing runs again.
    let closed = w.helper.close_session(&i.user, SSHD_PID, Closed::Lost);
    assert_eq!(closed.unwrap(), None);
    w.fake.m().processes.clear();
    assert!(w.helper.reap(T0.plus_secs(1)).unwrap().is_empty());
    assert_eq!(w.fake.m().calls, removal_steps(uid, &user));
}

#[test]
fn given_a_crash_with_an_active_account_and_no_session_then_reconcile_runs_one_kill_and_the_removal_steps_in_order(
) {
    let w = world();
    let i = w.user_in(Phase::Active);
    let (uid, user) = (w.entry(&i.user).unwrap().uid, i.user.to_string());
    assert!(ok(&w.open(&i.user)));
    // The helper stops; its session's sshd process does not survive it.
    w.fake.m().processes.clear();
    w.fake.m().calls.clear();
    let mut removals = w.helper.reconcile(T0).unwrap();
    assert_eq!(removals, [Removal::Remove(user.clone())]);
    assert_eq!(
        w.fake.m().calls,
        ["strays"],
        "reconcile only decides (and looks for strays)"
    );
    w.fake.m().calls.clear();
    // The reaper's first pass, before the worker ran, hands it the same
    // removal again.
    removals.extend(w.helper.reap(T0).unwrap());
    assert_eq!(removals.len(), 2);
    for Removal::Remove(name) in removals {
        w.helper.remove_account(&name, T0).unwrap();
    }
    assert_eq!(w.fake.m().calls, removal_steps(uid, &user));
    assert!(w.entry(&i.user).is_none());
    // The reaper's next pass has nothing left to remove.
    assert!(w.helper.reap(T0.plus_secs(1)).unwrap().is_empty());
    assert_eq!(w.fake.m().calls, removal_steps(uid, &user));
}

#[test]
fn given_a_last_logout_of_a_container_or_sudo_grant_then_sudo_and_the_container_go_before_the_kill_and_the_leftover_checks_after(
) {
    // The container's processes are the uid's: docker stops
    // them before the killer runs; the sudo rules go before anything can
    // start through them; after userdel, no group and no container is
    // left.
    let w = world();
    let i = w.active_with("ws");
    let e = w.entry(&i.user).unwrap();
    assert!(e.container && e.groups == ["codext-p-ws"]);
    assert_eq!(
        e.shell, w.helper.cfg.recording.recorder,
        "the gate is the login shell"
    );
    let (uid, user) = (e.uid, i.user.to_string());
    assert_eq!(
        w.fake.m().containers.get(&user).map(Vec::len),
        Some(1),
        "started with the account"
    );
    w.fake.m().calls.clear();
    assert!(ok(&w.open(&i.user)));
    w.helper
        .close_session(&i.user, SSHD_PID, Closed::Closed)
        .unwrap();
    w.helper.remove_account(&user, T0).unwrap();
    assert_eq!(
        w.fake.m().calls,
        [
            format!("container-stop {user}"),
            format!("kill {uid}"),
            format!("defuse {uid}"),
            format!("userdel {user}"),
            format!("groups {user}"),
            format!("keyrings {uid}"),
            format!("sweep {uid}"),
            format!("containers-left {user}"),
        ],
        "a container grant's last logout"
    );
    assert!(w.helper.quarantined().unwrap().is_empty());
    let created = w.events("create");
    assert_eq!(created[0]["profile"], "ws");
    assert_eq!(w.events("issue")[0]["profile"], "ws");

    let i = w.active_with("ci");
    let e = w.entry(&i.user).unwrap();
    let (uid, user) = (e.uid, i.user.to_string());
    assert!(w.fake.m().sudoers.contains(&user));
    w.fake.m().calls.clear();
    w.fake.m().groups_left = vec!["codext-p-ci".into()];
    assert!(ok(&w.open(&i.user)));
    w.helper
        .close_session(&i.user, SSHD_PID, Closed::Closed)
        .unwrap();
    w.helper.remove_account(&user, T0).unwrap();
    assert_eq!(
        w.fake.m().calls,
        [
            format!("sudoers {user}"),
            format!("kill {uid}"),
            format!("defuse {uid}"),
            format!("userdel {user}"),
            format!("groups {user}"),
            format!("keyrings {uid}"),
            format!("sweep {uid}"),
        ],
        "a grant with sudo rules"
    );
    assert!(!w.fake.m().sudoers.contains(&user));
    let repairs = w.events("repair");
    assert!(
        repairs
            .iter()
            .any(|r| r["what"].as_str().unwrap().contains("codext-p-ci")),
        "{repairs:?}"
    );
}

#[test]
fn given_docker_down_at_the_removal_then_the_kill_still_runs_and_the_uid_is_quarantined_until_the_container_goes(
) {
    let w = world();
    let i = w.active_with("ws");
    let e = w.entry(&i.user).unwrap();
    let (uid, user) = (e.uid, i.user.to_string());
    w.fake.m().docker_down = true;
    w.fake.m().calls.clear();
    w.helper.revoke(&i.user, "test", T0).unwrap();
    let calls = w.fake.m().calls.clone();
    assert!(calls.contains(&format!("kill {uid}")), "{calls:?}");
    let q = w.helper.quarantined().unwrap();
    let held = q.get(&uid).expect("quarantined");
    assert!(
        held.named
            .iter()
            .any(|n| n.starts_with(super::removal::CONTAINER_LEFT)),
        "{held:?}"
    );
    assert!(w.entry(&i.user).is_none(), "the account itself is gone");
    // Still down: still held. Back: the recheck removes it and releases.
    w.helper.recheck_quarantine().unwrap();
    assert!(w.helper.quarantined().unwrap().contains_key(&uid));
    w.fake.m().docker_down = false;
    w.helper.recheck_quarantine().unwrap();
    assert!(w.helper.quarantined().unwrap().is_empty());
    assert!(!w.fake.m().containers.contains_key(&user));
}

#[test]
fn given_a_linger_on_a_sudo_grant_then_the_rules_come_back_for_the_reconnect_and_the_linger_asked_through_the_gate_counts(
) {
    let w = world();
    let i = w.active_with("ci");
    let user = i.user.to_string();
    // The gate's `codext-grant linger`, not a file in the home.
    w.fake.m().linger = 999;
    w.helper.ask_linger(&i.user, 120).unwrap();
    assert!(ok(&w.open(&i.user)));
    w.helper
        .close_session(&i.user, SSHD_PID, Closed::Closed)
        .unwrap();
    w.helper.remove_account(&user, T0).unwrap();
    let e = w.entry(&i.user).unwrap();
    assert!(e.lingering(T0), "lingers");
    assert_eq!(
        e.linger.as_ref().and_then(|l| l.until),
        Some(T0.plus_secs(120)),
        "the gate's 120 s, not the home's 999"
    );
    assert!(
        w.fake.m().sudoers.contains(&user),
        "rules back for the reconnect"
    );
}

#[test]
fn given_sudo_rules_nothing_live_stands_behind_then_reconcile_removes_them() {
    let w = world();
    w.fake.m().sudoers.insert("user-0123456789ab".into());
    let i = w.active_with("ci");
    assert!(ok(&w.open(&i.user)));
    w.helper.reconcile(T0).unwrap();
    let m = w.fake.m();
    assert!(!m.sudoers.contains("user-0123456789ab"));
    assert!(m.sudoers.contains(i.user.as_str()), "a live grant's stay");
}

#[test]
fn given_a_kill_that_fails_at_the_last_logout_then_status_and_the_audit_trail_say_so_and_it_is_retried_later(
) {
    let w = world();
    let i = w.user_in(Phase::Active);
    w.fake.m().linger = 120;
    w.fake.m().fail_kill = true;
    assert!(ok(&w.open(&i.user)));
    w.helper
        .close_session(&i.user, SSHD_PID, Closed::Closed)
        .unwrap();
    assert!(w.helper.remove_account(i.user.as_str(), T0).is_err());
    let e = w.entry(&i.user).unwrap();
    assert_eq!(e.phase(), Phase::Removing);
    let progress = e.removal.unwrap();
    assert!(
        progress
            .last_error
            .as_deref()
            .is_some_and(|m| m.contains("still has processes")),
        "{progress:?}"
    );
    assert_eq!(progress.next_retry, Some(T0.plus_secs(2)));
    let failed = w.events("remove");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["result"], "failed");
    assert!(failed[0]["error"]
        .as_str()
        .unwrap()
        .contains("still has processes"));
    // Not handed back before its wait is over; then it is, and succeeds.
    assert!(w.helper.reap(T0.plus_secs(1)).unwrap().is_empty());
    w.fake.m().fail_kill = false;
    assert_eq!(w.helper.reap(T0.plus_secs(2)).unwrap().len(), 1);
    w.helper
        .remove_account(i.user.as_str(), T0.plus_secs(2))
        .unwrap();
}

#[test]
fn given_removals_that_keep_failing_then_each_waits_twice_as_long_up_to_five_minutes() {
    use super::entry::retry_delay;
    let waits: Vec<u64> = (1..=10).map(retry_delay).collect();
    assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert_eq!(retry_delay(u32::MAX), 300);
    let w = world();
    let i = w.user_in(Phase::Removing);
    w.fake.m().fail_userdel = true;
    let mut now = T0;
    for attempt in 1..=4u32 {
        assert!(w.helper.remove_account(i.user.as_str(), now).is_err());
        let next = w
            .entry(&i.user)
            .unwrap()
            .removal
            .unwrap()
            .next_retry
            .unwrap();
        assert_eq!(next, now.plus_secs(retry_delay(attempt)));
        assert!(w.helper.reap(UnixTime(next.0 - 1)).unwrap().is_empty());
        now = next;
    }
}

#[test]
fn given_keys_of_the_uid_left_somewhere_then_the_uid_is_quarantined() {
    let w = world();
    let i = w.user_in(Phase::Removing);
    let uid = w.entry(&i.user).unwrap().uid;
    w.fake.m().keys_left = 2;
    w.helper.remove_account(i.user.as_str(), T0).unwrap();
    let q = w.helper.quarantined().unwrap();
    let held = q.get(&uid).expect("quarantined");
    assert!(
        held.named.iter().any(|n| n.contains("kernel key")),
        "{held:?}"
    );
}

/// The policy itself at scale (3,000 puzzles, 1,000 uids) is
/// `uids::tests`; here the same story through `issue`, the reaper and a
/// removal, on a range of 20.
#[test]
fn given_unanswered_puzzles_and_a_removal_then_issue_hands_out_the_uid_free_the_longest() {
    let mut w = world();
    w.helper.cfg.accounts.uid_min = 59_000;
    w.helper.cfg.accounts.uid_max = 59_019;
    let step = w.helper.cfg.ttl.puzzle.as_secs() + 1;
    let a = w.user_in(Phase::Active);
    let a_uid = w.entry(&a.user).unwrap().uid;
    let mut handed: Vec<u32> = Vec::new();
    let mut free_before_a = BTreeSet::new();
    for k in 0..60u64 {
        // Each puzzle expires unanswered before the next is issued.
        let now = T0.plus_secs((k + 1) * step);
        if k == 30 {
            let live: BTreeSet<u32> = w.helper.status().unwrap().iter().map(|e| e.uid).collect();
            free_before_a = (59_000..=59_019).filter(|u| !live.contains(u)).collect();
            w.set_phase(&a.user, Phase::Removing);
            w.helper.remove_account(a.user.as_str(), now).unwrap();
        }
        w.helper.reap(now).unwrap();
        let issued = w
            .helper
            .issue(&w.client, None, Channel::Manual, None, now)
            .unwrap();
        handed.push(issued.uid);
    }
    let first: BTreeSet<u32> = handed[..19].iter().copied().collect();
    assert_eq!(
        first.len(),
        19,
        "a uid came back before every uid had its turn"
    );
    let back = (30..60)
        .find(|k| handed[*k] == a_uid)
        .expect("never handed out again");
    let between: BTreeSet<u32> = handed[30..back].iter().copied().collect();
    assert!(free_before_a.is_subset(&between), "{handed:?}");
}

#[test]
fn given_leftovers_of_a_uid_no_state_remembers_then_the_rescan_quarantines_it_and_it_is_not_handed_out(
) {
    let mut w = world();
    w.helper.cfg.accounts.uid_min = 59_000;
    w.helper.cfg.accounts.uid_max = 59_001;
    // After a purge: the state is empty, a file of 59000 is still in /tmp.
    w.fake.m().found.insert(
        59_000,
        crate::accounts::sweep::Found {
            count: 1,
            named: vec!["/tmp/stuck".into()],
        },
    );
    assert_eq!(w.helper.rescan_range(T0).unwrap(), [59_000]);
    assert_eq!(
        w.helper.rescan_range(T0).unwrap(),
        Vec::<u32>::new(),
        "once"
    );
    let q = w.events("quarantine");
    assert_eq!((q.len(), &q[0]["uid"]), (1, &serde_json::json!(59_000)));
    for _ in 0..3 {
        let i = w.issue();
        assert_eq!(w.entry(&i.user).unwrap().uid, 59_001);
        w.helper.revoke(&i.user, "test", T0).unwrap();
    }
    // Another uid's files while it is in use are not the rescan's business.
    let w = world();
    let i = w.user_in(Phase::Active);
    let uid = w.entry(&i.user).unwrap().uid;
    w.fake.m().found.insert(
        uid,
        crate::accounts::sweep::Found {
            count: 3,
            named: vec![],
        },
    );
    assert!(w.helper.rescan_range(T0).unwrap().is_empty());
}

#[test]
fn given_files_left_after_a_removal_then_the_uid_is_quarantined_until_they_go_or_the_operator_releases_it(
) {
    let w = world();
    let i = w.user_in(Phase::Removing);
    let uid = w.entry(&i.user).unwrap().uid;
    w.fake.m().leftovers = 2;
    w.helper.remove_account(i.user.as_str(), T0).unwrap();
    assert!(w.entry(&i.user).is_none());
    assert_eq!(w.helper.quarantined().unwrap()[&uid].leftovers, 2);
    assert_eq!(w.events("remove")[0]["result"], "incomplete");
    assert_eq!(
        w.events("quarantine")[0]["named"].as_array().unwrap().len(),
        2
    );
    // The range is one uid wide: nothing is handed out while it is held.
    let mut narrow = w.helper.clone();
    narrow.cfg.accounts.uid_min = uid;
    narrow.cfg.accounts.uid_max = uid;
    let e = narrow
        .issue(&w.client, None, Channel::Manual, None, T0)
        .unwrap_err();
    assert!(e.to_string().contains("quarantined"), "{e}");
    // Still there at the next look; gone once the files are.
    w.helper.recheck_quarantine().unwrap();
    assert!(w.helper.quarantined().unwrap().contains_key(&uid));
    w.fake.m().leftovers = 0;
    w.helper.recheck_quarantine().unwrap();
    assert!(w.helper.quarantined().unwrap().is_empty());
    assert_eq!(w.events("quarantine_release")[0]["by"], "sweep");
    assert!(
        w.helper.release_quarantine(uid).is_err(),
        "not held any more"
    );
}

// ---- reconcile after each crash point ---------------------------------------

#[test]
fn given_a_crash_while_creating_then_reconcile_removes_whatever_exists() {
    for account_exists in [false, true] {
        let w = world();
        let i = w.user_in(Phase::Creating);
        if account_exists {
            let uid = w.entry(&i.user).unwrap().uid;
            w.fake.m().passwd.insert(i.user.to_string(), uid);
        }
        let removals = w.helper.reconcile(T0).unwrap();
        assert_eq!(removals, vec![Removal::Remove(i.user.to_string())]);
        let e = w.entry(&i.user).unwrap();
        assert_eq!(
            (e.phase(), e.account_created()),
            (Phase::Removing, account_exists)
        );
        w.helper.remove_account(i.user.as_str(), T0).unwrap();
        assert!(w.entry(&i.user).is_none());
        let m = w.fake.m();
        assert!(!m.passwd.contains_key(i.user.as_str()));
        assert_eq!(
            m.calls.iter().any(|c| c.starts_with("userdel")),
            account_exists,
            "userdel only for an account that exists"
        );
    }
}

#[test]
fn given_a_crash_half_way_through_a_removal_then_reconcile_finishes_it() {
    let w = world();
    let i = w.user_in(Phase::Removing);
    {
        let mut locked = w.helper.store.lock().unwrap();
        let e = locked.state.users.get_mut(i.user.as_str()).unwrap();
        e.start_removal_attempt(T0).unwrap();
        locked.save().unwrap();
    }
    assert_eq!(
        w.helper.reconcile(T0).unwrap(),
        vec![Removal::Remove(i.user.to_string())]
    );
    w.helper.remove_account(i.user.as_str(), T0).unwrap();
    assert!(w.entry(&i.user).is_none());
    assert!(!w.fake.m().passwd.contains_key(i.user.as_str()));
}

#[test]
fn given_a_restart_then_reconcile_keeps_live_sessions_and_removes_orphans() {
    let w = world();
    let kept = w.user_in(Phase::Active);
    assert!(ok(&w.open(&kept.user)));
    let orphan = w.user_in(Phase::Active);
    let removals = w.helper.reconcile(T0).unwrap();
    assert_eq!(removals, vec![Removal::Remove(orphan.user.to_string())]);
    assert_eq!(w.phase(&kept.user), Some(Phase::Active));
    assert_eq!(w.events("orphan")[0]["user"], orphan.user.as_str());
}

#[test]
fn given_an_active_entry_that_never_recorded_its_account_then_reconcile_adopts_or_forgets_it() {
    for on_disk in [true, false] {
        let w = world();
        let i = w.user_in(Phase::Active);
        assert!(ok(&w.open(&i.user)));
        {
            let mut locked = w.helper.store.lock().unwrap();
            locked
                .state
                .users
                .get_mut(i.user.as_str())
                .unwrap()
                .force_account_created(false);
            locked.save().unwrap();
        }
        if !on_disk {
            w.fake.m().passwd.remove(i.user.as_str());
        }
        w.helper.reconcile(T0).unwrap();
        assert_eq!(w.entry(&i.user).is_some(), on_disk);
        if on_disk {
            assert!(w.entry(&i.user).unwrap().account_created());
        }
    }
}

#[test]
fn given_a_reboot_then_armed_records_come_back_and_stray_ones_and_keys_go() {
    let w = world();
    let armed = w.user_in(Phase::Armed);
    let expired = w.user_in(Phase::Armed);
    {
        let mut m = w.fake.m();
        m.records.clear();
        m.records.insert("user-0123456789ab".into());
        m.keys.insert("user-ba9876543210".into(), "key".into());
    }
    let late = T0.plus_secs(w.armed_for());
    {
        // One armed user's window ends before the other's.
        let mut locked = w.helper.store.lock().unwrap();
        let e = locked.state.users.get_mut(expired.user.as_str()).unwrap();
        e.token.login_by = Some(T0);
        locked.save().unwrap();
    }
    w.helper.reconcile(late).unwrap();
    let m = w.fake.m();
    assert!(m.records.contains(armed.user.as_str()));
    assert!(!m.records.contains(expired.user.as_str()));
    assert!(!m.records.contains("user-0123456789ab"));
    assert!(m.keys.is_empty());
}

// ---- the state file ---------------------------------------------------------

/// An entry as the helper before the lifecycle core wrote it (fields
/// copied from a real `state.json`): an active user with a used token and
/// an armed renewal.
const OLD_STATE: &str = r#"{
  "version": 1,
  "next_uid": 59001,
  "users": {
    "user-00112233aabb": {
      "user": "user-00112233aabb",
      "uid": 59000,
      "gid": 59999,
      "home": "/home/user-00112233aabb",
      "shell": "/bin/bash",
      "phase": "active",
      "puzzle_id": "000102030405060708090a0b0c0d0e0f",
      "login_hash": "",
      "proof": "101112131415161718191a1b1c1d1e1f",
      "client_fingerprint": "SHA256:abc",
      "channel": "digitalocean",
      "issued_at": 1800000000,
      "answer_by": 1800000600,
      "login_by": 1800000060,
      "created_at": 1800000010,
      "grant_until": 1800003610,
      "attempts": 1,
      "sessions": [{"pid": 4242, "start_time": 77, "opened_at": 1800000011}],
      "account_created": true,
      "renewal": {
        "puzzle_id": "202122232425262728292a2b2c2d2e2f",
        "login_hash": "3031323334353637383930313233343536373839303132333435363738393031",
        "proof": "404142434445464748494a4b4c4d4e4f",
        "answer_by": 1800001000,
        "login_by": 1800000900
      },
      "removal": null,
      "puzzle": null,
      "published": true,
      "client_key": null,
      "linger": {"at_last_close": false, "until": 1800002000}
    },
    "user-aabbccddeeff": {
      "user": "user-aabbccddeeff",
      "uid": 59001,
      "gid": 59999,
      "home": "/home/user-aabbccddeeff",
      "shell": "/bin/bash",
      "phase": "pending",
      "puzzle_id": "505152535455565758595a5b5c5d5e5f",
      "login_hash": "6061626364656667686960616263646566676869606162636465666768696061",
      "proof": "707172737475767778797a7b7c7d7e7f",
      "client_fingerprint": "SHA256:def",
      "channel": "manual",
      "issued_at": 1800000000,
      "answer_by": 1800000600,
      "login_by": null,
      "created_at": null,
      "grant_until": null,
      "attempts": 0,
      "sessions": [],
      "account_created": false
    }
  }
}"#;

#[test]
fn given_a_state_file_of_the_previous_format_then_it_loads_typed_and_saves_the_same_fields() {
    let w = world();
    let path = w.helper.cfg.state_dir.join("state.json");
    std::fs::write(&path, OLD_STATE).unwrap();
    let locked = w.helper.store.lock().unwrap();
    let active = &locked.state.users["user-00112233aabb"];
    assert_eq!(active.phase(), Phase::Active);
    assert_eq!(active.channel, Channel::DigitalOcean);
    assert_eq!(active.token.login_hash, None);
    assert_eq!(active.token.proof[0], 0x10);
    assert_eq!(
        active.renewal.as_ref().unwrap().login_by,
        Some(UnixTime(1_800_000_900))
    );
    assert_eq!(
        active.linger.as_ref().unwrap().until,
        Some(UnixTime(1_800_002_000))
    );
    let pending = &locked.state.users["user-aabbccddeeff"];
    assert_eq!(pending.token.login_hash.unwrap()[0], 0x60);
    assert_eq!(pending.channel, Channel::Manual);
    locked.save().unwrap();
    drop(locked);
    let mut old: serde_json::Value = serde_json::from_str(OLD_STATE).unwrap();
    let new: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // Fields an old file left out are written with their defaults.
    let p = &mut old["users"]["user-aabbccddeeff"];
    for (k, v) in [
        ("renewal", serde_json::Value::Null),
        ("removal", serde_json::Value::Null),
        ("puzzle", serde_json::Value::Null),
        ("published", false.into()),
        ("client_key", serde_json::Value::Null),
        ("linger", serde_json::Value::Null),
    ] {
        p[k] = v;
    }
    old["quarantine"] = serde_json::json!({});
    assert_eq!(new, old);
}

#[test]
fn given_a_state_file_with_a_bad_hash_or_name_then_it_is_refused_as_corrupt() {
    for (from, to) in [
        ("\"proof\": \"707172", "\"proof\": \"zz7172"),
        ("\"user\": \"user-aabbccddeeff\"", "\"user\": \"root\""),
        ("\"channel\": \"manual\"", "\"channel\": \"carrier-pigeon\""),
    ] {
        let w = world();
        let path = w.helper.cfg.state_dir.join("state.json");
        std::fs::write(&path, OLD_STATE.replace(from, to)).unwrap();
        let e = w.helper.store.lock().unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
    }
}

#[test]
fn given_durations_then_unix_times_add_and_compare_as_deadlines() {
    let t = UnixTime(10);
    assert_eq!(t.plus(Duration::from_secs(5)), UnixTime(15));
    assert!(!t.past(UnixTime(10)) && t.past(UnixTime(9)));
    assert_eq!(t.until(UnixTime(4)), 0);
    assert_eq!(UnixTime(u64::MAX).plus_secs(1), UnixTime(u64::MAX));
}

// ---- strangers: names codext never issued -------------------------------

#[test]
fn given_the_state_lock_held_then_unknown_names_are_refused_without_waiting_for_it() {
    let w = world();
    let i = w.issue();
    w.helper.answer(&i.answer(), "cli", T0).unwrap();
    let held = w.helper.store.lock().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let stranger = UserName::from_random([1, 2, 3, 4, 5, 6]);
            let v = w
                .helper
                .authenticate(&stranger, &Secret::copy_from(b"guess"), "198.18.0.1", T0)
                .unwrap();
            let k = w
                .helper
                .key_account(&stranger, "ssh-ed25519 AAAA", "198.18.0.1", T0)
                .unwrap();
            tx.send((v, k.0)).unwrap();
        });
        // Without the lock-free check the stranger queues behind the lock
        // until it is dropped below, and nothing arrives.
        let got = rx.recv_timeout(Duration::from_secs(30));
        drop(held);
        let (v, k) = got.expect("the stranger waited on the state lock");
        assert!(
            matches!(v, LoginOutcome::Reply(Verdict::Denied("unknown user"))),
            "{v:?}"
        );
        assert!(
            matches!(k, Verdict::Denied("not a live codext account")),
            "{k:?}"
        );
    });
    // The armed user is still known, and its password still logs in.
    w.password_and_useradd(&i);
    // Neither attempt wrote a line of its own (a key login would).
    assert!(w
        .events("verify")
        .iter()
        .all(|e| e["user"] == i.user.as_str()));
    assert!(
        w.events("key_login").is_empty(),
        "{:?}",
        w.events("key_login")
    );
}

#[test]
fn given_names_issued_and_removed_then_the_lock_free_check_follows_each_state_version() {
    let w = world();
    let a = w.issue();
    assert!(w.helper.store.may_know(a.user.as_str()));
    let stranger = UserName::from_random([9, 9, 9, 9, 9, 9]);
    assert!(!w.helper.store.may_know(stranger.as_str()));
    // A second name appears in a new version of the file.
    let b = w.issue();
    assert!(w.helper.store.may_know(b.user.as_str()));
    // Revoked: gone from the next version.
    w.helper.revoke(&a.user, "test", T0).unwrap();
    assert!(!w.helper.store.may_know(a.user.as_str()));
    assert!(w.helper.store.may_know(b.user.as_str()));
    // A file the check cannot parse sends the caller to the lock, which
    // reports it.
    let path = w.helper.cfg.state_dir.join("state.json");
    std::fs::write(&path, b"{ not json").unwrap();
    assert!(w.helper.store.may_know(stranger.as_str()));
    assert!(w
        .helper
        .authenticate(&stranger, &Secret::copy_from(b"x"), "::1", T0)
        .is_err());
}

/// Attempts at names codext knows but that change nothing (a pending name
/// is `not armed`, an active one's token is `already used`, an answer
/// with a wrong proof) come from anyone who learnt the name (names are
/// public in the channel), from as many sources as they have: they are
/// counted like strangers' attempts, one `refusals_summary` line per
/// request, name and result in a window, with exact counts.
#[test]
fn given_thousands_of_refused_attempts_at_known_names_from_many_sources_then_one_summary_line_per_name_and_result(
) {
    let w = world();
    let pending = w.user_in(Phase::Pending);
    let active = w.user_in(Phase::Active);
    let wrong_proof = format!("{}-00112233445566778899aabbccddeeff", pending.user);
    let before = w.audit().len();
    for i in 0..1000u32 {
        let source = format!("10.0.{}.{}", (i % 200) / 100, i % 200);
        let v = w
            .helper
            .authenticate(&pending.user, &pending.password(), &source, T0)
            .unwrap();
        assert!(
            matches!(v, LoginOutcome::Reply(Verdict::Denied("not armed"))),
            "{v:?}"
        );
        let v = w
            .helper
            .authenticate(&active.user, &active.password(), &source, T0)
            .unwrap();
        assert!(
            matches!(
                v,
                LoginOutcome::Reply(Verdict::Denied("token already used"))
            ),
            "{v:?}"
        );
        assert!(w.helper.answer(&wrong_proof, &source, T0).is_err());
    }
    assert_eq!(
        w.audit().len(),
        before,
        "3,000 refused attempts wrote {} lines before their window ended",
        w.audit().len() - before
    );
    w.helper
        .audit
        .flush_summaries(codext_core::time::now() + 3600)
        .unwrap();
    let added: Vec<serde_json::Value> = w.audit().into_iter().skip(before).collect();
    assert_eq!(added.len(), 3, "{added:#?}");
    let line = |request: &str, user: &UserName, result: &str| {
        added
            .iter()
            .find(|e| {
                e["event"] == "refusals_summary"
                    && e["request"] == request
                    && e["user"] == user.as_str()
                    && e["result"] == result
            })
            .unwrap_or_else(|| panic!("no summary of {request} {user} {result}: {added:#?}"))
            .clone()
    };
    for e in [
        line("verify", &pending.user, "not armed"),
        line("verify", &active.user, "token already used"),
        line("answer", &pending.user, "wrong proof"),
    ] {
        assert_eq!(e["count"], 1000, "{e}");
        assert_eq!(e["sources"], 200, "{e}");
    }
    // Nothing changed meanwhile: the pending user still waits, the active
    // one is still active.
    assert_eq!(w.phase(&pending.user), Some(Phase::Pending));
    assert_eq!(w.phase(&active.user), Some(Phase::Active));
}
