//! The kernel keyrings a removed user leaves (issue 22): since Linux 5.3 a
//! uid's user keyring, user session keyring and persistent keyring outlive
//! its last process, so the next holder of the uid would read the keys
//! its predecessor put there. Played with raw `add_key`/`keyctl` calls
//! through perl (perl-base is essential on Debian; keyutils is not), as the
//! hostile user, then as the next holder of the same uid (a range of one).
//! The systemd tier (`scripts/systemd-test.sh`, case 2) plays the same with
//! `keyctl` on a booted host.

use codext_tests::sandbox_test;
use codext_tests::world::World;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// x86_64 system call numbers (asm/unistd_64.h) and keyctl constants
/// (linux/keyctl.h), for perl's `syscall`.
const PERL_KEYS: &str = r#"
use strict;
my ($ADD_KEY, $KEYCTL) = (248, 250);
my ($GET_KEYRING_ID, $SEARCH, $READ, $GET_PERSISTENT) = (0, 10, 11, 22);
my ($USER, $USER_SESSION, $PROCESS) = (-4, -5, -2);
# syscall() passes strings by address and wants them writable: copies.
sub add { my ($desc, $ring) = @_; my ($t, $d, $v) = ("user", "$desc", "secret-$desc"); return syscall($ADD_KEY, $t, $d, $v, length($v), $ring); }
sub search { my ($ring, $desc) = @_; my ($t, $d) = ("user", "$desc"); return syscall($KEYCTL, $SEARCH, $ring, $t, $d, 0); }
sub readable { my $id = shift; my $buf = "\0" x 64; return syscall($KEYCTL, $READ, $id, $buf, 64) >= 0 ? 1 : 0; }
sub persistent { return syscall($KEYCTL, $GET_PERSISTENT, -1, $PROCESS); }
"#;

sandbox_test! {
    fn given_keys_in_a_users_keyrings_then_its_next_holder_finds_and_reads_none_of_them() {
        let w = World::with_config("[accounts]\nuid_min = 59000\nuid_max = 59000\n");
        let a = w.arm();
        let plant = format!(
            r#"perl -e '{PERL_KEYS}
my $p = persistent();
print join(" ", add("codext-pred-u", $USER), add("codext-pred-us", $USER_SESSION), $p < 0 ? -1 : add("codext-pred-p", $p)), "\n";'"#
        );
        let out = w.ssh_password(&a.user, &a.password, &plant);
        let ids: Vec<i64> = stdout(&out)
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect();
        assert_eq!(ids.len(), 3, "{out:?}");
        assert!(ids[0] > 0 && ids[1] > 0, "add_key failed: {ids:?}");
        w.wait_removed(&a.user, a.uid);
        // Without the fix these keys stay: the kernel keeps the keyrings of
        // a uid with no process (measured on 6.x).
        let b = w.arm();
        assert_eq!(b.uid, a.uid, "a range of one uid hands the same uid out");
        let look = format!(
            r#"perl -e '{PERL_KEYS}
my $p = persistent();
print join(" ", search($USER, "codext-pred-u"), search($USER_SESSION, "codext-pred-us"),
    $p < 0 ? -1 : search($p, "codext-pred-p"), map {{ $_ > 0 ? readable($_) : 0 }} ({ids})), "\n";'"#,
            ids = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
        );
        let out = w.ssh_password(&b.user, &b.password, &look);
        let seen: Vec<i64> = stdout(&out)
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect();
        assert_eq!(
            seen,
            [-1, -1, -1, 0, 0, 0],
            "the next holder found (ids) or read (1) its predecessor's keys: {out:?}"
        );
        w.wait_removed(&b.user, b.uid);
    }
}
