//! The temporary user is hostile and tries to outlive its grant: freezing
//! or tracing the killer, hiding behind `hidepid`, escaping to sub-uids,
//! jamming `userdel`, racing a revoke against its own login. Each test
//! plays that user against the real helper, sshd and shadow tools, then
//! checks that nothing of the user is left and the next login works.

use codext_tests::sandbox_test;
use codext_tests::world::{in_passwd, processes_of, resolves, sh, wait_until, Armed, World, WORK};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How many times the racy cases run: `CODEXT_SOAK_ROUNDS` (scripts/soak.sh
/// sets it high), else `default`.
fn rounds(default: usize) -> usize {
    std::env::var("CODEXT_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// uid and gid of the killer account, from `/etc/passwd`.
fn killer() -> (u32, u32) {
    let line = sh("getent passwd codext-killer");
    let f: Vec<&str> = line.trim().split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// `pwck -r` and `grpck -r` complaints (a stock Debian already has some).
fn shadow_checks() -> BTreeSet<String> {
    sh("pwck -r 2>&1; grpck -r 2>&1; true")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A fresh token login works, and quickly.
fn assert_fresh_login_works(w: &World) {
    let a = w.arm();
    let start = Instant::now();
    let out = w.ssh_password(&a.user, &a.password, "id -u");
    let took = start.elapsed();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        a.uid.to_string(),
        "a fresh login failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(5), "a fresh login took {took:?}");
    w.wait_removed(&a.user, a.uid);
}

/// Logs `a` in and leaves `modes` of `hostile` running, each waiting for
/// the session process to end (logout) before it attacks.
///
/// That process is sshd's for the connection, the parent of the shell's
/// parent (the session recorder, the login shell); the user cannot look it
/// up (`/proc` hides another user's — and a non-dumpable — process under
/// `hidepid`), so the session is held open on one connection, its sshd
/// process found here as root, and the attackers started from a second
/// connection (the grant's key), which then ends; the held one ends last.
fn leave_attackers(w: &World, a: &Armed, modes: &[&str]) {
    let mut held = w.hold_session(&a.user, &a.password, 1);
    let mut sshd = 0;
    wait_until(
        Duration::from_secs(20),
        "the held session's sshd process",
        || {
            sshd = processes_of(a.uid)
                .into_iter()
                .find(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                        .unwrap_or_default()
                        .starts_with("sshd: ")
                })
                .unwrap_or(0);
            sshd != 0
        },
    );
    let script: String = modes
        .iter()
        .map(|m| format!("setsid -f {WORK}/bin/hostile {m} {sshd} </dev/null >/dev/null 2>&1; "))
        .collect();
    let out = w.ssh_key(&a.user, &w.agent_key, &format!("{script}echo left"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "left",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(
        Duration::from_secs(20),
        "the second connection to close",
        || w.sessions_of(&a.user) == 1,
    );
    let _ = held.kill();
    let _ = held.wait();
}

sandbox_test! {
    fn given_processes_that_stop_or_trace_everything_they_can_at_logout_then_nothing_survives_and_the_next_login_works() {
        let w = World::new();
        let n = rounds(5);
        for round in 0..n {
            let a = w.arm();
            leave_attackers(&w, &a, &["stop", "stop", "tstp", "ptrace"]);
            w.wait_removed(&a.user, a.uid);
            assert!(processes_of(a.uid).is_empty(), "round {round}: processes of {} left", a.user);
            assert!(processes_of(killer().0).is_empty(), "round {round}: a killer is left");
            assert_fresh_login_works(&w);
        }
        eprintln!("{n} rounds of spinners defeated");
    }
}

sandbox_test! {
    fn given_proc_mounted_hidepid_then_the_helper_refuses_to_serve_and_in_the_exempt_group_it_kills_everything() {
        let mut w = World::new();
        w.kill_helper();
        sh("groupadd --system proc-view");
        let gid: u32 = sh("getent group proc-view | cut -d: -f3").trim().parse().unwrap();
        sh(&format!("mount -o remount,hidepid=invisible,gid={gid} /proc"));
        // Under the unit's capabilities (no CAP_SYS_PTRACE), outside the
        // exempt group: it cannot see other users' processes, so it must
        // not serve at all.
        let refused = w.try_start_helper(&[]).expect_err("the helper served behind hidepid");
        eprintln!("refusal: {refused}");
        assert!(refused.contains("hidepid") && refused.contains(&format!("SupplementaryGroups={gid}")), "{refused}");
        // The documented fix: the hidepid group as a supplementary group.
        w.try_start_helper(&[gid]).expect("the helper in the exempt group");
        let a = w.arm();
        leave_attackers(&w, &a, &["stop"]);
        w.wait_removed(&a.user, a.uid);
        assert!(processes_of(a.uid).is_empty());
        assert_fresh_login_works(&w);
    }
}

sandbox_test! {
    fn given_uidmap_installed_then_no_subordinate_ids_and_the_user_cannot_run_anything_under_another_uid() {
        // Probe: without uidmap, useradd hands out no sub-ids anyway and
        // the test would show nothing; CI must have it.
        let newuidmap = std::path::Path::new("/usr/bin/newuidmap").exists();
        eprintln!("probe: /usr/bin/newuidmap present: {newuidmap}");
        assert!(newuidmap || std::env::var("CI").as_deref() != Ok("true"), "uidmap is not installed (scripts/setup.sh installs it)");
        if !newuidmap {
            return;
        }
        let w = World::new();
        let a = w.arm();
        let out = w.ssh_password(
            &a.user,
            &a.password,
            "grep -c \"^$(id -un):\" /etc/subuid /etc/subgid; \
             unshare --user --map-auto --map-root-user id -u >/dev/null 2>&1 && echo ESCAPED || echo refused",
        );
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!("{text}");
        assert!(text.contains("/etc/subuid:0") && text.contains("/etc/subgid:0"), "{text}");
        assert!(text.contains("refused") && !text.contains("ESCAPED"), "{text}");
        w.wait_removed(&a.user, a.uid);
        let subuid = std::fs::read_to_string("/etc/subuid").unwrap();
        let subgid = std::fs::read_to_string("/etc/subgid").unwrap();
        assert!(!subuid.contains("user-") && !subgid.contains("user-"), "{subuid}{subgid}");
    }
}

sandbox_test! {
    fn given_the_killer_account_then_it_is_a_locked_system_user_that_owns_nothing_after_two_removals_at_once() {
        let w = World::new();
        let (uid, _) = killer();
        assert!(uid < 1000, "killer uid {uid} is not a system uid");
        let shadow = sh("getent shadow codext-killer");
        let hash = shadow.split(':').nth(1).unwrap();
        assert!(hash.starts_with('!') || hash.starts_with('*'), "killer password not locked: {hash:?}");
        assert!(sh("getent passwd codext-killer").trim().ends_with("/usr/sbin/nologin"));
        // Two users with processes left behind, logged out at once.
        let users = [w.arm(), w.arm()];
        let mut held: Vec<_> = users.iter().map(|a| w.hold_session(&a.user, &a.password, 1)).collect();
        for a in &users {
            let out = w.ssh_password(&a.user, &a.password, "true");
            assert!(!out.status.success(), "token reused");
        }
        for c in &mut held {
            let _ = c.kill();
        }
        for c in &mut held {
            let _ = c.wait();
        }
        for a in &users {
            w.wait_removed(&a.user, a.uid);
        }
        assert!(processes_of(uid).is_empty(), "the killer uid owns processes");
    }
}

sandbox_test! {
    fn given_userdel_stuck_past_its_deadline_then_the_removal_is_retried_shown_and_completes_and_pwck_shows_nothing_new() {
        let w = World::with_config("[limits]\ntool_timeout = \"2s\"\nreaper_interval = \"1s\"\n");
        let baseline = shadow_checks();
        let a = w.arm();
        let mut held = w.hold_session(&a.user, &a.password, 1);
        // Jam the password files the way a stuck tool would: hold
        // lckpwdf(3)'s lock, which userdel waits for (up to 15 s).
        let lock = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open("/etc/.pwd.lock").unwrap();
        let whole = libc::flock { l_type: libc::F_WRLCK as i16, l_whence: libc::SEEK_SET as i16, l_start: 0, l_len: 0, l_pid: 0 };
        nix::fcntl::fcntl(std::os::fd::AsRawFd::as_raw_fd(&lock), nix::fcntl::FcntlArg::F_SETLK(&whole)).unwrap();
        let _ = held.kill();
        let _ = held.wait();
        // The removal fails at the deadline, and status says so.
        wait_until(Duration::from_secs(20), "a failed removal in status", || {
            let out = World::helper_cli(&["status", "--json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            v.as_array().into_iter().flatten().any(|e| {
                e["user"] == a.user.as_str() && e["removal"]["last_error"].as_str().is_some_and(|m| m.contains("deadline"))
            })
        });
        let text = String::from_utf8_lossy(&World::helper_cli(&["status"]).stdout).into_owned();
        eprintln!("{text}");
        assert!(text.contains("removal since") && text.contains("last failure") && text.contains("next try at"), "{text}");
        let out = World::helper_cli(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let stuck = v.as_array().into_iter().flatten().find(|e| e["user"] == a.user.as_str()).cloned().unwrap_or_default();
        assert!(stuck["removal"]["next_retry"].is_string(), "{stuck}");
        assert!(in_passwd(&a.user), "removed while the password files were locked?");
        drop(lock);
        w.wait_removed(&a.user, a.uid);
        assert_eq!(shadow_checks(), baseline);
    }
}

sandbox_test! {
    fn given_a_userdel_that_never_returns_then_it_is_killed_at_its_deadline_shown_and_the_removal_completes_once_userdel_works() {
        let w = World::with_config("[limits]\ntool_timeout = \"2s\"\nreaper_interval = \"1s\"\n");
        let baseline = shadow_checks();
        let a = w.arm();
        let mut held = w.hold_session(&a.user, &a.password, 1);
        // A userdel that hangs for good (the lock hook above only makes it
        // wait ~15 s and give up by itself): without a deadline the removal
        // would wait on it for ever.
        sh("printf '#!/bin/sh\\nexec sleep 1000\\n' > /run/hanging-userdel && chmod 755 /run/hanging-userdel \
            && mount --bind /run/hanging-userdel /usr/sbin/userdel");
        let _ = held.kill();
        let _ = held.wait();
        wait_until(Duration::from_secs(20), "a removal failed at its deadline in status", || {
            let out = World::helper_cli(&["status", "--json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            v.as_array().into_iter().flatten().any(|e| {
                e["user"] == a.user.as_str() && e["removal"]["last_error"].as_str().is_some_and(|m| m.contains("deadline"))
            })
        });
        assert!(in_passwd(&a.user), "removed while userdel hung?");
        // Each hanging userdel was killed at its deadline, none piles up.
        let hanging: u32 = sh("pgrep -fc '^sleep 1000' || true").trim().parse().unwrap_or(0);
        assert!(hanging <= 1, "{hanging} hanging userdel runs: they were not killed at their deadline");
        sh("umount /usr/sbin/userdel");
        w.wait_removed(&a.user, a.uid);
        assert_eq!(shadow_checks(), baseline);
    }
}

sandbox_test! {
    fn given_a_userdel_killed_between_passwd_and_shadow_then_the_shadow_line_is_repaired_and_pwck_shows_nothing_new() {
        let w = World::new();
        let baseline = shadow_checks();
        let a = w.arm();
        let mut held = w.hold_session(&a.user, &a.password, 1);
        // What a userdel killed after writing /etc/passwd leaves: the
        // passwd line gone, the shadow line still there.
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        let kept: String = passwd.lines().filter(|l| !l.starts_with(&format!("{}:", a.user))).map(|l| format!("{l}\n")).collect();
        std::fs::write("/etc/passwd", kept).unwrap();
        assert!(sh("cat /etc/shadow").contains(&a.user));
        let _ = held.kill();
        let _ = held.wait();
        wait_until(Duration::from_secs(30), "the shadow line to go", || !sh("cat /etc/shadow").contains(&a.user));
        wait_until(Duration::from_secs(30), "the state to forget the user", || w.state()["users"].get(&a.user).is_none());
        assert!(processes_of(a.uid).is_empty());
        assert!(!std::path::Path::new(&format!("/home/{}", a.user)).exists());
        assert_eq!(shadow_checks(), baseline);
        w.wait_audit("the repair event", |e| e["event"] == "repair" && e["user"] == a.user.as_str());
    }
}

sandbox_test! {
    fn given_revokes_racing_logins_then_no_account_is_ever_left_behind() {
        let w = World::new();
        let n = rounds(20);
        let mut outcomes = std::collections::BTreeMap::new();
        for _ in 0..n {
            let a = w.arm();
            std::thread::scope(|s| {
                let login = s.spawn(|| w.ssh_password(&a.user, &a.password, "id -u"));
                // Revoke the moment the token is consumed: while the
                // account is being created, or just after.
                while !login.is_finished() {
                    let state = w.state();
                    let e = &state["users"][&a.user];
                    let phase = e["phase"].as_str().unwrap_or("").to_owned();
                    if phase == "creating" || phase == "active" {
                        let when = format!("{phase}, account_created={}", e["account_created"]);
                        if World::helper_cli(&["revoke", &a.user]).status.success() {
                            *outcomes.entry(when).or_insert(0) += 1;
                            break;
                        }
                    }
                }
                let _ = login.join();
            });
            wait_until(Duration::from_secs(30), "the user to be forgotten", || {
                w.state()["users"].get(&a.user).is_none() && !in_passwd(&a.user) && !resolves(&a.user)
            });
            assert!(processes_of(a.uid).is_empty());
            assert!(!std::path::Path::new(&format!("/home/{}", a.user)).exists());
        }
        eprintln!("{n} revokes raced against logins; revoked in phase: {outcomes:?}");
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        assert!(!passwd.lines().any(|l| l.starts_with("user-")), "{passwd}");
    }
}

/// Files of `uid` on every writable place a user reaches in the sandbox.
fn leftovers_of(uid: u32) -> Vec<std::path::PathBuf> {
    [
        "/tmp",
        "/var/tmp",
        "/dev/shm",
        "/run/lock",
        "/var/spool",
        "/var/mail",
        "/home",
    ]
    .iter()
    .flat_map(|d| codext_tests::world::files_of(std::path::Path::new(d), uid))
    .collect()
}

/// SysV IPC ids of `uid` (owner or creator) in the sandbox's IPC namespace.
fn ipc_of(uid: u32) -> Vec<String> {
    ["shm", "sem", "msg"]
        .iter()
        .flat_map(|k| {
            std::fs::read_to_string(format!("/proc/sysvipc/{k}"))
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter(|l| l.split_whitespace().any(|f| f == uid.to_string()))
                .map(|l| format!("{k}: {l}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

sandbox_test! {
    fn given_setuid_files_deep_in_every_shared_folder_jobs_and_ipc_then_nothing_of_the_user_survives_its_removal() {
        let w = World::new();
        let a = w.arm();
        let deep = "d=$1; for i in $(seq 200); do d=$d/x; done; mkdir -p $d && cp /bin/true $d/suid && chmod 4755 $d/suid";
        let script = format!(
            "plant() {{ {deep}; }}; plant /tmp/t; plant /var/tmp/t; plant /dev/shm/t; \
             mkdir /tmp/closed && touch /tmp/closed/a /tmp/closed/b && chmod 000 /tmp/closed; \
             ln -s /etc/passwd /tmp/link-out; touch /run/lock/mine.lock; \
             {WORK}/bin/hostile sysv; \
             echo '* * * * * true' | crontab - && echo crontab-ok; \
             (echo true | at now + 30 minutes) 2>&1; \
             echo suid=$(find /tmp/t /var/tmp/t /dev/shm/t -name suid -perm -4000 | wc -l); echo planted"
        );
        let out = w.ssh_password(&a.user, &a.password, &script);
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
        // Planted (checked inside the session: removal starts at logout).
        assert!(text.contains("suid=3") && text.contains("crontab-ok") && text.contains("shm "), "{text}");
        let passwd_before = std::fs::read("/etc/passwd").unwrap();
        w.wait_removed(&a.user, a.uid);
        let left = leftovers_of(a.uid);
        assert!(left.is_empty(), "left behind: {left:?}");
        assert!(ipc_of(a.uid).is_empty(), "IPC left: {:?}", ipc_of(a.uid));
        // The symlink's target was not touched (only the user's line went).
        let passwd_after = std::fs::read_to_string("/etc/passwd").unwrap();
        assert!(passwd_after.lines().count() + 1 >= String::from_utf8_lossy(&passwd_before).lines().count());
        assert!(passwd_after.contains("root:"));
        // Removed clean: no quarantine follows an "ok".
        w.wait_audit("the remove event", |e| e["event"] == "remove" && e["user"] == a.user.as_str() && e["result"] == "ok");
        assert!(!w.audit().iter().any(|e| e["event"] == "quarantine"));
        assert_fresh_login_works(&w);
    }
}

sandbox_test! {
    fn given_a_file_the_sweep_cannot_remove_then_the_uid_is_quarantined_never_handed_out_and_released_after_cleanup() {
        // A range of 2 uids: wrapping would hand the first one out again.
        let w = World::with_config("[accounts]\nuid_min = 59000\nuid_max = 59001\n[limits]\nreaper_interval = \"1s\"\n");
        // A second file system inside /tmp: the sweep never deletes there.
        sh("mkdir /tmp/other && mount -t tmpfs -o mode=1777 tmpfs /tmp/other");
        let a = w.arm();
        let out = w.ssh_password(&a.user, &a.password, "touch /tmp/other/kept && echo ok");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
        wait_until(Duration::from_secs(30), "the uid to be quarantined", || {
            w.state()["quarantine"].get(a.uid.to_string()).is_some()
        });
        let list = String::from_utf8_lossy(&World::helper_cli(&["quarantine", "list"]).stdout).into_owned();
        eprintln!("{list}");
        assert!(list.contains(&format!("uid {}", a.uid)) && list.contains("/tmp/other/kept"), "{list}");
        w.wait_audit("the remove event", |e| e["event"] == "remove" && e["result"] == "incomplete");
        assert!(w.audit().iter().any(|e| e["event"] == "quarantine" && e["uid"] == a.uid));
        assert_eq!(doctor_quarantine(), ("warn".to_owned(), true), "doctor names the quarantined uid");
        // The other uid is handed out, then nothing: the quarantined one never.
        let (second, _) = w.issue();
        assert_ne!(w.state()["users"][&second]["uid"].as_u64(), Some(a.uid as u64));
        let refused = World::helper_cli(&["issue", "--client-key", "/home/agent/agent.key.pub"]);
        let why = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && why.contains("quarantine list"), "{why}");
        // The operator looks, decides and releases it (a later sweep that
        // finds nothing would release it too).
        let released = World::helper_cli(&["quarantine", "release", &a.uid.to_string()]);
        assert!(released.status.success(), "{}", String::from_utf8_lossy(&released.stderr));
        assert!(w.state()["quarantine"].get(a.uid.to_string()).is_none());
        assert_eq!(doctor_quarantine().0, "ok");
        assert!(World::helper_cli(&["quarantine", "release", &a.uid.to_string()]).status.code() == Some(3));
        sh("rm /tmp/other/kept && umount /tmp/other");
    }
}

/// doctor's quarantine check: its status, and whether it names the command
/// to inspect the uids.
fn doctor_quarantine() -> (String, bool) {
    let out = World::helper_cli(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor --json");
    let c = v["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["check"] == "quarantine"))
        .cloned()
        .expect("a quarantine check");
    let advice = c["advice"].as_str().unwrap_or_default();
    (
        c["status"].as_str().unwrap_or_default().to_owned(),
        advice.contains("quarantine list"),
    )
}
