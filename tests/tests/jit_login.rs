//! The just-in-time login, for real: sshd, PAM, pam_codext, codext-helper,
//! useradd/userdel and the stock ssh client, inside the sandbox.

use codext_tests::sandbox_test;
use codext_tests::world::{processes_of, resolves, World};

sandbox_test! {
    fn given_armed_user_when_ssh_with_token_then_logged_in_with_announced_uid_and_removed_after_logout() {
        let w = World::new();
        let a = w.arm();
        assert!(resolves(&a.user), "an armed user resolves through the userdb record");
        let out = w.login(&a.puzzle, &["id -u; id -un; nohup sleep 1000 >/dev/null 2>&1 </dev/null &"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "login failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stdout.lines().collect::<Vec<_>>(), vec![a.uid.to_string(), a.user.clone()]);
        w.wait_removed(&a.user, a.uid);
        assert!(processes_of(a.uid).is_empty());
        if std::env::var_os("CODEXT_TEST_VERBOSE").is_some() { w.dump_logs(); }
    }
}
