//! A whole task on one grant, for real: `codext open` leaves an
//! OpenSSH ControlMaster; stock ssh, scp, rsync, git and sftp go through
//! it as one PAM session; the agent reconnects with its key within the
//! grant and the linger; every other key, user and time is refused.

use codext_tests::sandbox_test;
use codext_tests::world::{in_passwd, processes_of, run, sh, wait_until, World, WORK};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const AGENT_PUB: &str = "/home/agent/agent.key.pub";

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `codext open --json … PUZZLE` as the agent; its event lines.
fn open(w: &World, puzzle: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    args.push(puzzle);
    let out = w.agent_open("web1", &args);
    ok(&out, "codext open")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event line"))
        .collect()
}

/// A stock program run by the agent in its home (no codext involved).
fn agent(w: &World, program: &str, args: &[&str]) -> Output {
    run(w.as_agent(Command::new(program).args(args)))
}

fn agent_sh(w: &World, script: &str) -> Output {
    agent(w, "/bin/sh", &["-c", script])
}

fn count(w: &World, event: &str, user: &str) -> usize {
    w.audit()
        .iter()
        .filter(|e| e["event"] == event && e["user"] == user)
        .count()
}

/// pid of the live master of the alias.
fn master_pid(w: &World) -> u32 {
    let out = agent(w, "ssh", &["-O", "check", "codext-web1"]);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.split("pid=")
        .nth(1)
        .and_then(|r| r.trim_end_matches([')', '\n', '\r']).trim().parse().ok())
        .unwrap_or_else(|| panic!("no master: {text}"))
}

fn lingering(w: &World, user: &str) -> bool {
    w.state()["users"][user]["linger"]["until"].is_u64()
}

sandbox_test! {
    fn given_open_then_50_commands_scp_rsync_git_and_sftp_share_one_session_and_close_removes_the_account_within_10s() {
        let w = World::new();
        let a = w.arm();
        let events = open(&w, &a.puzzle, &[]);
        let connected = events.iter().find(|e| e["event"] == "connected").expect("a connected event");
        assert_eq!(connected["host_alias"], "codext-web1");
        assert_eq!(connected["user"], a.user.as_str());
        assert!(events.iter().any(|e| e["event"] == "solved"), "{events:?}");
        let config = std::fs::read_to_string("/home/agent/.ssh/config").unwrap();
        assert_eq!(config.lines().find(|l| !l.starts_with('#')), Some("Include ~/.ssh/codext/*.conf"), "{config}");

        let started = Instant::now();
        for i in 0..50 {
            let out = agent(&w, "ssh", &["codext-web1", &format!("echo {i}; id -un")]);
            assert_eq!(ok(&out, "ssh via the alias"), format!("{i}\n{}\n", a.user));
        }
        let fifty = started.elapsed();
        // scp both ways.
        ok(&agent_sh(&w, "head -c 100000 /dev/urandom > up.bin"), "make a file");
        ok(&agent(&w, "scp", &["-q", "up.bin", "codext-web1:up.bin"]), "scp up");
        ok(&agent(&w, "scp", &["-q", "codext-web1:up.bin", "down.bin"]), "scp down");
        ok(&agent(&w, "cmp", &["up.bin", "down.bin"]), "scp round trip");
        // rsync over ssh.
        ok(&agent_sh(&w, "mkdir -p tree/a/b && echo one > tree/a/b/f && echo two > tree/g"), "make a tree");
        ok(&agent(&w, "rsync", &["-a", "-e", "ssh", "tree/", "codext-web1:tree/"]), "rsync");
        assert_eq!(ok(&agent(&w, "ssh", &["codext-web1", "cat tree/a/b/f tree/g"]), "read back"), "one\ntwo\n");
        // git push to a bare repository in the temporary home.
        ok(&agent(&w, "ssh", &["codext-web1", "git init -q --bare repo.git"]), "git init --bare");
        ok(&agent_sh(&w, "git init -q work && cd work && echo hi > f && git add f && git -c user.name=a -c user.email=a@example.com commit -qm first && git push -q codext-web1:repo.git HEAD:refs/heads/main"), "git push");
        let log = ok(&agent(&w, "ssh", &["codext-web1", "git --git-dir=repo.git log --format=%s main"]), "git log");
        assert_eq!(log, "first\n");
        // sftp.
        ok(&agent_sh(&w, "printf 'put up.bin sftp.bin\\nget sftp.bin back.bin\\nls\\n' > batch && sftp -q -b batch codext-web1 >/dev/null && cmp up.bin back.bin"), "sftp");

        // One account, one connection, one PAM session for all of it.
        assert_eq!(count(&w, "create", &a.user), 1);
        assert_eq!(count(&w, "session_open", &a.user), 1, "every command rode the master");
        assert_eq!(count(&w, "session_close", &a.user), 0);
        assert_eq!(w.sessions_of(&a.user), 1);

        let close = w.agent_cli(&["close", "web1", "--json"]);
        ok(&close, "codext close");
        let closed = Instant::now();
        wait_until(Duration::from_secs(10), "the account to go after close", || !in_passwd(&a.user) && w.state()["users"].get(&a.user).is_none());
        let gone = closed.elapsed();
        w.wait_removed(&a.user, a.uid);
        assert_eq!(count(&w, "session_open", &a.user), 1);
        assert_eq!(count(&w, "session_close", &a.user), 1, "exactly one session pair");
        assert!(!Path::new("/home/agent/.ssh/codext/web1.conf").exists(), "close removes the alias");
        assert!(!Path::new(&format!("/run/codext-keys/{}", a.user)).exists(), "the grant key goes with the account");
        println!("figures: 50 commands through the master {fifty:?}; account gone {gone:?} after close");
    }
}

sandbox_test! {
    fn given_master_killed_then_the_key_reconnects_within_the_linger_with_no_new_puzzle_and_is_refused_after_it() {
        let w = World::with_config("version = 1\n[limits]\nreaper_interval = \"1s\"\n[ttl]\nlinger_max = \"1m\"\n");
        let a = w.arm();
        open(&w, &a.puzzle, &["--linger", "6s"]);
        ok(&agent(&w, "ssh", &["codext-web1", "nohup sleep 1000 >/dev/null 2>&1 </dev/null & echo started"]), "a process left running");
        ok(&agent(&w, "kill", &["-9", &master_pid(&w).to_string()]), "kill the master");
        wait_until(Duration::from_secs(20), "the linger", || lingering(&w, &a.user));
        assert!(in_passwd(&a.user), "the account lingers");
        assert!(processes_of(a.uid).is_empty(), "no process survives the last session, linger or not");

        // A plain ssh: the alias makes it the new master, by key.
        let out = agent(&w, "ssh", &["codext-web1", "id -un; pgrep -u $(id -u) -x sleep | wc -l"]);
        assert_eq!(ok(&out, "key reconnect"), format!("{}\n0\n", a.user));
        assert_eq!(w.audit().iter().filter(|e| e["event"] == "issue").count(), 1, "no new puzzle");
        let fp = run(Command::new("ssh-keygen").args(["-lf", AGENT_PUB]));
        let fp = String::from_utf8_lossy(&fp.stdout).split_whitespace().nth(1).unwrap().to_owned();
        assert!(w.audit().iter().any(|e| e["event"] == "key_login" && e["user"] == a.user.as_str() && e["result"] == "ok" && e["fingerprint"] == fp.as_str()),
            "key login audited with the fingerprint {fp}: {:?}", w.audit().iter().filter(|e| e["event"] == "key_login").collect::<Vec<_>>());
        assert_eq!(count(&w, "session_open", &a.user), 2);

        // Drop it again and let the linger run out.
        ok(&agent(&w, "kill", &["-9", &master_pid(&w).to_string()]), "kill the new master");
        wait_until(Duration::from_secs(20), "the second linger", || lingering(&w, &a.user));
        w.wait_removed(&a.user, a.uid);
        let out = agent(&w, "ssh", &["codext-web1", "true"]);
        assert!(!out.status.success(), "a key login after the linger got in");
    }
}

sandbox_test! {
    fn given_grant_keys_then_only_the_grant_key_of_that_user_within_the_grant_gets_in() {
        let w = World::new();
        let agent_key = w.agent_key.clone();
        let a = w.arm();
        // Before the first token login there is no key file: refused.
        assert!(!w.ssh_key(&a.user, &agent_key, "true").status.success(), "the puzzle key before the token login");
        let mut held = w.hold_session(&a.user, &a.password, 1);
        let keyfile = format!("/run/codext-keys/{}", a.user);
        let line = std::fs::read_to_string(&keyfile).unwrap();
        assert!(line.starts_with("restrict,pty,expiry-time=\""), "{line}");
        sh(&format!("stat -c '%U %a' {keyfile} | grep -qx 'root 644' && stat -c '%U %a' /run/codext-keys | grep -qx 'root 711'"));
        assert_eq!(ok(&w.ssh_key(&a.user, &agent_key, "id -un"), "the grant key"), format!("{}\n", a.user));

        // Keys of the agent's own making, in its own authorized_keys(2).
        let own = format!("{WORK}/own");
        ok(&run(Command::new(codext_tests::bin("codext")).args(["keygen", "--key", &own])), "codext keygen");
        sh(&format!("mkdir -p /home/{u}/.ssh && cp {own}.pub /home/{u}/.ssh/authorized_keys && cp {own}.pub /home/{u}/.ssh/authorized_keys2 && chown -R {u}: /home/{u}/.ssh && chmod 700 /home/{u}/.ssh", u = a.user));
        assert!(!w.ssh_key(&a.user, Path::new(&own), "true").status.success(), "a key the agent wrote for itself");

        // Another codext user, another agent key: neither key crosses over.
        let out = World::helper_cli(&["issue", "--client-key", &format!("{own}.pub"), "--json"]);
        let b: Value = serde_json::from_slice(&out.stdout).expect("issue json");
        let b_user = b["user"].as_str().unwrap().to_owned();
        let solved = run(Command::new(codext_tests::bin("codext")).args(["solve", "--key", &own, "--server-key", &w.server_pub.to_string_lossy(), "--json", "--password", b["puzzle"].as_str().unwrap()]));
        let solved: Value = serde_json::from_slice(&solved.stdout).expect("solve json");
        ok(&World::helper_cli(&["answer", solved["answer"].as_str().unwrap()]), "answer b");
        let mut held_b = w.hold_session(&b_user, solved["password"].as_str().unwrap(), 1);
        assert!(w.ssh_key(&b_user, Path::new(&own), "true").status.success(), "b's own grant key");
        assert!(!w.ssh_key(&b_user, &agent_key, "true").status.success(), "a's key for b");

        // After the grant: the line's expiry-time, enforced by sshd even
        // though the file is still there (written here already past).
        let kept = std::fs::read_to_string(&keyfile).unwrap();
        let at = kept.find("expiry-time=\"").unwrap() + 13;
        std::fs::write(&keyfile, format!("{}20000101000000Z{}", &kept[..at], &kept[at + 15..])).unwrap();
        let before = std::fs::read_to_string(codext_tests::world::SSHD_LOG).unwrap().len();
        assert!(!w.ssh_key(&a.user, &agent_key, "true").status.success(), "a key past its expiry-time");
        let log = std::fs::read_to_string(codext_tests::world::SSHD_LOG).unwrap();
        assert!(log[before..].contains("Refused by key options"), "sshd refused it by its expiry-time: {}", &log[before..]);

        // The helper's own check: a key sshd would accept (someone put it
        // in root's key file) that is not the grant's agent key. sshd goes
        // on with a restricted session when PAM refuses to open one, so
        // the helper revokes the grant: the command never finishes.
        std::fs::write(&keyfile, format!("{}\n", std::fs::read_to_string(format!("{own}.pub")).unwrap().trim())).unwrap();
        let out = w.ssh_key(&a.user, Path::new(&own), "sleep 5; echo survived");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("survived"), "a key that is not the grant's ran a command");
        assert!(w.audit().iter().any(|e| e["event"] == "key_login" && e["user"] == a.user.as_str() && e["result"] == "not the grant's agent key"));
        w.wait_removed(&a.user, a.uid);
        assert!(!Path::new(&keyfile).exists(), "the key file goes with the account");
        let _ = held.kill();
        let _ = held.wait();
        let _ = held_b.kill();
        let _ = held_b.wait();
    }
}

sandbox_test! {
    fn given_the_grant_ends_then_the_master_and_the_account_go_and_the_key_is_refused_despite_a_linger() {
        let w = World::with_config("version = 1\n[limits]\nreaper_interval = \"1s\"\n[ttl]\ngrant = \"8s\"\nlinger_max = \"8s\"\n");
        let a = w.arm();
        let events = open(&w, &a.puzzle, &["--linger", "8s"]);
        let connected = events.iter().find(|e| e["event"] == "connected").expect("connected");
        assert!(connected["seconds_left"].as_u64().is_some_and(|s| s <= 8), "the agent keeps the key no longer than the grant: {connected}");
        ok(&agent(&w, "ssh", &["codext-web1", "true"]), "a command within the grant");
        w.wait_removed(&a.user, a.uid);
        w.wait_audit("the expire event", |e| e["event"] == "expire" && e["user"] == a.user.as_str() && e["phase"] == "active");
        assert!(!agent(&w, "ssh", &["codext-web1", "true"]).status.success(), "a key login after the grant");
    }
}

sandbox_test! {
    fn given_an_idle_master_then_it_ends_by_itself_and_with_no_linger_the_account_goes() {
        let w = World::new();
        let a = w.arm();
        open(&w, &a.puzzle, &["--idle", "2s"]);
        ok(&agent(&w, "ssh", &["codext-web1", "true"]), "a command");
        // ControlPersist 2: the master leaves after 2 s with no command;
        // its session is the last, the linger 0, so the account goes.
        w.wait_removed(&a.user, a.uid);
        assert_eq!(count(&w, "session_close", &a.user), 1);
    }
}

sandbox_test! {
    fn given_a_stray_grant_key_then_the_helper_removes_it_when_it_starts() {
        let mut w = World::new();
        w.kill_helper();
        std::fs::create_dir_all("/run/codext-keys").unwrap();
        std::fs::write("/run/codext-keys/user-000000000000", std::fs::read_to_string(AGENT_PUB).unwrap()).unwrap();
        w.start_helper();
        assert!(!Path::new("/run/codext-keys/user-000000000000").exists(), "a key with no live grant behind it");
    }
}

sandbox_test! {
    fn given_the_user_overrides_ssh_auth_info_0_in_its_pam_environment_then_a_foreign_key_login_is_still_checked_audited_and_revoked() {
        let w = World::new();
        let agent_key = w.agent_key.clone();
        let a = w.arm();
        let mut held = w.hold_session(&a.user, &a.password, 1);
        // The user, within its grant, tells pam_env (Debian's sshd stack
        // runs it with user_readenv=1) to replace what sshd says about
        // the key that logged in.
        ok(&w.ssh_key(&a.user, &agent_key, "printf 'SSH_AUTH_INFO_0 OVERRIDE=password\\n' > ~/.pam_environment"), "writing ~/.pam_environment");
        // A key that is not the grant's gets into root's key file.
        let own = format!("{WORK}/own");
        ok(&run(Command::new(codext_tests::bin("codext")).args(["keygen", "--key", &own])), "codext keygen");
        let keyfile = format!("/run/codext-keys/{}", a.user);
        std::fs::write(&keyfile, format!("{}\n", std::fs::read_to_string(format!("{own}.pub")).unwrap().trim())).unwrap();
        let fp = sh(&format!("ssh-keygen -l -f {own}.pub | cut -d' ' -f2")).trim().to_owned();
        let out = w.ssh_key(&a.user, Path::new(&own), "sleep 5; echo survived");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("survived"), "a key that is not the grant's ran a command");
        w.wait_audit("the foreign key's login line", |e| e["event"] == "key_login" && e["user"] == a.user.as_str()
            && e["result"] == "not the grant's agent key" && e["fingerprint"] == fp.as_str());
        w.wait_removed(&a.user, a.uid);
        let _ = held.kill();
        let _ = held.wait();
    }
}
