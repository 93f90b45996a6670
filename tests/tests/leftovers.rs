//! What a removed user leaves outside its account record, played by the
//! hostile user: POSIX message queues and files on every writable mount,
//! a flood of files while others log in, a file the sweep cannot remove,
//! at jobs and crontabs with the real atd and cron running, a uid range
//! forced to wrap, and lastlog/faillog history. The sandbox's root file
//! system is read-only, so "no file of the uid anywhere" is checked on the
//! finite set of its writable mounts ([`codext_tests::mounts`]).

use codext_tests::mounts::{files_anywhere, writable_mounts};
use codext_tests::sandbox_test;
use codext_tests::world::{processes_of, sh, wait_until, World, WORK};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

sandbox_test! {
    fn given_a_posix_message_queue_and_a_file_on_every_writable_mount_then_no_file_of_the_user_is_left_anywhere() {
        let w = World::new();
        let mounts = writable_mounts();
        eprintln!("writable mounts: {mounts:?}");
        assert!(mounts.iter().any(|m| m == Path::new("/dev/mqueue")), "no /dev/mqueue mount");
        let a = w.arm();
        // A file wherever the user can write, a queue, a lock file.
        let points: Vec<String> = mounts.iter().map(|m| m.display().to_string()).collect();
        let script = format!(
            "n=0; for m in {}; do touch \"$m/left-$(id -u)\" 2>/dev/null && n=$((n+1)); done; echo planted=$n; \
             touch /run/lock/mine.lock; {WORK}/bin/hostile mqueue codext-left; ls -l /dev/mqueue",
            points.join(" ")
        );
        let out = w.ssh_password(&a.user, &a.password, &script);
        let text = stdout(&out);
        eprintln!("{text}");
        assert!(text.contains("mqueue ok") && text.contains("codext-left"), "{text}");
        w.wait_removed(&a.user, a.uid);
        let left = files_anywhere(a.uid);
        assert!(left.is_empty(), "left behind: {left:?}");
        assert!(!Path::new("/dev/mqueue/codext-left").exists());
    }
}

sandbox_test! {
    fn given_a_flood_of_files_in_tmp_then_another_login_succeeds_during_the_sweep_and_the_sweep_finishes() {
        let count: usize = std::env::var("CODEXT_FLOOD_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
        let w = World::with_config("[limits]\nreaper_interval = \"1s\"\n");
        let a = w.arm();
        let made = Instant::now();
        let out = w.ssh_password(
            &a.user,
            &a.password,
            &format!("mkdir /tmp/flood && cd /tmp/flood && seq {count} | xargs touch && ls -f | wc -l"),
        );
        let planted: usize = stdout(&out).trim().parse().unwrap_or(0);
        eprintln!("{planted} entries planted in {:?}", made.elapsed());
        assert!(planted >= count, "{}", String::from_utf8_lossy(&out.stderr));
        // Logout happened: the removal and its sweep run now. Another user
        // logs in meanwhile.
        let logout = Instant::now();
        let b = w.arm();
        let login = Instant::now();
        let out = w.ssh_password(&b.user, &b.password, "id -u");
        let login_took = login.elapsed();
        assert_eq!(stdout(&out).trim(), b.uid.to_string(), "{}", String::from_utf8_lossy(&out.stderr));
        let during = Path::new("/tmp/flood").exists();
        w.wait_removed(&a.user, a.uid);
        let swept = logout.elapsed();
        eprintln!(
            "sweep of {count} files: removal done {swept:?} after logout; the other login took {login_took:?} \
             (flood folder still there when it finished: {during})"
        );
        assert!(!Path::new("/tmp/flood").exists());
        w.wait_removed(&b.user, b.uid);
    }
}

sandbox_test! {
    fn given_an_immutable_file_and_a_range_of_three_uids_forced_to_wrap_then_the_uid_is_quarantined_shown_never_handed_out_and_released_after_cleanup() {
        // Probe: tmpfs takes chattr +i on this kernel (Linux 6.0 and later).
        let probe = sh("touch /tmp/probe && chattr +i /tmp/probe && lsattr /tmp/probe; chattr -i /tmp/probe; rm -f /tmp/probe");
        eprintln!("probe: {}", probe.trim());
        assert!(probe.contains("-i-"), "tmpfs does not take chattr +i here: {probe}");
        let w = World::with_config("[accounts]\nuid_min = 59000\nuid_max = 59002\n[limits]\nreaper_interval = \"1s\"\n");
        let a = w.arm();
        let mut held = w.hold_session(&a.user, &a.password, 1);
        sh(&format!("touch /tmp/stuck && chown {} /tmp/stuck && chattr +i /tmp/stuck", a.uid));
        let _ = held.kill();
        let _ = held.wait();
        wait_until(Duration::from_secs(30), "the uid to be quarantined", || {
            w.state()["quarantine"].get(a.uid.to_string()).is_some()
        });
        let status = stdout(&World::helper_cli(&["status"]));
        eprintln!("{status}");
        assert!(status.contains(&format!("quarantined uid {}", a.uid)) && status.contains("/tmp/stuck"), "{status}");
        w.wait_audit("the quarantine event", |e| e["event"] == "quarantine" && e["uid"] == a.uid);
        // Wrap the range twice: only the two other uids come out.
        let mut seen = Vec::new();
        for _ in 0..4 {
            let b = w.arm();
            seen.push(b.uid);
            assert_ne!(b.uid, a.uid, "the quarantined uid was handed out");
            let out = w.ssh_password(&b.user, &b.password, "id -u");
            assert_eq!(stdout(&out).trim(), b.uid.to_string());
            w.wait_removed(&b.user, b.uid);
        }
        eprintln!("uids handed out while {} is quarantined: {seen:?}", a.uid);
        assert!([59000, 59001, 59002].iter().any(|u| seen.contains(&codext_tests::uid(*u))));
        assert_eq!(seen[0], seen[2], "the range did not wrap: {seen:?}");
        assert!(w.state()["quarantine"].get(a.uid.to_string()).is_some(), "released while the file is there");
        // The operator cleans up and releases it; it is handed out again.
        sh("chattr -i /tmp/stuck && rm /tmp/stuck");
        let released = World::helper_cli(&["quarantine", "release", &a.uid.to_string()]);
        assert!(released.status.success(), "{}", String::from_utf8_lossy(&released.stderr));
        let mut again = Vec::new();
        for _ in 0..3 {
            let (user, _) = w.issue();
            again.push(w.state()["users"][&user]["uid"].as_u64().unwrap_or(0));
        }
        assert!(again.contains(&(a.uid as u64)), "released uid never handed out: {again:?}");
    }
}

/// The 292-byte `struct lastlog` (time, line, host) or 32-byte `struct
/// faillog` record of `uid` in `file`, if the file reaches that far.
fn record(file: &str, uid: u32, size: u64) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(file).expect("open");
    let mut buf = vec![0u8; size as usize];
    if f.seek(std::io::SeekFrom::Start(uid as u64 * size)).is_err()
        || f.read_exact(&mut buf).is_err()
    {
        return Vec::new();
    }
    buf
}

sandbox_test! {
    fn given_lastlog_and_faillog_history_of_a_uid_then_its_next_holder_starts_clean_and_useradd_never_gets_l() {
        // The source never asks useradd to skip the reset.
        let src = std::fs::read_to_string(codext_tests::repo().join("codext-helper/src/accounts/mod.rs")).unwrap();
        assert!(!src.contains("\"-l\"") && !src.contains("no-log-init"), "useradd is told not to reset lastlog/faillog");
        let w = World::with_config("[accounts]\nuid_min = 59000\nuid_max = 59000\n");
        sh("touch /var/log/lastlog /var/log/faillog && chmod 644 /var/log/lastlog /var/log/faillog");
        let a = w.arm();
        assert_eq!(stdout(&w.ssh_password(&a.user, &a.password, "id -u")).trim(), a.uid.to_string());
        w.wait_removed(&a.user, a.uid);
        // The history the next holder must not inherit: a last login from a
        // foreign host and failed logins, as the previous holder left them.
        let mut ll = vec![0u8; 292];
        ll[..4].copy_from_slice(&1_700_000_000u32.to_le_bytes());
        ll[4..9].copy_from_slice(b"pts/9");
        ll[36..48].copy_from_slice(b"planted.host");
        let mut fl = vec![0u8; 32];
        fl[..2].copy_from_slice(&7u16.to_le_bytes());
        fl[16..24].copy_from_slice(b"tty-evil");
        for (file, rec, size) in [("/var/log/lastlog", &ll, 292u64), ("/var/log/faillog", &fl, 32)] {
            use std::io::{Seek, Write};
            let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
            f.seek(std::io::SeekFrom::Start(a.uid as u64 * size)).unwrap();
            f.write_all(rec).unwrap();
            assert_eq!(record(file, a.uid, size), *rec);
        }
        let b = w.arm();
        assert_eq!(b.uid, a.uid, "a range of one uid hands the same uid out");
        let mut held = w.hold_session(&b.user, &b.password, 1);
        let last = record("/var/log/lastlog", b.uid, 292);
        let fail = record("/var/log/faillog", b.uid, 32);
        eprintln!("lastlog host {:?}, faillog {:?}", String::from_utf8_lossy(&last[36..]).trim_end_matches('\0'), &fail);
        assert!(!last.windows(12).any(|x| x == b"planted.host"), "the next holder inherits the last login");
        assert!(fail.iter().all(|b| *b == 0), "the next holder inherits failed logins: {fail:?}");
        let _ = held.kill();
        let _ = held.wait();
        w.wait_removed(&b.user, b.uid);
    }
}

/// Logs `a` in running `script`, which prints `planted` and then keeps
/// the session open; returns once `planted` is printed.
fn session_running(w: &World, a: &codext_tests::world::Armed, script: &str) -> std::process::Child {
    use std::io::BufRead;
    let mut cmd = Command::new("sshpass");
    cmd.arg("-e")
        .arg("ssh")
        .args(codext_tests::world::ssh_args(&[
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
        ]))
        .arg(format!("{}@127.0.0.1", a.user))
        .arg(script);
    let mut child = w
        .as_agent(&mut cmd)
        .env("SSHPASS", &a.password)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ssh");
    let out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    let _ = std::io::BufReader::new(out).read_line(&mut line);
    assert_eq!(line.trim(), "planted", "the session did not plant its jobs");
    child
}

/// pids whose parent is `ppid`.
fn children_of(ppid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .ok()
                        .and_then(|s| {
                            s.rsplit_once(')')
                                .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok())
                        })
                        == Some(ppid)
                })
                .collect()
        })
        .unwrap_or_default()
}

sandbox_test! {
    fn given_an_at_job_and_a_crontab_of_a_removed_user_then_with_atd_and_cron_running_neither_runs_as_the_next_holder_of_its_uid() {
        for d in ["/usr/sbin/atd", "/usr/sbin/cron"] {
            let there = Path::new(d).exists();
            eprintln!("probe: {d} present: {there}");
            assert!(there || std::env::var("CI").as_deref() != Ok("true"), "{d} missing (scripts/setup.sh installs it)");
            if !there {
                return;
            }
        }
        // One uid: the next grant gets the same one.
        let w = World::with_config("[accounts]\nuid_min = 59000\nuid_max = 59000\n[limits]\nreaper_interval = \"1s\"\n");
        // Take setup's PAM rule out of atd's and cron's stacks: only the
        // removal of the spool entries stands between the job and the
        // next holder.
        sh("sed -i '/codext/d' /etc/pam.d/atd /etc/pam.d/cron");
        let a = w.arm();
        let out = w.ssh_password(
            &a.user,
            &a.password,
            "cd /tmp && echo 'touch /tmp/at-ran-as-$(id -u)-from-the-previous-holder' | at now 2>&1; cd; \
             echo '* * * * * touch /tmp/cron-ran-from-the-previous-holder' | crontab - && echo crontab-ok; \
             ls /var/spool/cron/atjobs 2>&1; atq",
        );
        let text = stdout(&out);
        eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("crontab-ok") && text.contains(&a.user), "{text}");
        w.wait_removed(&a.user, a.uid);
        let b = w.arm();
        assert_eq!(b.uid, a.uid);
        // The next holder's own job and crontab, in a session kept open:
        // proof that atd and cron do run jobs of this uid.
        let mut held = session_running(
            &w,
            &b,
            "echo 'touch /tmp/at-control' | at now 2>/dev/null; \
             echo '* * * * * touch /tmp/cron-control' | crontab - && echo planted; sleep 150",
        );
        let started = Instant::now();
        let mut atd = Command::new("/usr/sbin/atd").arg("-f").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let mut cron = Command::new("/usr/sbin/cron").arg("-f").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        wait_until(Duration::from_secs(30), "atd to run the next holder's job", || Path::new("/tmp/at-control").exists());
        wait_until(Duration::from_secs(75), "cron to run the next holder's crontab", || Path::new("/tmp/cron-control").exists());
        wait_until(Duration::from_secs(30), "atd's and cron's jobs to end", || {
            children_of(atd.id()).is_empty() && children_of(cron.id()).iter().all(|c| children_of(*c).is_empty())
        });
        eprintln!("atd and cron ran the next holder's jobs; waited {:?}", started.elapsed());
        let ran: Vec<_> = std::fs::read_dir("/tmp").unwrap().flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().contains("previous-holder")).collect();
        assert!(ran.is_empty(), "a job of the removed user ran: {ran:?}");
        let _ = atd.kill();
        let _ = cron.kill();
        let _ = atd.wait();
        let _ = cron.wait();
        let _ = held.kill();
        let _ = held.wait();
        w.wait_removed(&b.user, b.uid);
        assert!(processes_of(b.uid).is_empty());
    }
}
