//! Abuse and hygiene: failures rate-limited per source (never globally),
//! hostile socket traffic, the audit trail, and no secret anywhere it
//! should not be.

use codext_tests::flood::{authenticate, flood};
use codext_tests::sandbox_test;
use codext_tests::world::{run, wait_until, World, WORK};
use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn probe(mode: &str) -> String {
    let out =
        run(Command::new(format!("{WORK}/bin/socket-probe"))
            .args(["/run/codext/helper.sock", mode]));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

sandbox_test! {
    fn given_failures_from_one_source_then_that_source_is_limited_and_others_are_not() {
        let w = World::with_config("[limits]\nfailures_per_source_per_minute = 3\nmax_attempts = 10\nreaper_interval = \"1s\"\n[audit]\nsummary_window = \"1s\"\n");
        let a = w.arm();
        let b = w.arm();
        for _ in 0..3 {
            assert!(!w.ssh_password(&a.user, "nottheright0token0nottheright0token0nottheright0tok", "true").status.success());
        }
        // 127.0.0.1 has used up its failures: even the right token is
        // refused from there, without being checked or counted…
        assert!(!w.ssh_password(&b.user, &b.password, "true").status.success());
        // The refusal is counted, in the window's summary for that source.
        wait_until(Duration::from_secs(10), "the summary of the refusal", || {
            w.audit().iter().any(|e| e["event"] == "attempts_summary" && e["source"] == "127.0.0.1" && e["rate_limited"].as_u64() >= Some(1))
        });
        // …while another source is served, with B's token intact.
        let out = w.ssh_password_from("127.0.0.2", &b.user, &b.password, "id -un");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), b.user);
        w.wait_removed(&b.user, b.uid);
    }
}

sandbox_test! {
    fn given_hostile_frames_and_idle_connections_then_the_helper_answers_or_closes_and_leaks_nothing() {
        let w = World::new();
        let pid = w.helper_pid();
        assert_eq!(probe("ping"), "reply Ok pong");
        let threads = proc_status(pid, "Threads:");
        let fds = open_fds(pid);
        // Each bad input gets a refusal or a closed connection, never a crash.
                assert_eq!(probe("garbage"), "reply BadRequest protocol version 104 is not supported (want 2); pam_codext and codext-helper must come from one release");
        assert_eq!(probe("reply-as-request"), "reply BadRequest unknown message kind 0");
        assert_eq!(probe("oversized"), "closed");
        assert_eq!(probe("truncated"), "closed");
        // One request per connection: the second is not read.
        assert_eq!(probe("two"), "reply Ok pong\nclosed");
        // 300 idle connections: the helper serves 64 at once, the rest wait
        // for a slot (up to SLOT_WAIT, 10 s: a slot frees every read
        // timeout, 3 s, so none waits that long here), and each is closed
        // after its read timeout.
        let idle = probe("idle:300");
        assert!(idle.starts_with("idle opened 300 closed 300"), "{idle}");
        assert_eq!(probe("ping"), "reply Ok pong");
        // Nothing leaked: descriptors are back where they were, and of the
        // 64 connection threads at most the 8 the helper keeps for the next
        // connections remain (each ends after 30 s without work).
        wait_until(Duration::from_secs(10), "connection threads to end", || proc_status(pid, "Threads:") <= threads + 8);
        assert_eq!(open_fds(pid), fds);
        let log = std::fs::read_to_string(codext_tests::world::HELPER_LOG).unwrap();
        assert!(log.contains("frame length 2147483647 is outside"));
        // And it still logs people in.
        let a = w.arm();
        let out = w.login(&a.puzzle, &["id -un"]);
        assert!(out.status.success());
        w.wait_removed(&a.user, a.uid);
    }
}

sandbox_test! {
    fn given_a_full_flow_then_the_audit_trail_records_every_step_verifies_and_detects_tampering() {
        let w = World::new();
        let a = w.arm();
        assert!(!w.ssh_password(&a.user, "wrongwrongwrongwrongwrongwrongwrongwrongwrongwrongwr", "true").status.success());
        let out = w.login(&a.puzzle, &["true"]);
        assert!(out.status.success());
        w.wait_removed(&a.user, a.uid);
        let (revoked, _) = w.issue();
        assert!(World::helper_cli(&["revoke", &revoked]).status.success());
        let trail = w.audit();
        let mine: Vec<String> = trail
            .iter()
            .filter(|e| e["user"] == a.user.as_str())
            .map(|e| format!("{} {}", e["event"].as_str().unwrap(), e["result"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(
            mine,
            // (record_open and record: the one channel's recording.)
            vec!["issue ", "answer armed", "verify wrong password", "verify ok", "create ", "key_authorize ", "session_open ", "record_open ", "record ", "session_close ", "key_withdraw ", "remove ok"],
        );
        assert!(trail.iter().any(|e| e["event"] == "revoke" && e["user"] == revoked.as_str()));
        assert!(trail.iter().filter(|e| e["event"] == "verify").all(|e| e["source"] == "127.0.0.1"));
        let ok = World::helper_cli(&["audit", "verify"]);
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
        // Edit one line: detected, with a one-line message.
        let log = std::fs::read_to_string("/var/log/codext/audit.jsonl").unwrap();
        std::fs::write("/var/log/codext/audit.jsonl", log.replacen("wrong password", "ok", 1)).unwrap();
        let bad = World::helper_cli(&["audit", "verify"]);
        assert_eq!(bad.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&bad.stderr).contains("edited"));
        // Cut the tail: detected through the head kept outside the log.
        let lines: Vec<&str> = log.lines().collect();
        std::fs::write("/var/log/codext/audit.jsonl", lines[..lines.len() - 2].join("\n") + "\n").unwrap();
        let bad = World::helper_cli(&["audit", "verify"]);
        assert!(String::from_utf8_lossy(&bad.stderr).contains("tail"), "{}", String::from_utf8_lossy(&bad.stderr));
    }
}

/// The helper log from byte `from` on.
fn log_since(from: usize) -> String {
    let log = std::fs::read_to_string(codext_tests::world::HELPER_LOG).unwrap();
    log.get(from..).unwrap_or("").to_owned()
}

fn log_len() -> usize {
    std::fs::metadata(codext_tests::world::HELPER_LOG)
        .map(|m| m.len() as usize)
        .unwrap_or(0)
}

sandbox_test! {
    fn given_pings_then_the_helper_logs_them_at_debug_only_and_at_the_default_level_writes_nothing() {
        let mut w = World::new();
        // The harness runs the helper at debug: each ping is one <7> line.
        let before = log_len();
        for _ in 0..20 {
            assert_eq!(probe("ping"), "reply Ok pong");
        }
        let lines = log_since(before);
        let lines: Vec<&str> = lines.lines().collect();
        assert_eq!(lines.iter().filter(|l| l.contains(": connection ") && l.ends_with("ping (protocol 2)")).count(), 20, "{lines:?}");
        assert!(lines.iter().all(|l| l.starts_with("<7>codext-helper: ")), "{lines:?}");
        // At the default level (info): the start-up lines, then not one
        // line for any number of pings.
        w.kill_helper();
        w.try_start_helper_with(&[], &[("CODEXT_LOG_LEVEL", "info")]).unwrap();
        let started = log_since(before);
        assert!(started.contains("<6>codext-helper: listening on /run/codext/helper.sock"), "{started}");
        let before = log_len();
        for _ in 0..20 {
            assert_eq!(probe("ping"), "reply Ok pong");
        }
        assert_eq!(log_since(before), "", "a ping wrote a line at the default level");
        // A refusal is still a warning there.
        assert_eq!(probe("garbage").split(';').next(), Some("reply BadRequest protocol version 104 is not supported (want 2)"));
        assert!(log_since(before).starts_with("<4>codext-helper: connection "), "{}", log_since(before));
    }
}

sandbox_test! {
    fn given_an_old_module_or_a_lying_root_client_then_version_1_still_works_and_a_claimed_pid_never_keys_a_session() {
        let w = World::new();
        // A version-1 frame is answered, in version 1.
        assert_eq!(probe("v1-ping"), "reply Ok pong");
        let a = w.arm();
        let mut held = w.hold_session(&a.user, &a.password, 1);
        let pids = |w: &World| -> Vec<u64> {
            w.state()["users"][a.user.as_str()]["sessions"]
                .as_array()
                .map(|s| s.iter().filter_map(|s| s["pid"].as_u64()).collect())
                .unwrap_or_default()
        };
        let real = pids(&w);
        assert_eq!(real.len(), 1);
        // A root client claiming to be the real session's sshd process
        // cannot close that session: it closes its own (none).
        let out = probe(&format!("v1-close:{}:{}", a.user, real[0]));
        assert!(out.ends_with("reply Ok session closed"), "{out}");
        assert_eq!(pids(&w), real, "a claimed pid closed someone else's session");
        // Nor can it open one under another process's pid: the session is
        // keyed on its own pid, which the kernel names.
        let out = probe(&format!("v1-open:{}:4242", a.user));
        assert!(out.ends_with("reply Ok session opened"), "{out}");
        let me: u64 = out
            .lines()
            .find_map(|l| l.strip_prefix("probe pid "))
            .and_then(|p| p.parse().ok())
            .expect("the probe's pid");
        let opened: Vec<u64> = w
            .audit()
            .iter()
            .filter(|e| e["event"] == "session_open" && e["user"] == a.user.as_str())
            .filter_map(|e| e["pid"].as_u64())
            .collect();
        assert_eq!(opened, vec![real[0], me], "sessions were opened under {opened:?}");
        let log = std::fs::read_to_string(codext_tests::world::HELPER_LOG).unwrap();
        assert!(log.contains("open_session claims pid 4242; the peer's pid is used"), "{log}");
        // The probe has exited: its session is dropped, the real one stays.
        wait_until(Duration::from_secs(10), "the probe's session to be dropped", || pids(&w) == real);
        let _ = held.kill();
        let _ = held.wait();
        w.wait_removed(&a.user, a.uid);
    }
}

/// Every text form the token could take.
fn encodings(token: &[u8]) -> Vec<(String, Vec<u8>)> {
    use data_encoding::{
        BASE32, BASE32_NOPAD, BASE64, BASE64URL, BASE64URL_NOPAD, BASE64_NOPAD, HEXLOWER, HEXUPPER,
    };
    let mut v = vec![("raw".to_string(), token.to_vec())];
    for (name, enc) in [
        ("hex", &HEXLOWER),
        ("HEX", &HEXUPPER),
        ("base64", &BASE64),
        ("base64-nopad", &BASE64_NOPAD),
        ("base64url", &BASE64URL),
        ("base64url-nopad", &BASE64URL_NOPAD),
        ("BASE32", &BASE32),
        ("BASE32-nopad", &BASE32_NOPAD),
    ] {
        // A 20-character window is enough to find any copy and too long
        // to occur by chance.
        let text = enc.encode(token);
        v.push((name.to_string(), text.as_bytes()[..20].to_vec()));
    }
    let lower = BASE32_NOPAD.encode(token).to_lowercase();
    v.push((
        "password (base32 lowercase)".into(),
        lower.as_bytes()[..20].to_vec(),
    ));
    v
}

fn find_in_tree(root: &std::path::Path, needles: &[(String, Vec<u8>)], hits: &mut Vec<String>) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let here = root.symlink_metadata().map(|m| m.dev()).unwrap_or(0);
    for e in entries.flatten() {
        let p = e.path();
        let Ok(m) = p.symlink_metadata() else {
            continue;
        };
        if m.is_dir() {
            if !codext_tests::world::read_only_mount_below(&p, here, &m) {
                find_in_tree(&p, needles, hits);
            }
        } else if m.is_file() && m.len() < 64 << 20 {
            if let Ok(bytes) = std::fs::read(&p) {
                for (name, n) in needles {
                    if bytes.windows(n.len()).any(|w| w == n.as_slice()) {
                        hits.push(format!("{} ({name})", p.display()));
                    }
                }
            }
        }
    }
}

/// Looks through the argv and environment of every process; returns the
/// command lines seen.
fn scan_processes(needles: &[(String, Vec<u8>)], hits: &mut Vec<String>) -> Vec<String> {
    let mut seen = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        seen.push(
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " "),
        );
        for what in ["cmdline", "environ"] {
            let Ok(bytes) = std::fs::read(format!("/proc/{pid}/{what}")) else {
                continue;
            };
            for (name, n) in needles {
                if bytes.windows(n.len()).any(|w| w == n.as_slice()) {
                    let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                        .unwrap_or_default()
                        .replace('\0', " ");
                    hits.push(format!("/proc/{pid}/{what} of {cmd:?} ({name})"));
                }
            }
        }
    }
    seen
}

sandbox_test! {
    fn given_a_full_flow_driven_by_codext_then_the_token_is_nowhere_it_should_not_be() {
        let w = World::new();
        let a = w.arm();
        let token = data_encoding::BASE32_NOPAD.decode(a.password.to_uppercase().as_bytes()).unwrap();
        assert_eq!(token.len(), 32);
        let needles = encodings(&token);
        let mut hits = Vec::new();
        // Log in with codext itself; while the session runs, look at the
        // argv and environment of every process on the machine.
        let mut client = w
            .as_agent(Command::new(format!("{WORK}/bin/codext")).args([
                "ssh", "--key", "/home/agent/agent.key", "--server-key", "/home/agent/server.pub",
                "--host", "127.0.0.1", &a.puzzle, "--", "sleep 3",
            ]))
            .spawn()
            .unwrap();
        wait_until(Duration::from_secs(20), "the session", || w.sessions_of(&a.user) == 1);
        let seen = scan_processes(&needles, &mut hits);
        assert!(client.wait().unwrap().success());
        w.wait_removed(&a.user, a.uid);
        // Logs, audit trail, state folder, the agent's files, the server's
        // configuration and every scratch folder.
        for dir in ["/var/log", "/var/lib", "/home", "/run", "/tmp", "/var/tmp", "/dev/shm", "/etc/codext"] {
            find_in_tree(std::path::Path::new(dir), &needles, &mut hits);
        }
                // The processes that handle the token were among those looked at.
        for who in ["codext ssh", "ssh -F none", "sshd: user-", "codext-helper serve"] {
            assert!(seen.iter().any(|c| c.contains(who)), "no {who:?} process among {seen:#?}");
        }
        assert!(hits.is_empty(), "the token was found in:\n{}", hits.join("\n"));
        // The daemon cannot be dumped and has its memory locked.
        let pid = w.helper_pid();
        assert!(proc_status(pid, "VmLck:") > 0, "the helper's memory is not locked");
    }
}

fn summary_total(trail: &[serde_json::Value], source: Option<&str>) -> u64 {
    trail
        .iter()
        .filter(|e| e["event"] == "attempts_summary")
        .filter(|e| source.is_none_or(|s| e["source"] == s))
        .map(|e| e["unknown_user"].as_u64().unwrap_or(0) + e["rate_limited"].as_u64().unwrap_or(0))
        .sum()
}

/// The `CODEXT_EVENT` of each journald datagram received at `path`, until
/// the returned flag is set.
fn journal_listener(path: &str) -> (Arc<AtomicBool>, std::thread::JoinHandle<Vec<String>>) {
    std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
    let sock = UnixDatagram::bind(path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let got = Arc::new(Mutex::new(Vec::new()));
    let handle = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        // Until told to stop and then quiet for a moment: nothing in
        // flight is missed.
        loop {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let event = text
                        .lines()
                        .find_map(|l| l.strip_prefix("CODEXT_EVENT="))
                        .unwrap_or("")
                        .to_owned();
                    got.lock().unwrap().push(event);
                }
                Err(_) if flag.load(Ordering::SeqCst) => break,
                Err(_) => {}
            }
        }
        let v = got.lock().unwrap().clone();
        v
    });
    (stop, handle)
}

sandbox_test! {
    fn given_thousands_of_attempts_at_unknown_names_from_one_and_from_many_sources_then_the_trail_and_the_system_log_grow_by_a_bounded_number_of_summary_lines() {
        // Where journald would listen: every audit line's copy lands here.
        let (stop, copies) = journal_listener("/run/systemd/journal/socket");
        let window = 5;
        let w = World::with_config(&format!("[limits]\nreaper_interval = \"1s\"\n[audit]\nsummary_window = \"{window}s\"\n"));
        let before = w.audit().len();
        let start = Instant::now();
        let one = flood(2000, 0, 1, 4, 0);
        let many = flood(2000, 1, 200, 4, 0);
        let elapsed = start.elapsed();
        assert_eq!((one.denied, many.denied), (2000, 2000), "{one:?} {many:?}");
        // Summaries are written when a window ends (by the reaper at the
        // latest), with every attempt counted.
        wait_until(Duration::from_secs(30), "every attempt in a summary", || summary_total(&w.audit(), None) == 4000);
        let trail = w.audit();
        let added = &trail[before..];
        assert!(added.iter().all(|e| e["event"] == "attempts_summary"), "{added:#?}");
        // One source: past the per-source failure limit the rest are
        // rate-limit refusals, all counted in that source's lines.
        assert_eq!(summary_total(added, Some("198.18.0.0")), 2000);
        let limited: u64 = added.iter().filter(|e| e["source"] == "198.18.0.0").map(|e| e["rate_limited"].as_u64().unwrap()).sum();
        // (20 failures a minute per source are looked at; the flood may
        // straddle a minute.)
        let looked_at = 20 * (elapsed.as_secs() / 60 + 2);
        assert!(limited >= 2000 - looked_at && limited < 2000, "{limited}");
        // At most 16 sources of their own and one line for the rest, per
        // window; and few windows.
        let mut per_window: BTreeMap<String, usize> = BTreeMap::new();
        for e in added {
            *per_window.entry(e["window_start"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        assert!(per_window.values().all(|n| *n <= 17), "{per_window:?}");
        let windows = elapsed.as_secs() / window + 2;
        assert!(added.len() as u64 <= windows * 17, "{} lines for 4000 attempts in {elapsed:?}", added.len());
        println!("4000 attempts at unknown names in {elapsed:?}: {} audit lines ({per_window:?})", added.len());
        // A known name still gets a line per attempt.
        let a = w.arm();
        for _ in 0..2 {
            assert_eq!(authenticate(&a.user, "wrong", "192.0.2.7").0, Some(codext_wire::ReplyStatus::Denied));
        }
        let wrong = w.audit().iter().filter(|e| e["event"] == "verify" && e["user"] == a.user.as_str() && e["result"] == "wrong password").count();
        assert_eq!(wrong, 2);
        // The system log got exactly the trail's lines: the same bound.
        let total = w.audit().len();
        stop.store(true, Ordering::SeqCst);
        let copies = copies.join().unwrap();
        assert_eq!(copies.iter().filter(|e| *e == "attempts_summary").count(), added.len());
        assert_eq!(copies.len(), total);
        assert!(World::helper_cli(&["audit", "verify"]).status.success());
    }
}

sandbox_test! {
    fn given_the_helper_killed_mid_write_then_at_restart_it_repairs_the_trail_and_verify_says_what_was_lost() {
        let mut w = World::new();
        let a = w.arm();
        const LOG: &str = "/var/log/codext/audit.jsonl";
        let verify = || World::helper_cli(&["audit", "verify"]);
        assert!(verify().status.success());
        // Killed while writing a line: a torn tail.
        w.kill_helper();
        let mut f = std::fs::OpenOptions::new().append(true).open(LOG).unwrap();
        std::io::Write::write_all(&mut f, br#"{"event":"session_open","prev":"#).unwrap();
        drop(f);
        assert_eq!(verify().status.code(), Some(3));
        w.start_helper();
        let trail = w.audit();
        let last = trail.last().unwrap();
        assert_eq!(last["event"], "recover");
        assert!(last["what"].as_str().unwrap().contains("torn"), "{last}");
        let ok = verify();
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
        // Entries the head vouched for are gone (a crash that lost data, or
        // a cut): recorded at restart, and verify keeps saying so (exit 4).
        let before = std::fs::read_to_string(LOG).unwrap();
        assert!(World::helper_cli(&["revoke", &a.user]).status.success());
        w.kill_helper();
        std::fs::write(LOG, &before).unwrap();
        w.start_helper();
        let last = w.audit().last().unwrap().clone();
        assert_eq!(last["event"], "recover");
        assert!(last["lost_from"].is_u64() && last["lost_to"].is_u64(), "{last}");
        let out = verify();
        assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("are missing") && err.contains("compare with the system log"), "{err}");
        // The helper still logs people in, and the chain goes on.
        let b = w.arm();
        assert!(w.login(&b.puzzle, &["true"]).status.success());
        w.wait_removed(&b.user, b.uid);
        assert_eq!(verify().status.code(), Some(4));
    }
}

sandbox_test! {
    fn given_two_thousand_attempts_at_a_pending_name_from_200_sources_then_the_trail_grows_by_a_summary_line_a_window() {
        let window = 2;
        let w = World::with_config(&format!("[limits]\nreaper_interval = \"1s\"\n[audit]\nsummary_window = \"{window}s\"\n"));
        // The name is public once its puzzle is out; sshd hands PAM a junk
        // password for a name that does not resolve, and the module still
        // asks the helper.
        let (pending, _) = w.issue();
        let before = w.audit().len();
        let start = Instant::now();
        for i in 0..2000u32 {
            let source = format!("198.19.{}.{}", (i % 200) / 100, i % 200);
            assert_eq!(authenticate(&pending, "wrong", &source).0, Some(codext_wire::ReplyStatus::Denied));
        }
        let elapsed = start.elapsed();
        let counted = |trail: &[serde_json::Value]| -> u64 {
            trail
                .iter()
                .filter(|e| e["event"] == "refusals_summary" && e["user"] == pending.as_str() && e["result"] == "not armed")
                .map(|e| e["count"].as_u64().unwrap_or(0))
                .sum()
        };
        wait_until(Duration::from_secs(30), "every attempt in a summary", || counted(&w.audit()) == 2000);
        let trail = w.audit();
        let added = &trail[before..];
        assert!(added.iter().all(|e| e["event"] == "refusals_summary"), "{added:#?}");
        let windows = elapsed.as_secs() / window + 2;
        assert!(added.len() as u64 <= windows, "{} lines for 2000 attempts in {elapsed:?}", added.len());
        assert!(added.iter().all(|e| e["sources"].as_u64().unwrap() <= 200));
        assert_eq!(w.state()["users"][pending.as_str()]["phase"], "pending");
        println!("2000 attempts at a pending name from 200 sources in {elapsed:?}: {} audit lines", added.len());
        assert!(World::helper_cli(&["audit", "verify"]).status.success());
    }
}
