//! codext must change nothing for anyone else, fail closed for `user-*`
//! when anything is wrong, and only ever be reachable by root.

use codext_tests::sandbox_test;
use codext_tests::world::{
    in_passwd, install_pam, run, sh, uninstall_pam, World, HELPER_LOG, WORK,
};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// alice (password, key) and root (key; password refused by Debian's
/// PermitRootLogin prohibit-password): what each login attempt gives.
fn local_logins(w: &World) -> Vec<(&'static str, bool)> {
    vec![
        (
            "alice password",
            w.ssh_password("alice", "alice-pw-123", "true")
                .status
                .success(),
        ),
        (
            "alice wrong password",
            w.ssh_password("alice", "wrong", "true").status.success(),
        ),
        (
            "alice key",
            w.ssh_key("alice", Path::new(&key("alice")), "true")
                .status
                .success(),
        ),
        (
            "root key",
            w.ssh_key("root", Path::new(&key("root")), "true")
                .status
                .success(),
        ),
        (
            "root password",
            w.ssh_password("root", "root-pw-123", "true")
                .status
                .success(),
        ),
    ]
}

/// Where the test keeps a user's login key.
fn key(user: &str) -> String {
    format!("{WORK}/keys/{user}_key")
}

/// alice with a password and a key; root with a password and a key. The
/// authorized keys live in the sandbox's scratch `/run` (sshd is told to
/// look there too), never in the real `/root`.
fn make_local_users(w: &mut World) {
    sh("useradd --create-home --shell /bin/bash alice && echo 'alice:alice-pw-123' | chpasswd && echo 'root:root-pw-123' | chpasswd");
    sh(&format!(
        "mkdir -p {WORK}/keys {WORK}/authorized_keys && chmod 755 {WORK}/authorized_keys"
    ));
    for user in ["alice", "root"] {
        let k = key(user);
        sh(&format!("ssh-keygen -q -t ed25519 -N '' -f {k} && cp {k}.pub {WORK}/authorized_keys/{user} && chmod 644 {WORK}/authorized_keys/{user}"));
    }
    let cfg = std::fs::read_to_string("/etc/ssh/sshd_config").unwrap();
    std::fs::write(
        "/etc/ssh/sshd_config",
        format!("AuthorizedKeysFile .ssh/authorized_keys {WORK}/authorized_keys/%u\n{cfg}"),
    )
    .unwrap();
    w.restart_sshd();
}

sandbox_test! {
    fn given_local_user_and_root_then_logins_behave_as_without_codext_and_the_helper_sees_nothing() {
        let mut w = World::new();
        make_local_users(&mut w);
        let before = w.helper_connections();
        let with_codext = local_logins(&w);
        assert_eq!(w.helper_connections(), before, "the helper was asked about a non-codext user");
        uninstall_pam();
        std::fs::remove_file("/etc/ssh/sshd_config.d/00-codext.conf").unwrap();
        w.restart_sshd();
        let without = local_logins(&w);
        assert_eq!(with_codext, without);
        assert_eq!(
            with_codext.iter().map(|(_, ok)| *ok).collect::<Vec<_>>(),
            vec![true, false, true, true, false],
            "{with_codext:?}"
        );
    }
}

/// pamtester run by the unprivileged agent (as `su` would be: root is let
/// through by pam_rootok whatever the password, which tests nothing).
fn pamtester(w: &World, service: &str, user: &str, password: &str) -> bool {
    let mut child = w
        .as_agent(&mut Command::new("pamtester"))
        .args([service, user, "authenticate"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pamtester");
    use std::io::Write;
    // pamtester may end before it reads the password (a service whose
    // stack refuses first): a closed pipe here is its answer, not an error.
    let written = child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes());
    let out = child.wait_with_output().unwrap();
    if let Err(e) = written {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing to pamtester: {e}"
        );
        assert!(
            !out.status.success(),
            "pamtester succeeded without reading the password"
        );
    }
    out.status.success()
}

/// pamtester run by root, the password on its standard input.
fn pamtester_as_root(service: &str, user: &str, password: &str) -> bool {
    let mut child = Command::new("pamtester")
        .args([service, user, "authenticate"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pamtester");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .expect("the password to pamtester");
    child.wait().expect("pamtester").success()
}

sandbox_test! {
    fn given_valid_token_then_su_login_or_any_service_off_the_allow_list_cannot_use_it() {
        let w = World::new();
        let a = w.arm();
        // A careless operator includes codext in `login` too: the module
        // still refuses every service but sshd.
        let login = std::fs::read_to_string("/etc/pam.d/login").unwrap();
        std::fs::write("/etc/pam.d/login", format!("@include codext\n{login}")).unwrap();
        std::fs::write("/etc/pam.d/codext-probe", "@include codext\n@include common-auth\n").unwrap();
        for service in ["login", "su", "codext-probe"] {
            assert!(!pamtester(&w, service, &a.user, &a.password), "{service} accepted the token");
        }
        assert!(!in_passwd(&a.user));
        // The refusals did not burn the token: sshd still logs in with it.
        let out = w.login(&a.puzzle, &["id -un"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        w.wait_removed(&a.user, a.uid);
    }
}

sandbox_test! {
    fn given_non_root_peer_then_refused_even_when_the_socket_is_world_writable() {
        let w = World::new();
        let probe = format!("{}/bin/socket-probe", codext_tests::world::WORK);
        let root = run(Command::new(&probe).args(["/run/codext/helper.sock", "ping"]));
        assert_eq!(String::from_utf8_lossy(&root.stdout).trim(), "reply Ok pong");
        // Without the chmods the modes alone (folder 0700, socket 0600) keep
        // the agent out.
        let denied = run(w.as_agent(Command::new(&probe).args(["/run/codext/helper.sock", "ping"])));
        assert!(String::from_utf8_lossy(&denied.stdout).contains("Permission denied"));
        sh("chmod 755 /run/codext && chmod 666 /run/codext/helper.sock");
        let agent = run(w.as_agent(Command::new(&probe).args(["/run/codext/helper.sock", "ping"])));
        assert_eq!(String::from_utf8_lossy(&agent.stdout).trim(), "closed", "a non-root peer got an answer");
        let log = std::fs::read_to_string(HELPER_LOG).unwrap();
        assert!(log.contains("refused peer pid") && log.contains(&format!("uid {}", w.agent.0)), "{log}");
    }
}

sandbox_test! {
    fn given_helper_stopped_or_hung_then_codext_users_denied_within_seconds_and_others_unaffected() {
        let mut w = World::new();
        make_local_users(&mut w);
        let a = w.arm();
        // Hung: stopped with SIGSTOP, its socket still accepts connections.
        sh(&format!("kill -STOP {}", w.helper_pid()));
        // What a refused login costs here and now (key exchange, PAM's
        // failure delay; more on a loaded machine), as the baseline.
        let t = Instant::now();
        assert!(!w.ssh_password("alice", "not-alices-password", "true").status.success());
        let refused = t.elapsed();
        // The module waits its default 15 s for a hung helper, then denies:
        // measured in PAM itself (pamtester on sshd's stack, as root so
        // the module reaches the socket), where nothing else adds time.
        let t = Instant::now();
        assert!(!pamtester_as_root("sshd", &a.user, &a.password), "authenticated against a hung helper");
        let module = t.elapsed();
        // (The kernel counts socket timeouts in jiffies: the last one may
        // end a few milliseconds early.)
        assert!(
            module >= Duration::from_millis(14_900) && module < Duration::from_secs(15 + 5),
            "the module gave up after {module:?} (timeout 15 s)"
        );
        // Through sshd the refusal takes longer: OpenSSH pads every failed
        // attempt to the next doubling of a few milliseconds past the time
        // it took (auth2.c, ensure_minimum_time_since), so a 15 s wait
        // becomes 15 to 30 s before the client hears "denied".
        let t = Instant::now();
        assert!(!w.ssh_password(&a.user, &a.password, "true").status.success());
        let hung = t.elapsed();
        assert!(hung < refused + Duration::from_secs(2 * 15 + 10), "denial took {hung:?} (a refused login {refused:?})");
        assert!(w.ssh_password("alice", "alice-pw-123", "true").status.success());
        assert!(w.ssh_key("root", Path::new(&key("root")), "true").status.success());
                // Resumed, the helper finds the request the module gave up on: it
        // must neither consume the token nor make an account for it.
        sh(&format!("kill -CONT {}", w.helper_pid()));
        codext_tests::world::wait_until(Duration::from_secs(10), "the stale request to be refused", || {
            w.audit().iter().any(|e| e["event"] == "refuse" && e["reason"] == "the PAM module stopped waiting")
        });
        assert!(!in_passwd(&a.user), "an account was made for a login sshd had already denied");
        assert_eq!(w.state()["users"][a.user.as_str()]["phase"], "armed");
        // Down: killed, nobody listening.
        w.kill_helper();
        let t = Instant::now();
        assert!(!w.ssh_password(&a.user, &a.password, "true").status.success());
        let down = t.elapsed();
        assert!(down < Duration::from_secs(10), "denial took {down:?}");
        assert!(w.ssh_password("alice", "alice-pw-123", "true").status.success());
        assert!(!in_passwd(&a.user));
        let log = std::fs::read_to_string(codext_tests::world::SSHD_LOG).unwrap();
        assert!(log.contains(&format!("Failed password for {}", a.user)), "{log}");
        eprintln!("denied after {module:?} in PAM, {hung:?} through sshd with the helper hung, {down:?} with it down");
    }
}

sandbox_test! {
    fn given_module_file_missing_then_nobody_is_locked_out_and_codext_users_fail() {
        let mut w = World::new();
        make_local_users(&mut w);
        let a = w.arm();
        // Point the stack at a module that does not exist.
        std::fs::remove_file("/etc/pam.d/codext").unwrap();
        install_pam(Path::new("/nonexistent/pam_codext.so"));
        assert!(std::fs::read_to_string("/etc/pam.d/codext").unwrap().contains("/nonexistent/pam_codext.so"));
        assert!(w.ssh_password("alice", "alice-pw-123", "true").status.success());
        assert!(w.ssh_key("root", Path::new(&key("root")), "true").status.success());
        assert!(!w.ssh_password(&a.user, &a.password, "true").status.success());
        assert!(!in_passwd(&a.user));
    }
}

sandbox_test! {
    fn given_a_host_whose_key_was_not_signed_into_the_puzzle_then_codext_refuses_it_before_sending_the_token() {
        // The puzzle binds a key this sshd does not have: to the agent, the
        // sshd it reaches is a man in the middle.
        let w = World::with_config(&format!("host_keys = [\"{WORK}/elsewhere_key.pub\"]\n"));
        sh(&format!("ssh-keygen -q -t ed25519 -N '' -f {WORK}/elsewhere_key"));
        let a = w.arm();
        let before = w.helper_connections();
        let out = w.login(&a.puzzle, &["id -un"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not sign") && err.contains("man in the middle"), "{err}");
        assert!(err.contains("Host key verification failed"), "{err}");
        // No password was sent: the helper was never asked, nothing was
        // created, no attempt counted.
        assert_eq!(w.helper_connections(), before);
        assert!(!in_passwd(&a.user));
        assert_eq!(w.state()["users"][a.user.as_str()]["attempts"], 0);
    }
}
