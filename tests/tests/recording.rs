//! (issue 23) Session recording, for real: every channel of every codext
//! session runs through the recorder (the accounts' login shell) and is
//! streamed to the helper, stored root-only, its SHA-256 in the audit
//! trail; the operator lists, shows, plays and exports it.

use codext_tests::sandbox_test;
use codext_tests::world::{sh, World};

sandbox_test! {
    fn given_a_remote_command_then_its_record_has_the_command_output_and_exit() {
        let w = World::new();
        let a = w.arm();
        let out = w.login(&a.puzzle, &["echo hello-out; echo hello-err >&2; exit 3"]);
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello-out\n");
        let rec = w.wait_audit("the record line", |e| e["event"] == "record" && e["user"] == a.user.as_str());
        eprintln!("{rec}");
        eprintln!("{}", sh("ls -la /var/lib/codext/recordings; cat /var/lib/codext/recordings/*.rec"));
        w.wait_removed(&a.user, a.uid);
    }
}
