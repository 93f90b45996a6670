//! The audit trail cannot be written (the file system it lives on is full):
//! codext refuses logins — a login is granted only once its lines are
//! durable — and never removals, and logins resume when there is room
//! again. The trail lives on a small tmpfs of its own here, as an operator
//! might give `/var/log`.

use codext_tests::sandbox_test;
use codext_tests::world::{in_passwd, sh, World, HELPER_LOG};

/// Writes audit lines from the command line (an operator's answer for a
/// name nobody issued: one line each, recorded whatever happens) until one
/// cannot be written, so no room is left in the trail's last page either.
fn exhaust_the_trail() {
    for i in 0..200 {
        let out = World::helper_cli(&[
            "answer",
            &format!("user-{i:012x}-00112233445566778899aabbccddeeff"),
        ]);
        if String::from_utf8_lossy(&out.stderr).contains("audit log") {
            return;
        }
    }
    panic!("the trail could still be written after 200 lines on a full file system");
}

sandbox_test! {
    fn given_the_audit_trails_file_system_full_then_logins_are_refused_removals_go_on_and_logins_resume_with_room() {
        sh("mkdir -p /var/log/codext && mount -t tmpfs -o size=1m,mode=0700 codext-audit /var/log/codext");
        let w = World::new();
        let held = w.arm();
        let mut session = w.hold_session(&held.user, &held.password, 1);
        let waiting = w.arm();
        // Full: a file takes every free page, and lines take the rest.
        sh("dd if=/dev/zero of=/var/log/codext/filler bs=64k 2>/dev/null; true");
        exhaust_the_trail();

        // A login would go unrecorded: it is refused, and nothing is made.
        let out = w.ssh_password(&waiting.user, &waiting.password, "id -un");
        assert!(!out.status.success(), "a login succeeded with no room for its lines: {}", String::from_utf8_lossy(&out.stdout));
        assert!(!in_passwd(&waiting.user), "an account was made with no line for it");
        assert!(w.state()["users"].get(&waiting.user).is_none(), "{}", w.state());
        let log = std::fs::read_to_string(HELPER_LOG).unwrap();
        assert!(log.contains("refusing the login"), "{log}");

        // A removal is never refused: the session that was open ends and
        // its account goes (its lines wait for room).
        session.kill().unwrap();
        session.wait().unwrap();
        w.wait_removed(&held.user, held.uid);

        // Room again: logins resume, and the trail still verifies: what
        // happened while it was full (the removal, the held session's
        // sealed record) went in late, marked delayed, never the refused
        // login's lines.
        sh("rm /var/log/codext/filler");
        let again = w.arm();
        let out = w.ssh_password(&again.user, &again.password, "id -un");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        w.wait_removed(&again.user, again.uid);
        let verify = World::helper_cli(&["audit", "verify"]);
        assert!(verify.status.success(), "{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
        let trail = std::fs::read_to_string("/var/log/codext/audit.jsonl").unwrap();
        let delayed: Vec<serde_json::Value> = trail
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["delayed"] == true)
            .collect();
        let held_line = |event: &str| delayed.iter().any(|v| v["event"] == event && v["user"] == held.user.as_str());
        assert!(held_line("remove"), "the removal during the full trail was not recorded late: {delayed:?}");
        assert!(
            !trail.lines().any(|l| l.contains(&waiting.user) && (l.contains("\"event\":\"create\"") || l.contains("\"event\":\"login\""))),
            "the refused login left a line: {trail}"
        );
        sh("umount -l /var/log/codext");
    }
}
