//! `codext-helper setup`, `unsetup` and `doctor` on the sandbox's copy of a
//! stock Debian `/etc`: wiring, idempotence, dry run, a byte-exact undo, an
//! operator's edit kept, refusals that change nothing, rollback when sshd
//! rejects the result, and every doctor check failing with its advice when
//! the host is broken on purpose. Also: the daemon tells systemd it is ready
//! only once its socket listens.

use codext_tests::tree::{changed, snapshot};
use codext_tests::world::{module_path, setup_args, sh, wait_until, World, WORK};
use codext_tests::{bin, repo, sandbox_test};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Files `useradd`, `groupadd`, `userdel` and `groupdel` rewrite on every
/// run whatever they change, so `unsetup` cannot give them back:
/// `passwd-`, `shadow-`, `group-`, `gshadow-` are the tools' backup copies
/// of the previous version (taken before each change), `.pwd.lock` is the
/// lock file they create (lckpwdf(3)).
const REWRITTEN_BY_SHADOW_TOOLS: [&str; 5] = [
    "/etc/passwd-",
    "/etc/shadow-",
    "/etc/group-",
    "/etc/gshadow-",
    "/etc/.pwd.lock",
];

fn helper(args: &[&str]) -> Output {
    World::helper_cli(args)
}

fn setup(extra: &[&str]) -> Output {
    let args = setup_args(extra);
    helper(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `doctor --json`: check name → (status, advice).
fn doctor() -> BTreeMap<String, (String, String)> {
    let out = helper(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}: {}", text(&out)));
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_owned(),
                (
                    c["status"].as_str().unwrap().to_owned(),
                    format!(
                        "{} -- {}",
                        c["detail"].as_str().unwrap(),
                        c["advice"].as_str().unwrap()
                    ),
                ),
            )
        })
        .collect()
}

/// The checks that are not ok, but for the two that warn on a stock host
/// whatever codext does: `mounts.nosuid` (Debian's `/tmp` and `/var/tmp`
/// are on the root file system without nosuid, and so are the sandbox's)
/// and `mounts.world_writable` (it lists what the host's root file system
/// holds). Both are tested in tests/tests/doctor_mounts.rs.
fn not_ok(d: &BTreeMap<String, (String, String)>) -> Vec<String> {
    d.iter()
        .filter(|(_, (s, _))| s != "ok")
        .filter(|(k, (s, _))| !(s == "warn" && k.starts_with("mounts.")))
        .map(|(k, (s, a))| format!("{k}: {s}: {a}"))
        .collect()
}

sandbox_test! {
    fn given_a_stock_debian_etc_when_setup_runs_then_doctor_is_all_ok_and_a_real_login_works() {
        // World::new wires the host with `codext-helper setup` only.
        let w = World::new();
        let d = doctor();
        assert!(not_ok(&d).is_empty(), "{:#?}", not_ok(&d));
        assert!(d.len() >= 25, "{d:#?}");
        assert!(helper(&["doctor"]).status.success());
        let a = w.arm();
        let out = w.login(&a.puzzle, &["id -un"]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), a.user);
        w.wait_removed(&a.user, a.uid);
    }
}

sandbox_test! {
    fn given_a_wired_host_when_setup_runs_again_then_nothing_changes() {
        let first = setup(&[]);
        assert!(first.status.success(), "{}", text(&first));
        let once = snapshot("/etc");
        let manifest = std::fs::read("/var/lib/codext/setup.json").unwrap();
        let second = setup(&[]);
        assert!(second.status.success(), "{}", text(&second));
        assert!(text(&second).contains("no file changed"), "{}", text(&second));
        assert_eq!(changed(&once, &snapshot("/etc")), Vec::<PathBuf>::new());
        assert_eq!(std::fs::read("/var/lib/codext/setup.json").unwrap(), manifest);
    }
}

sandbox_test! {
    fn given_dry_run_then_the_diff_is_printed_and_nothing_changes() {
        let before = snapshot("/etc");
        let out = setup(&["--dry-run"]);
        assert!(out.status.success(), "{}", text(&out));
        let t = text(&out);
        for line in ["+@include codext", "+@include codext-session", "+++ /etc/ssh/sshd_config.d/00-codext.conf", "notingroup codext", "would create the server key", "nothing was changed"] {
            assert!(t.contains(line), "{line:?} missing in:\n{t}");
        }
        assert_eq!(changed(&before, &snapshot("/etc")), Vec::<PathBuf>::new());
        assert!(!Path::new("/var/lib/codext").exists());
    }
}

sandbox_test! {
    fn given_setup_then_unsetup_then_etc_is_byte_identical_but_for_the_shadow_tools_backups() {
        let before = snapshot("/etc");
        let out = setup(&[]);
        assert!(out.status.success(), "{}", text(&out));
        let wired = snapshot("/etc");
        assert!(!changed(&before, &wired).is_empty());
        // unsetup --dry-run shows the way back and takes none of it.
        let dry = helper(&["unsetup", "--dry-run"]);
        assert!(dry.status.success() && text(&dry).contains("-@include codext"), "{}", text(&dry));
        assert_eq!(changed(&wired, &snapshot("/etc")), Vec::<PathBuf>::new());
        assert!(Path::new("/var/lib/codext/setup.json").exists());
        let out = helper(&["unsetup"]);
        assert!(out.status.success(), "{}", text(&out));
        let t = text(&out);
        assert!(t.contains("restored /etc/pam.d/sshd (byte-identical") && t.contains("removed group codext"), "{t}");
        let diff: Vec<PathBuf> = changed(&before, &snapshot("/etc"))
            .into_iter()
            .filter(|p| !REWRITTEN_BY_SHADOW_TOOLS.iter().any(|x| p == Path::new(x)))
            .collect();
        assert_eq!(diff, Vec::<PathBuf>::new());
        // Twice is harmless.
        let again = helper(&["unsetup"]);
        assert!(again.status.success() && text(&again).contains("nothing to undo"), "{}", text(&again));
    }
}

sandbox_test! {
    fn given_an_operator_edit_after_setup_then_unsetup_removes_only_codexts_lines_and_keeps_the_edit() {
        let stock = std::fs::read_to_string("/etc/pam.d/sshd").unwrap();
        assert!(setup(&[]).status.success());
        let mut wired = std::fs::read_to_string("/etc/pam.d/sshd").unwrap();
        wired.push_str("# operator: local note\nsession    optional     pam_exec.so quiet /bin/true\n");
        std::fs::write("/etc/pam.d/sshd", &wired).unwrap();
        sh("echo '# operator tuning' >> /etc/ssh/sshd_config.d/00-codext.conf");
        let out = helper(&["unsetup"]);
        assert!(out.status.success(), "{}", text(&out));
        let t = text(&out);
        assert!(t.contains("/etc/pam.d/sshd was edited since setup: removed only codext's 2 line(s)"), "{t}");
        assert!(t.contains("00-codext.conf was changed since setup: left in place"), "{t}");
        assert_eq!(
            std::fs::read_to_string("/etc/pam.d/sshd").unwrap(),
            format!("{stock}# operator: local note\nsession    optional     pam_exec.so quiet /bin/true\n")
        );
        assert!(Path::new("/etc/ssh/sshd_config.d/00-codext.conf").exists());
    }
}

sandbox_test! {
    fn given_a_pam_stack_of_unknown_shape_then_setup_refuses_and_changes_nothing() {
        let stock = std::fs::read_to_string("/etc/pam.d/sshd").unwrap();
        std::fs::write("/etc/pam.d/sshd", format!("auth required pam_faildelay.so delay=100\n{stock}")).unwrap();
        let before = snapshot("/etc");
        let out = setup(&[]);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        let t = text(&out);
        assert!(t.contains("the first rule is not `@include common-auth`") && t.contains("Nothing was changed"), "{t}");
        assert_eq!(changed(&before, &snapshot("/etc")), Vec::<PathBuf>::new());
        assert!(!Path::new("/var/lib/codext/setup.json").exists());
    }
}

sandbox_test! {
    fn given_a_drop_in_sshd_rejects_then_setup_rolls_every_file_back() {
        let data = format!("{WORK}/data");
        sh(&format!("mkdir -p {WORK} && cp -a {} {data}", repo().join("pam.d").display()));
        sh(&format!("echo 'NoSuchKeyword yes' >> {data}/sshd_config.d/codext.conf"));
        let before = snapshot("/etc");
        let out = helper(&["setup", "--data-dir", &data, "--module", &module_path().display().to_string()]);
        assert!(!out.status.success());
        let t = text(&out);
        assert!(t.contains("sshd -t refused") && t.contains("every file is back as it was"), "{t}");
        assert!(t.contains("rolled back /etc/pam.d/sshd"), "{t}");
        assert_eq!(changed(&before, &snapshot("/etc")), Vec::<PathBuf>::new());
    }
}

/// The unit's capability bounding set, as `setpriv --bounding-set` wants it.
fn unit_capabilities() -> String {
    let unit = std::fs::read_to_string(repo().join("systemd/codext-helper.service")).unwrap();
    let caps = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap();
    let list: Vec<String> = caps
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    format!("-all,{}", list.join(","))
}

type Step = Box<dyn Fn(&mut World)>;

/// A text built at run time where a case wants a `&'static str`.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn shell(script: &'static str) -> Step {
    Box::new(move |_| {
        sh(script);
    })
}

/// A drop-in read before codext's, for one case.
fn early_drop_in(body: &'static str) -> (Step, Step) {
    (
        Box::new(move |_| std::fs::write("/etc/ssh/sshd_config.d/000-broken.conf", body).unwrap()),
        shell("rm /etc/ssh/sshd_config.d/000-broken.conf"),
    )
}

/// An operator's edit of codext's own drop-in, for one case.
fn edit_drop_in(from: &'static str, to: &'static str) -> Step {
    Box::new(move |_| {
        let p = "/etc/ssh/sshd_config.d/00-codext.conf";
        let text = std::fs::read_to_string(p).unwrap();
        assert!(text.contains(from), "{from}");
        std::fs::write(p, text.replace(from, to)).unwrap();
    })
}

fn restore_drop_in() -> Step {
    shell("cp /run/codext-test/keep/00-codext.conf /etc/ssh/sshd_config.d/")
}

sandbox_test! {
    fn given_each_doctor_check_broken_on_purpose_then_it_fails_with_its_advice() {
        let mut w = World::new();
        let module = module_path().display().to_string();
        assert!(not_ok(&doctor()).is_empty(), "{:#?}", not_ok(&doctor()));
        sh(&format!("mkdir -p {WORK}/keep && cp -a /etc/pam.d /etc/ssh/sshd_config /etc/ssh/sshd_config.d/00-codext.conf /etc/nsswitch.conf {WORK}/keep/"));
        let caps = unit_capabilities();
        let caps_without_ipc_lock = caps.replace(",+ipc_lock", "");
        assert_ne!(caps, caps_without_ipc_lock, "the unit grants CAP_IPC_LOCK");
        // The helper started under the unit's capability set, for the proc case.
        let limited: std::rc::Rc<std::cell::RefCell<Option<std::process::Child>>> = Default::default();
        let mut cases: Vec<(&str, &str, Step, Step)> = vec![
            ("pam.rules", "default=die", shell("sed -i 's/default=die/default=ignore/' /etc/pam.d/codext"), shell("sed -i 's/default=ignore\\]/default=die]/' /etc/pam.d/codext")),
            ("pam.module", "not root's alone", {
                let module = module.clone();
                Box::new(move |_| {
                    sh(&format!("mkdir -p {WORK}/loose && cp {module} {WORK}/loose/pam_codext.so && chmod 666 {WORK}/loose/pam_codext.so && sed -i 's#{module}#{WORK}/loose/pam_codext.so#' /etc/pam.d/codext"));
                })
            }, shell("rm -rf /etc/pam.d && cp -a /run/codext-test/keep/pam.d /etc/pam.d")),
            ("pam.libpam", "did not run pam_codext", {
                let module = module.clone();
                Box::new(move |_| {
                    sh(&format!("sed -i 's#{module}#/nonexistent/pam_codext.so#' /etc/pam.d/codext"));
                })
            }, shell("rm -rf /etc/pam.d && cp -a /run/codext-test/keep/pam.d /etc/pam.d")),
            ("pam.sshd", "lacks @include codext-session", shell("sed -i '/^@include codext-session/d' /etc/pam.d/sshd"), shell("rm -rf /etc/pam.d && cp -a /run/codext-test/keep/pam.d /etc/pam.d")),
            // pam_selinux ordering: codext's session line after `open`.
            ("pam.sshd", "right after `pam_selinux.so close`", shell("sed -i '/^@include codext-session/d' /etc/pam.d/sshd && echo '@include codext-session' >> /etc/pam.d/sshd"), shell("rm -rf /etc/pam.d && cp -a /run/codext-test/keep/pam.d /etc/pam.d")),
            // An earlier release's place, after pam_env.
            ("pam.sshd", "~/.pam_environment", shell("sed -i '/^@include codext-session/d' /etc/pam.d/sshd && sed -i 's/^\\(session.*pam_selinux.so open\\)/@include codext-session\\n\\1/' /etc/pam.d/sshd"), shell("rm -rf /etc/pam.d && cp -a /run/codext-test/keep/pam.d /etc/pam.d")),
            ("pam.sshd", "first session rule", shell("sed -i '/pam_selinux.so close/d' /etc/pam.d/sshd"), shell("rm -rf /etc/pam.d && cp -a /run/codext-test/keep/pam.d /etc/pam.d")),
            ("pam.atd", "outlive their account", shell("sed -i '/notingroup codext/d' /etc/pam.d/atd"), shell("rm -rf /etc/pam.d && cp -a /run/codext-test/keep/pam.d /etc/pam.d")),
            ("pam.cron", "outlive their account", shell("sed -i '/notingroup codext/d' /etc/pam.d/cron"), shell("rm -rf /etc/pam.d && cp -a /run/codext-test/keep/pam.d /etc/pam.d")),
            ("limits", "default limits", shell("mv /etc/security/limits.d/codext.conf /run/codext-test/keep/"), shell("mv /run/codext-test/keep/codext.conf /etc/security/limits.d/")),
            ("sshd.config", "sshd -T failed", early_drop_in("NoSuchKeyword yes\n").0, early_drop_in("").1),
            ("sshd.usepam", "usepam", early_drop_in("UsePAM no\n").0, early_drop_in("").1),
            ("sshd.authenticationmethods", "not password publickey", edit_drop_in("AuthenticationMethods password publickey", "AuthenticationMethods publickey"), restore_drop_in()),
            ("sshd.passwordauthentication", "not yes", edit_drop_in("PasswordAuthentication yes", "PasswordAuthentication no"), restore_drop_in()),
            ("sshd.kbdinteractiveauthentication", "forked child", edit_drop_in("KbdInteractiveAuthentication no", "KbdInteractiveAuthentication yes"), restore_drop_in()),
            ("sshd.authorizedkeysfile", "keys of its own", edit_drop_in("AuthorizedKeysFile /run/codext-keys/%u", "AuthorizedKeysFile .ssh/authorized_keys /run/codext-keys/%u"), restore_drop_in()),
            ("sshd.authorizedkeyscommand", "only the grant key", edit_drop_in("AuthorizedKeysCommand none", "AuthorizedKeysCommand /bin/true\n    AuthorizedKeysCommandUser nobody"), restore_drop_in()),
            ("sshd.trustedusercakeys", "certificate authority", edit_drop_in("TrustedUserCAKeys none", "TrustedUserCAKeys /etc/ssh/ca.pub"), restore_drop_in()),
            ("sshd.disableforwarding", "no tunnels", edit_drop_in("DisableForwarding yes", "DisableForwarding no"), restore_drop_in()),
            ("sshd.permituserrc", "ssh/rc", edit_drop_in("PermitUserRC no", "PermitUserRC yes"), restore_drop_in()),
            ("sshd.clientaliveinterval", "dead TCP peer", edit_drop_in("ClientAliveInterval 15", "ClientAliveInterval 0"), restore_drop_in()),
            ("sshd.sftp", "bypasses the login shell", shell("sed -i 's#^Subsystem.*sftp.*#Subsystem sftp internal-sftp#' /etc/ssh/sshd_config"), shell("cp /run/codext-test/keep/sshd_config /etc/ssh/sshd_config")),
            ("nss", "add systemd", shell("sed -i 's/^passwd:.*/passwd: files/' /etc/nsswitch.conf"), shell("cp /run/codext-test/keep/nsswitch.conf /etc/nsswitch.conf")),
            ("helper", "does not answer", Box::new(|w: &mut World| w.kill_helper()), Box::new(|w: &mut World| w.start_helper())),
            ("modes.socket", "chmod 600", shell("chmod 666 /run/codext/helper.sock"), shell("chmod 600 /run/codext/helper.sock")),
            ("modes.socket_dir", "chmod 700", shell("chmod 755 /run/codext"), shell("chmod 700 /run/codext")),
            ("modes.state_dir", "chmod 700", shell("chmod 750 /var/lib/codext"), shell("chmod 700 /var/lib/codext")),
            ("modes.server_key", "chmod 600", shell("chmod 640 /etc/codext/server_key"), shell("chmod 600 /etc/codext/server_key")),
            ("modes.server_pub", "codext-helper setup", shell("mv /etc/codext/server_key.pub /run/codext-test/keep/"), shell("mv /run/codext-test/keep/server_key.pub /etc/codext/")),
            ("modes.audit_dir", "chmod 755", shell("chmod 777 /var/log/codext"), shell("chmod 700 /var/log/codext")),
            // The daemon under the unit's capability set (no CAP_SYS_PTRACE)
            // and NoNewPrivileges, on a /proc that hides processes.
            ("proc", "SupplementaryGroups=", {
                let slot = std::rc::Rc::clone(&limited);
                Box::new(move |w: &mut World| {
                    w.kill_helper();
                    let child = serve_confined(&caps, &[]);
                    assert!(!has_cap_sys_ptrace(child.id()));
                    *slot.borrow_mut() = Some(child);
                    sh("mount -o remount,hidepid=2,gid=4 /proc");
                })
            }, {
                let slot = std::rc::Rc::clone(&limited);
                Box::new(move |w: &mut World| {
                    sh("mount -o remount,hidepid=0 /proc");
                    if let Some(mut c) = slot.borrow_mut().take() {
                        c.kill().unwrap();
                        c.wait().unwrap();
                    }
                    w.start_helper();
                })
            }),
            // Docker's defaults: no CAP_IPC_LOCK, an 8 MiB RLIMIT_MEMLOCK.
            // Locking every future page there left the (release) daemon
            // unable to start a connection thread: every login refused. It
            // must run unlocked, still answer, and doctor must say so. (This
            // debug build is too large for even the first mlockall under
            // 8 MiB, and the sandbox cannot raise the limit without
            // CAP_SYS_RESOURCE: the starvation itself shows in
            // scripts/docker-test.sh, the decision in daemon.rs's unit test.)
            ("memory", "--cap-add IPC_LOCK", {
                let slot = std::rc::Rc::clone(&limited);
                let caps = caps_without_ipc_lock.clone();
                Box::new(move |w: &mut World| {
                    w.kill_helper();
                    let child = serve_confined(&caps, &["prlimit", "--memlock=8388608"]);
                    *slot.borrow_mut() = Some(child);
                    let d = doctor();
                    assert_eq!(d["helper"].0, "ok", "{:?}", d["helper"]);
                })
            }, {
                let slot = std::rc::Rc::clone(&limited);
                Box::new(move |w: &mut World| {
                    if let Some(mut c) = slot.borrow_mut().take() {
                        c.kill().unwrap();
                        c.wait().unwrap();
                    }
                    w.start_helper();
                })
            }),
            ("uids", leak(format!("foreigner ({})", codext_tests::uid(59500))), shell(leak(format!("useradd -u {} -M foreigner", codext_tests::uid(59500)))), shell("userdel foreigner")),
            // An account only NSS knows (here a userdb record nobody armed).
            ("uids", leak(format!("nssonly ({})", codext_tests::uid(59501))), shell(leak(format!(r#"printf '{{"userName":"nssonly","uid":{u},"gid":{u},"homeDirectory":"/","shell":"/bin/false","disposition":"regular"}}' > /run/userdb/nssonly.user && ln -s nssonly.user /run/userdb/{u}.user"#, u = codext_tests::uid(59501)))), shell(leak(format!("rm /run/userdb/nssonly.user /run/userdb/{}.user", codext_tests::uid(59501))))),
            // A state doctor cannot read (the full-range case is in teardown.rs).
            ("quarantine", "cannot read the state", shell("cp /var/lib/codext/state.json /run/codext-test/keep-state.json && echo '{' > /var/lib/codext/state.json"), shell("cp /run/codext-test/keep-state.json /var/lib/codext/state.json")),
            ("hostkeys", "ssh-keygen -A", shell("mkdir -p /run/codext-test/keep/hk && mv /etc/ssh/ssh_host_*_key.pub /run/codext-test/keep/hk/"), shell("mv /run/codext-test/keep/hk/* /etc/ssh/")),
            ("digitalocean", "others may read the API token", shell("cp /etc/codext/helper.toml /run/codext-test/keep-helper.toml && printf '[digitalocean]\\nenabled = true\\n' >> /etc/codext/helper.toml && echo tok > /etc/codext/digitalocean.token && chmod 644 /etc/codext/digitalocean.token"), shell("mv /run/codext-test/keep-helper.toml /etc/codext/helper.toml && rm /etc/codext/digitalocean.token")),
            ("clock", "the clock went back", shell("touch -d '+1 day' /etc/codext/server_key"), shell("touch /etc/codext/server_key")),
            // The sandbox's /tmp and /var/tmp are already without nosuid, as on
            // Debian; /dev/shm too now.
            ("mounts.nosuid", "nosuid", shell("mount -o remount,suid /dev/shm"), shell("mount -o remount,nosuid /dev/shm")),
            // Session recording.
            ("recording.recorder", "codext-helper setup", shell("chmod 0755 /usr/lib/codext/codext-record"), shell("/run/codext-test/bin/codext-helper init >/dev/null")),
            ("recording.shell", "the real shell", shell("cp /etc/codext/helper.toml /run/codext-test/keep-helper.toml && sed -i '/^\\[accounts\\]/a shell = \"/bin/no-such-shell\"' /etc/codext/helper.toml && grep -q no-such-shell /etc/codext/helper.toml"), shell("mv /run/codext-test/keep-helper.toml /etc/codext/helper.toml")),
            ("recording.socket", "restart codext-helper", shell("chmod 755 /run/codext-record"), shell("chmod 750 /run/codext-record")),
            ("recording.store", "chmod 0700", shell("chmod 755 /var/lib/codext/recordings"), shell("chmod 700 /var/lib/codext/recordings")),
            // Grant profiles: a stale gate drop-in, a group membership and a
            // sudo rule no grant stands behind.
            ("profiles.sshd", "codext-helper setup", shell("printf '# stale\\n' > /etc/ssh/sshd_config.d/00-codext-profiles.conf"), shell("rm /etc/ssh/sshd_config.d/00-codext-profiles.conf")),
            ("profiles.groups", "gpasswd --delete", shell("echo 'codext-stale-g:x:4242:user-00000000000a' >> /etc/group"), shell("sed -i '/^codext-stale-g:/d' /etc/group")),
            ("profiles.sudo", "remove", shell("mkdir -p /etc/sudoers.d && printf '# stray\\n' > /etc/sudoers.d/codext-user-00000000000a && chmod 0440 /etc/sudoers.d/codext-user-00000000000a"), shell("rm /etc/sudoers.d/codext-user-00000000000a")),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (check, advice_has, break_it, repair) in cases.iter_mut() {
            break_it(&mut w);
            let d = doctor();
            let (status, advice) = d.get(*check).cloned().unwrap_or_else(|| panic!("no {check} line: {d:#?}"));
            assert!(status == "fail" || (status == "warn" && ["sshd.sftp", "limits", "memory", "mounts.nosuid"].contains(check)), "{check}: {status}: {advice}");
            assert!(advice.contains(*advice_has), "{check}: {advice:?} lacks {advice_has:?}");
            assert!(advice.contains(" -- ") && !advice.ends_with(" -- "), "{check} gives no advice: {advice}");
            if status == "fail" {
                assert!(!helper(&["doctor"]).status.success(), "{check}");
            }
            repair(&mut w);
            let left = not_ok(&doctor());
            assert!(left.is_empty(), "after repairing {check}: {left:#?}");
            seen.insert(check.to_string());
        }
        // Every check doctor has was broken at least once, but one: breaking
        // mounts.world_writable takes a world-writable folder on the root
        // file system, which here is the host's (scripts/docker-test.sh
        // breaks it in a container).
        let all: std::collections::BTreeSet<String> = doctor().into_keys().filter(|k| k != "mounts.world_writable").collect();
        let missed: Vec<&String> = all.difference(&seen).collect();
        assert!(missed.is_empty(), "never broken: {missed:?}");
    }
}

/// Does `pid` hold `CAP_SYS_PTRACE` (bit 19 of `CapEff`)?
/// `codext-helper serve` under `wrapper`, with only `caps` in its bounding
/// set and no new privileges, once its socket answers.
fn serve_confined(caps: &str, wrapper: &[&str]) -> std::process::Child {
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg("setpriv");
            c
        }
        None => Command::new("setpriv"),
    };
    let child = cmd
        .arg(format!("--bounding-set={caps}"))
        .args(["--inh-caps=-all", "--no-new-privs"])
        .arg(bin("codext-helper"))
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(10), "the helper socket", || {
        std::os::unix::net::UnixStream::connect("/run/codext/helper.sock").is_ok()
    });
    child
}

fn has_cap_sys_ptrace(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(eff, 16).unwrap() & (1 << 19) != 0
}

sandbox_test! {
    fn given_notify_socket_then_the_daemon_reports_ready_only_once_its_socket_listens() {
        std::fs::create_dir_all(WORK).unwrap();
        let path = format!("{WORK}/notify.sock");
        // The daemon serves only once init made the killer account.
        assert!(Command::new(bin("codext-helper")).arg("init").output().unwrap().status.success());
        let notify = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        notify.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut child = Command::new(bin("codext-helper"))
            .arg("serve")
            .env("NOTIFY_SOCKET", &path)
            .stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null())
            .spawn().unwrap();
        let mut buf = [0u8; 256];
        let n = notify.recv(&mut buf).expect("READY=1 from the daemon");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        // At the moment READY arrives the socket already accepts.
        let connected = std::os::unix::net::UnixStream::connect("/run/codext/helper.sock");
        let _ = child.kill();
        let _ = child.wait();
        assert!(msg.contains("READY=1"), "{msg:?}");
        assert!(connected.is_ok(), "READY before the socket listened: {connected:?}");
        let m = std::fs::metadata("/run/codext").unwrap();
        assert_eq!(m.mode() & 0o777, 0o700);
    }
}

/// The unit's `ReadWritePaths=`, without the `-` of optional ones.
fn unit_read_write_paths() -> Vec<String> {
    let unit = std::fs::read_to_string(repo().join("systemd/codext-helper.service")).unwrap();
    unit.lines()
        .filter_map(|l| l.strip_prefix("ReadWritePaths="))
        .flat_map(|v| {
            v.split_whitespace()
                .map(|p| p.trim_start_matches('-').to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

sandbox_test! {
    fn given_the_helper_confined_like_the_unit_then_a_login_and_its_teardown_work() {
        // What systemd would do with the shipped unit, by hand: a private
        // mount namespace where every mount is read-only (ProtectSystem=
        // strict; /dev, /proc and /sys stay as they are) except the unit's
        // ReadWritePaths=, then the unit's capability bounding set and
        // NoNewPrivileges. If the one list of account paths missed a place
        // useradd, userdel or teardown writes to, this login or its removal
        // would fail.
        let mut w = World::new();
        w.kill_helper();
        let rw: Vec<String> = unit_read_write_paths();
        let script = format!(
            r#"set -e
mkdir -p -m 0711 /run/codext-keys  # the unit's ExecStartPre=+ (outside the confinement)
awk '{{print $5}}' /proc/self/mountinfo | sort -u | while read -r m; do
  case "$m" in /dev|/dev/*|/proc|/proc/*|/sys|/sys/*) continue;; esac
  # A mount the sandbox covered with its own (one of the host's, under its
  # /tmp) has no path here: nothing to confine.
  [ -e "$m" ] || continue
  mount -o remount,bind,ro "$m"
done
for p in {rw}; do
  # --rbind: a checkout under /tmp (a read-only mount inside it) stays visible.
  if [ -e "$p" ]; then mount --rbind "$p" "$p" && mount -o remount,bind,rw "$p"; fi
done
touch /usr/.codext-probe 2>/dev/null && {{ echo "/usr is writable: not confined" >&2; exit 1; }}
exec setpriv --bounding-set={caps} --inh-caps=-all --no-new-privs {helper} serve"#,
            rw = rw.join(" "),
            caps = unit_capabilities(),
            helper = bin("codext-helper").display(),
        );
        let log = std::fs::File::create(format!("{WORK}/confined.log")).unwrap();
        let mut confined = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "/bin/sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let log = || std::fs::read_to_string(format!("{WORK}/confined.log")).unwrap_or_default();
        let start = std::time::Instant::now();
        while std::os::unix::net::UnixStream::connect("/run/codext/helper.sock").is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "the confined helper's socket never came up:\n{}", log());
            std::thread::sleep(Duration::from_millis(20));
        }
        let a = w.arm();
        let out = w.login(&a.puzzle, &["id -un; touch /tmp/left-behind; nohup sleep 300 >/dev/null 2>&1 </dev/null & echo started"]);
        assert!(out.status.success(), "{}\n{}", text(&out), log());
        w.wait_removed(&a.user, a.uid);
        confined.kill().unwrap();
        confined.wait().unwrap();
        assert!(!log().contains("Read-only file system"), "{}", log());
    }
}

sandbox_test! {
    fn given_install_module_then_setup_puts_it_in_the_pam_folder_and_unsetup_takes_it_away() {
        // The PAM module folder is the host's: give the sandbox its own copy.
        let dir = sh("dirname \"$(find /usr/lib /lib -name pam_unix.so | head -n 1)\"").trim().to_owned();
        sh(&format!("mkdir -p {WORK} && cp -a {dir} {WORK}/pamdir && mount --bind {WORK}/pamdir {dir}"));
        let (etc, pam) = (snapshot("/etc"), snapshot(&dir));
        let built = module_path().display().to_string();
        let data = repo().join("pam.d").display().to_string();
        let out = helper(&["setup", "--data-dir", &data, "--install-module", &built]);
        assert!(out.status.success(), "{}", text(&out));
        let installed = Path::new(&dir).join("pam_codext.so");
        assert!(text(&out).contains(&format!("installed {}", installed.display())), "{}", text(&out));
        assert_eq!(std::fs::read(&installed).unwrap(), std::fs::read(module_path()).unwrap());
        assert_eq!(installed.metadata().unwrap().mode() & 0o7777, 0o644);
        // The stack names it by its plain name, and libpam finds it there.
        let codext = std::fs::read_to_string("/etc/pam.d/codext").unwrap();
        assert!(codext.lines().any(|l| l.starts_with("auth") && l.trim_end().ends_with(" pam_codext.so")), "{codext}");
        let d = doctor();
        for check in ["pam.module", "pam.libpam", "pam.rules", "pam.sshd"] {
            assert_eq!(d[check].0, "ok", "{check}: {:?}", d[check]);
        }
        // Twice = once.
        let again = helper(&["setup", "--data-dir", &data, "--install-module", &built]);
        assert!(text(&again).contains("no file changed"), "{}", text(&again));
        let out = helper(&["unsetup"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(&format!("removed {}", installed.display())), "{}", text(&out));
        assert_eq!(changed(&pam, &snapshot(&dir)), Vec::<PathBuf>::new());
        let diff: Vec<PathBuf> = changed(&etc, &snapshot("/etc"))
            .into_iter()
            .filter(|p| !REWRITTEN_BY_SHADOW_TOOLS.iter().any(|x| p == Path::new(x)))
            .collect();
        assert_eq!(diff, Vec::<PathBuf>::new());
    }
}
