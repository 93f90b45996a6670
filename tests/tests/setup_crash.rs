//! `setup` interrupted at any point can be undone: the manifest is written
//! as a pending record before the first edit and updated before each one,
//! so `unsetup` (and so the package's `prerm`) gives `/etc` and the PAM
//! module folder back byte for byte whatever step a crash (SIGKILL, as a
//! power cut) stopped setup at. `init` reports, and `unsetup` removes,
//! exactly the accounts it created, never one someone else made meanwhile.
//! `unsetup` reloads sshd as `setup` does.

use codext_tests::tree::{snapshot, Snapshot};
use codext_tests::world::{module_path, sh, wait_until, World, WORK};
use codext_tests::{bin, repo, sandbox_test};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Rewritten by the shadow tools on every run (their backups and lock
/// file), so no undo can give them back (see tests/tests/setup.rs).
const REWRITTEN_BY_SHADOW_TOOLS: [&str; 5] = [
    "/etc/passwd-",
    "/etc/shadow-",
    "/etc/group-",
    "/etc/gshadow-",
    "/etc/.pwd.lock",
];

/// What differs but for the files the shadow tools rewrite.
fn changed(a: &Snapshot, b: &Snapshot) -> Vec<PathBuf> {
    codext_tests::tree::changed(a, b)
        .into_iter()
        .filter(|k| !REWRITTEN_BY_SHADOW_TOOLS.iter().any(|x| k == Path::new(x)))
        .collect()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The PAM module folder is the host's: the sandbox gets its own copy.
fn private_pam_dir() -> String {
    let dir = sh("dirname \"$(find /usr/lib /lib -name pam_unix.so | head -n 1)\"")
        .trim()
        .to_owned();
    sh(&format!(
        "mkdir -p {WORK} && cp -a {dir} {WORK}/pamdir && mount --bind {WORK}/pamdir {dir}"
    ));
    dir
}

fn setup_command() -> Command {
    let mut c = Command::new(bin("codext-helper"));
    c.args([
        "setup",
        "--data-dir",
        &repo().join("pam.d").display().to_string(),
    ])
    .args(["--install-module", &module_path().display().to_string()]);
    c
}

fn unsetup() -> Output {
    World::helper_cli(&["unsetup"])
}

sandbox_test! {
    fn given_setup_killed_while_init_makes_the_server_key_then_unsetup_gives_etc_back_byte_for_byte() {
        let pam_dir = private_pam_dir();
        let (etc, pam) = (snapshot("/etc"), snapshot(&pam_dir));
        // Every file edit is done once /etc/pam.d/sshd includes codext;
        // init then makes a 4096-bit key, which takes a while: the kill
        // lands there, before setup could finish.
        let mut child = setup_command().stdout(std::process::Stdio::null()).spawn().unwrap();
        wait_until(Duration::from_secs(30), "setup's edit of /etc/pam.d/sshd", || {
            std::fs::read_to_string("/etc/pam.d/sshd").unwrap_or_default().contains("@include codext")
        });
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "setup finished before the kill: {status:?}");
        assert!(!changed(&etc, &snapshot("/etc")).is_empty(), "the kill came before any edit");
        let out = unsetup();
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(changed(&etc, &snapshot("/etc")), Vec::<PathBuf>::new(), "{}", text(&out));
        assert_eq!(changed(&pam, &snapshot(&pam_dir)), Vec::<PathBuf>::new(), "{}", text(&out));
        assert!(text(&unsetup()).contains("nothing to undo"));
    }
}

sandbox_test! {
    fn given_a_crash_after_each_step_of_setup_then_unsetup_gives_etc_and_the_module_folder_back_byte_for_byte() {
        let pam_dir = private_pam_dir();
        let (etc, pam) = (snapshot("/etc"), snapshot(&pam_dir));
        let mut crashed = Vec::new();
        for step in 1.. {
            assert!(step < 40, "setup still crashing at step {step}");
            let out = setup_command().env("CODEXT_SETUP_CRASH_AT", step.to_string()).output().unwrap();
            if out.status.success() {
                break;
            }
            assert_eq!(out.status.signal(), Some(9), "step {step}: {}", text(&out));
            let said = String::from_utf8_lossy(&out.stderr);
            let what = said
                .lines()
                .find_map(|l| l.strip_prefix("codext-helper: crash injected after "))
                .unwrap_or_else(|| panic!("step {step}: no crash point named: {said}"))
                .to_owned();
            let undo = unsetup();
            assert!(undo.status.success(), "after {what}: {}", text(&undo));
            assert_eq!(changed(&etc, &snapshot("/etc")), Vec::<PathBuf>::new(), "after {what}: {}", text(&undo));
            assert_eq!(changed(&pam, &snapshot(&pam_dir)), Vec::<PathBuf>::new(), "after {what}: {}", text(&undo));
            crashed.push(what);
        }
        println!("crashed and undone after: {crashed:#?}");
        // The module, every file setup writes, and each of init's creations.
        for expected in ["pam_codext.so", "/etc/pam.d/codext", "/etc/pam.d/sshd", "00-codext.conf", "the group", "the killer account", "the channel account", "the server key"] {
            assert!(crashed.iter().any(|c| c.contains(expected)), "no crash after {expected}: {crashed:?}");
        }
        let out = unsetup();
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(changed(&etc, &snapshot("/etc")), Vec::<PathBuf>::new());
    }
}

sandbox_test! {
    fn given_accounts_made_by_someone_else_while_setup_runs_then_init_reports_and_unsetup_removes_only_its_own() {
        private_pam_dir();
        let etc = snapshot("/etc");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        // Someone else adds accounts while setup runs, up to the end of its
        // key generation (init makes the key before its own accounts).
        let bystanders = std::thread::spawn(move || {
            let mut n = 0;
            while !flag.load(std::sync::atomic::Ordering::SeqCst)
                && !Path::new("/etc/codext/server_key").exists()
            {
                sh(&format!("useradd --system --no-create-home bystander{n}"));
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            n
        });
        let out = setup_command().output().unwrap();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let made = bystanders.join().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert!(made > 0);
        let t = text(&out);
        assert!(!t.contains("bystander"), "setup claims a bystander: {t}");
        let manifest = std::fs::read_to_string("/var/lib/codext/setup.json").unwrap();
        assert!(!manifest.contains("bystander"), "{manifest}");
        let out = unsetup();
        assert!(out.status.success(), "{}", text(&out));
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        assert_eq!((0..made).filter(|n| passwd.contains(&format!("bystander{n}:"))).count(), made, "unsetup removed a bystander");
        for n in 0..made {
            sh(&format!("userdel bystander{n}"));
        }
        assert_eq!(changed(&etc, &snapshot("/etc")), Vec::<PathBuf>::new());
    }
}

sandbox_test! {
    fn given_systemd_then_unsetup_reloads_sshd_as_setup_does() {
        private_pam_dir();
        // A stand-in for systemctl that only records what it is asked, and
        // the marker sd_booted(3) reads: private to the sandbox.
        let log = format!("{WORK}/systemctl.log");
        sh(&format!(
            "mkdir -p {WORK} /run/systemd/system && printf '#!/bin/sh\\necho \"$*\" >> {log}\\n' > {WORK}/systemctl \
             && chmod 755 {WORK}/systemctl && mount --bind {WORK}/systemctl /usr/bin/systemctl"
        ));
        let out = setup_command().output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let after_setup = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(after_setup.lines().any(|l| l == "reload-or-restart ssh.service"), "{after_setup}");
        std::fs::write(&log, "").unwrap();
        let out = unsetup();
        assert!(out.status.success(), "{}", text(&out));
        let after_unsetup = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(after_unsetup.lines().any(|l| l == "reload-or-restart ssh.service"), "unsetup did not reload sshd: {after_unsetup}");
        sh("umount /usr/bin/systemctl");
    }
}
