//! Nothing codext creates outlives its purpose: time limits, crash and
//! reboot recovery with zero orphans, no uid reuse surprises, and accounts
//! codext did not create are never touched.

use codext_tests::sandbox_test;
use codext_tests::world::{in_passwd, processes_of, resolves, sh, wait_until, World};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// `pwck -r` and `grpck -r` complaints (a stock Debian already has some).
fn shadow_checks() -> BTreeSet<String> {
    let out = sh("pwck -r 2>&1; grpck -r 2>&1; true");
    out.lines().map(str::to_owned).collect()
}

/// No trace of any codext user: no account, no home, no record, no state.
fn assert_zero_orphans(w: &World) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(
        !passwd.lines().any(|l| l.starts_with("user-")),
        "accounts left:\n{passwd}"
    );
    let homes: Vec<String> = std::fs::read_dir("/home")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        homes.iter().all(|h| !h.starts_with("user-")),
        "homes left: {homes:?}"
    );
    let records: Vec<String> = std::fs::read_dir("/run/userdb")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(records.is_empty(), "records left: {records:?}");
    assert_eq!(w.state()["users"], serde_json::json!({}), "state left");
    for uid in codext_tests::uid(59000)..codext_tests::uid(59100) {
        assert!(processes_of(uid).is_empty(), "processes of uid {uid} left");
    }
}

fn wait_state_empty(w: &World, limit: Duration) {
    wait_until(limit, "the state to empty", || {
        w.state()["users"] == serde_json::json!({})
    });
}

fn events(w: &World, event: &str) -> Vec<serde_json::Value> {
    w.audit()
        .into_iter()
        .filter(|e| e["event"] == event)
        .collect()
}

sandbox_test! {
    fn given_unanswered_puzzle_then_it_expires_within_the_reaper_period() {
        let w = World::with_config("[ttl]\npuzzle = \"2s\"\n[limits]\nreaper_interval = \"1s\"\n");
        let (user, _) = w.issue();
        wait_state_empty(&w, Duration::from_secs(15));
        w.wait_audit("the expire event", |e| e["event"] == "expire" && e["user"] == user.as_str() && e["phase"] == "pending");
        assert!(!resolves(&user));
    }
}

sandbox_test! {
    fn given_armed_user_that_never_logs_in_then_record_withdrawn_at_expiry() {
        let w = World::with_config("[ttl]\narmed = \"2s\"\n[limits]\nreaper_interval = \"1s\"\n");
        let a = w.arm();
        assert!(resolves(&a.user));
        wait_state_empty(&w, Duration::from_secs(15));
        assert!(!resolves(&a.user), "the record outlived the armed time limit");
        w.wait_audit("the expire event", |e| e["event"] == "expire" && e["user"] == a.user.as_str() && e["phase"] == "armed");
        assert!(!w.ssh_password(&a.user, &a.password, "true").status.success());
    }
}

sandbox_test! {
    fn given_grant_expired_then_live_session_ended_and_account_removed() {
        let w = World::with_config("[ttl]\ngrant = \"3s\"\n[limits]\nreaper_interval = \"1s\"\n");
        let a = w.arm();
        let mut session = w.hold_session(&a.user, &a.password, 1);
        w.wait_removed(&a.user, a.uid);
        // The ssh client saw its session end.
        let status = session.wait().unwrap();
        assert!(!status.success());
        w.wait_audit("the expire event", |e| e["event"] == "expire" && e["user"] == a.user.as_str() && e["phase"] == "active");
    }
}

sandbox_test! {
    fn given_helper_killed_mid_session_and_restarted_then_logout_still_removes_everything() {
        let mut w = World::new();
        let baseline = shadow_checks();
        let a = w.arm();
        let mut session = w.hold_session(&a.user, &a.password, 1);
        w.kill_helper();
        w.start_helper();
        // Restarted: the live session is kept, not mistaken for an orphan.
        assert!(in_passwd(&a.user));
        assert_eq!(w.sessions_of(&a.user), 1);
        let _ = session.kill();
        let _ = session.wait();
        w.wait_removed(&a.user, a.uid);
        wait_state_empty(&w, Duration::from_secs(10));
        assert_zero_orphans(&w);
        assert_eq!(shadow_checks(), baseline);
    }
}

sandbox_test! {
    fn given_helper_killed_after_logout_before_removal_then_restart_removes_the_orphan() {
        let mut w = World::new();
        let baseline = shadow_checks();
        let a = w.arm();
        let mut session = w.hold_session(&a.user, &a.password, 1);
        // The helper dies first; then the session ends with nobody to tell.
        w.kill_helper();
        let _ = session.kill();
        let _ = session.wait();
        wait_until(Duration::from_secs(10), "sshd's monitor to exit", || {
            let pid = w.state()["users"][a.user.as_str()]["sessions"][0]["pid"].as_u64().unwrap();
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        assert!(in_passwd(&a.user), "nobody could have removed it yet");
        w.start_helper();
        w.wait_removed(&a.user, a.uid);
        wait_state_empty(&w, Duration::from_secs(10));
        assert_zero_orphans(&w);
        w.wait_audit("the orphan event", |e| e["event"] == "orphan" && e["user"] == a.user.as_str());
        assert_eq!(shadow_checks(), baseline);
    }
}

sandbox_test! {
    fn given_sshd_monitor_killed_then_its_session_is_noticed_at_once_and_the_account_removed() {
        // A reaper that runs once a minute: only the pidfd watcher can be
        // this quick.
        let w = World::with_config("[limits]\nreaper_interval = \"60s\"\n");
        let a = w.arm();
        let mut session = w.hold_session(&a.user, &a.password, 1);
        let monitor = w.state()["users"][a.user.as_str()]["sessions"][0]["pid"].as_u64().unwrap();
        let cmdline = std::fs::read_to_string(format!("/proc/{monitor}/cmdline")).unwrap();
        assert!(cmdline.contains("sshd"), "session pid {monitor} is {cmdline:?}, not sshd's monitor");
        let start = Instant::now();
        sh(&format!("kill -KILL {monitor}"));
        w.wait_removed(&a.user, a.uid);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(30), "took {took:?}");
        eprintln!("monitor killed -> account removed in {took:?}");
        let _ = session.wait();
        w.wait_audit("the session_lost event", |e| e["event"] == "session_lost" && e["user"] == a.user.as_str());
    }
}

sandbox_test! {
    fn given_simulated_reboot_then_orphans_removed_and_armed_users_announced_again() {
        let mut w = World::new();
        let baseline = shadow_checks();
        let armed = w.arm();
        let active = w.arm();
        let mut session = w.hold_session(&active.user, &active.password, 1);
        // Power cut: every process dies, /run is empty again; /etc and
        // /var/lib (the state) survive.
        w.kill_helper();
        sh("pkill -KILL -x sshd || true");
        sh(&format!("pkill -KILL -u {} || true", active.uid));
        let _ = session.wait();
        sh("rm -rf /run/userdb/* /run/codext");
        assert!(!resolves(&armed.user));
        w.start_helper();
        w.restart_sshd();
        // The logged-in user's account is an orphan: removed.
        w.wait_removed(&active.user, active.uid);
        // The armed user is announced again and can still log in.
        wait_until(Duration::from_secs(10), "the armed user's record", || resolves(&armed.user));
        let out = w.login(&armed.puzzle, &["id -un"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), armed.user);
        w.wait_removed(&armed.user, armed.uid);
        wait_state_empty(&w, Duration::from_secs(10));
        assert_zero_orphans(&w);
        assert_eq!(shadow_checks(), baseline);
    }
}

sandbox_test! {
    fn given_a_hundred_logins_some_concurrent_then_zero_orphans_and_shadow_files_consistent() {
        let w = World::new();
        let baseline = shadow_checks();
        let start = Instant::now();
        let mut done = 0;
        // 60 one at a time, then 10 rounds of 4 at once.
        for _ in 0..60 {
            let a = w.arm();
            let out = w.login(&a.puzzle, &["id -u"]);
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), a.uid.to_string(), "{}", String::from_utf8_lossy(&out.stderr));
            done += 1;
        }
        for _ in 0..10 {
            let users: Vec<_> = (0..4).map(|_| w.arm()).collect();
            std::thread::scope(|s| {
                let handles: Vec<_> = users.iter().map(|a| s.spawn(|| w.login(&a.puzzle, &["id -u"]))).collect();
                for (a, h) in users.iter().zip(handles) {
                                        let out = h.join().unwrap();
                    assert_eq!(
                        String::from_utf8_lossy(&out.stdout).trim(),
                        a.uid.to_string(),
                        "{}: {}",
                        a.user,
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            });
            done += 4;
        }
        assert_eq!(done, 100);
        wait_state_empty(&w, Duration::from_secs(60));
        assert_zero_orphans(&w);
        assert_eq!(shadow_checks(), baseline);
        assert_eq!(events(&w, "create").len(), 100);
        wait_until(Duration::from_secs(10), "a remove event for each", || events(&w, "remove").len() >= 100);
        assert_eq!(events(&w, "remove").len(), 100);
        let ok = std::process::Command::new(codext_tests::bin("codext-helper")).args(["audit", "verify"]).output().unwrap();
        assert!(ok.status.success());
        eprintln!("100 logins in {:?}", start.elapsed());
    }
}

sandbox_test! {
    fn given_accounts_not_created_by_codext_named_user_or_in_the_range_then_never_touched() {
        let mut w = World::new();
        // An operator's own accounts: a user-… name inside the range, and
        // a plain name on the next uid codext would hand out.
        sh(&format!("useradd --uid {} --create-home user-0123456789ab && useradd --uid {} --create-home bob", codext_tests::uid(59000), codext_tests::uid(59001)));
        sh("su -s /bin/sh -c 'touch /tmp/owned-by-them' user-0123456789ab");
        let a = w.arm();
        assert!(a.uid > codext_tests::uid(59001), "codext handed out a uid NSS already knows ({})", a.uid);
        let out = World::helper_cli(&["revoke", "user-0123456789ab"]);
        assert!(!out.status.success());
        let out = w.login(&a.puzzle, &["true"]);
        assert!(out.status.success());
        w.wait_removed(&a.user, a.uid);
        // A restart reconciles; a reaper pass runs; still untouched.
        w.kill_helper();
        w.start_helper();
        let b = w.arm();
        let out = w.login(&b.puzzle, &["true"]);
        assert!(out.status.success());
        w.wait_removed(&b.user, b.uid);
        assert!(in_passwd("user-0123456789ab") && in_passwd("bob"));
        assert!(std::path::Path::new("/home/user-0123456789ab").exists());
        assert!(std::path::Path::new("/tmp/owned-by-them").exists());
    }
}

sandbox_test! {
    fn given_consecutive_users_then_uids_move_forward_and_a_removed_uid_is_not_handed_out_again() {
        let w = World::new();
        let first = w.arm();
        let out = w.login(&first.puzzle, &["touch /tmp/mine /dev/shm/mine"]);
        assert!(out.status.success());
        w.wait_removed(&first.user, first.uid);
        let mut uids = vec![first.uid];
        for _ in 0..3 {
            let (user, _) = w.issue();
            uids.push(w.state()["users"][user.as_str()]["uid"].as_u64().unwrap() as u32);
        }
        assert!(uids.windows(2).all(|p| p[1] > p[0]), "uids {uids:?} are not monotonic");
        assert!(!uids[1..].contains(&first.uid));
    }
}

sandbox_test! {
    fn given_account_creation_failing_halfway_then_login_denied_and_the_half_made_account_removed() {
        // useradd adds the user but cannot make a home inside a file
        // (exit 12): a half-made account codext must not leave behind.
        let w = World::with_config("[accounts]\nhome_base = \"/etc/hostname\"\n[limits]\nreaper_interval = \"1s\"\n");
        let baseline = shadow_checks();
        let a = w.arm();
        let out = w.login(&a.puzzle, &["true"]);
        assert!(!out.status.success(), "logged in without a home");
        w.wait_audit("the create event", |e| e["event"] == "create" && e["user"] == a.user.as_str() && e["result"] == "failed");
        wait_state_empty(&w, Duration::from_secs(20));
        assert!(!in_passwd(&a.user), "the half-made account was left behind");
        assert_zero_orphans(&w);
        assert_eq!(shadow_checks(), baseline);
    }
}
