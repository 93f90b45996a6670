//! The just-in-time login, for real: sshd, PAM, pam_codext, codext-helper,
//! useradd/userdel and the stock ssh client, inside the sandbox.

use codext_tests::sandbox_test;
use codext_tests::world::{in_passwd, processes_of, resolves, wait_until, World};
use std::time::Duration;

sandbox_test! {
    fn given_armed_user_when_ssh_with_token_then_logged_in_with_announced_uid_and_removed_after_logout() {
        let w = World::new();
        let a = w.arm();
        assert!(resolves(&a.user), "an armed user resolves through the userdb record");
        assert!(!in_passwd(&a.user), "no account exists before the login");
        let out = w.login(&a.puzzle, &["id -u; id -un; nohup sleep 1000 >/dev/null 2>&1 </dev/null &"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "login failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stdout.lines().collect::<Vec<_>>(), vec![a.uid.to_string(), a.user.clone()]);
        // A clean login says nothing of codext's own on stderr (ssh's
        // first host-key question once printed a spurious complaint).
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("codext:"), "{stderr}");
        w.wait_removed(&a.user, a.uid);
        assert!(processes_of(a.uid).is_empty());
    }
}

sandbox_test! {
    fn given_wrong_passwords_then_denied_nothing_created_and_after_the_third_the_token_is_dead() {
        let w = World::new();
        let a = w.arm();
        for i in 1..=3 {
            let out = w.ssh_password(&a.user, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "true");
            assert!(!out.status.success(), "wrong password {i} let the user in");
            assert!(!in_passwd(&a.user), "a wrong password created the account");
            if i < 3 {
                assert!(resolves(&a.user), "still armed after {i} wrong passwords");
            }
        }
        assert!(!resolves(&a.user), "revoked after 3 wrong passwords: the record is withdrawn");
        let out = w.ssh_password(&a.user, &a.password, "true");
        assert!(!out.status.success(), "the right token still worked after the attempt limit");
        assert!(!in_passwd(&a.user));
    }
}

sandbox_test! {
    fn given_used_token_then_a_second_login_with_it_fails_even_while_the_first_session_runs() {
        let w = World::new();
        let a = w.arm();
        let mut first = w.hold_session(&a.user, &a.password, 1);
        let second = w.ssh_password(&a.user, &a.password, "true");
        assert!(!second.status.success(), "a used token logged in again");
        assert_eq!(w.sessions_of(&a.user) as u64, 1);
        let _ = first.kill();
        let _ = first.wait();
        w.wait_removed(&a.user, a.uid);
    }
}

sandbox_test! {
    fn given_unanswered_puzzle_then_name_does_not_resolve_and_login_fails() {
        let w = World::new();
        let (user, puzzle) = w.issue();
        let solved = w.solve(&puzzle);
        assert!(!resolves(&user), "a pending user must not resolve before a proven answer");
        let out = w.ssh_password(&user, solved["password"].as_str().unwrap(), "true");
        assert!(!out.status.success());
        assert!(!in_passwd(&user));
        // sshd saw an invalid user and never handed the real password to PAM.
        let log = std::fs::read_to_string(codext_tests::world::SSHD_LOG).unwrap();
        assert!(log.contains(&format!("Invalid user {user}")), "{log}");
    }
}

sandbox_test! {
    fn given_two_sessions_of_one_user_then_account_survives_the_first_logout_and_goes_after_the_second() {
        let w = World::new();
        let a = w.arm();
        let mut first = w.hold_session(&a.user, &a.password, 1);
        // A second connection needs a second token: a renewal puzzle for
        // the live user, to the same agent key.
        let out = World::helper_cli(&["issue", "--client-key", "/home/agent/agent.key.pub", "--user", &a.user, "--json"]);
        assert!(out.status.success(), "renewal: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["user"], a.user.as_str());
        let puzzle = v["puzzle"].as_str().unwrap().to_owned();
        let solved = w.solve(&puzzle);
        let ans = World::helper_cli(&["answer", solved["answer"].as_str().unwrap()]);
        assert!(ans.status.success(), "{}", String::from_utf8_lossy(&ans.stderr));
        let mut second = w.hold_session(&a.user, solved["password"].as_str().unwrap(), 2);
        let _ = first.kill();
        let _ = first.wait();
        wait_until(Duration::from_secs(20), "the first session to close", || w.sessions_of(&a.user) as u64 == 1);
        assert!(in_passwd(&a.user), "the account went with the first of two sessions");
        assert!(!processes_of(a.uid).is_empty(), "the second session's processes were killed");
        let _ = second.kill();
        let _ = second.wait();
        w.wait_removed(&a.user, a.uid);
    }
}

sandbox_test! {
    fn given_processes_that_fork_respawn_or_double_fork_with_setsid_then_all_gone_after_logout() {
        let w = World::new();
        let a = w.arm();
        let script = concat!(
            // A process that forks itself over and over.
            "nohup sh -c 'while :; do sleep 1000 & sleep 0.01; done' >/dev/null 2>&1 </dev/null & ",
            // One that respawns its child and ignores the polite signals.
            "nohup sh -c 'trap \"\" HUP TERM INT; while :; do sleep 1000; done' >/dev/null 2>&1 </dev/null & ",
            // A double fork into a new session, detached from sshd.
            "setsid sh -c 'setsid sleep 1000 >/dev/null 2>&1 </dev/null &' >/dev/null 2>&1 </dev/null; ",
            // Files outside the home.
            "touch /tmp/left-behind /var/tmp/left-behind /dev/shm/left-behind; mkdir -p /tmp/dir-of-mine/sub; ",
            "echo started"
        );
        let out = w.login(&a.puzzle, &[script]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "started");
        w.wait_removed(&a.user, a.uid);
        assert!(!std::path::Path::new("/tmp/left-behind").exists());
        assert!(!std::path::Path::new("/tmp/dir-of-mine").exists());
        // Nothing of the uid respawned after removal.
        assert!(processes_of(a.uid).is_empty());
    }
}

sandbox_test! {
    fn given_codext_user_then_one_group_home_0700_and_the_shipped_limits() {
        let w = World::new();
        let a = w.arm();
        let out = w.login(&a.puzzle, &["ulimit -Hu; ulimit -Hn; id -G; id -g -n; stat -c %a \"$HOME\""]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        let gid = codext_tests::world::sh("getent group codext | cut -d: -f3");
        assert_eq!(lines, vec!["512", "4096", gid.trim(), "codext", "700"]);
        w.wait_removed(&a.user, a.uid);
    }
}

sandbox_test! {
    fn given_logged_in_user_when_revoked_then_its_sessions_end_and_the_account_goes() {
        let w = World::new();
        let a = w.arm();
        let mut session = w.hold_session(&a.user, &a.password, 1);
        let out = World::helper_cli(&["revoke", &a.user]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // Revoke returns once the account is gone.
        assert!(!in_passwd(&a.user));
        assert!(processes_of(a.uid).is_empty());
        assert!(!session.wait().unwrap().success(), "the session survived the revoke");
        w.wait_removed(&a.user, a.uid);
        assert!(w.audit().iter().any(|e| e["event"] == "revoke" && e["user"] == a.user.as_str()));
    }
}
