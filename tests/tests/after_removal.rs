//! Nothing of a removed user reaches anyone: not a process that kept only
//! the user's *effective* uid (out of the killer's reach), not a held
//! descriptor to its setuid file, not its kernel keyrings, and not its uid
//! handed out again before every other uid had its turn. Each test plays
//! the hostile user (and a second local account helping it) against the
//! real helper, sshd, PAM and shadow tools, then looks at what the next
//! holder of the uid — or anyone else — can still reach.

use codext_tests::sandbox_test;
use codext_tests::world::{processes_of, sh, wait_until, World, WORK};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Waits for `child`'s stdout to print a line containing `marker`; returns
/// the lines read so far.
fn read_until(child: &mut Child, marker: &str) -> String {
    let out = child.stdout.take().expect("piped stdout");
    let mut reader = BufReader::new(out);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read");
        assert!(n > 0, "ended before {marker:?}: {seen}");
        seen.push_str(&line);
        if line.contains(marker) {
            child.stdout = Some(reader.into_inner());
            return seen;
        }
    }
}

/// The `Uid:` line of `/proc/PID/status`.
fn uid_line(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `hostile ARGS` as the local account `agent` (the second uid B),
/// stdin and stdout piped.
fn as_b(w: &World, args: &[&str]) -> Child {
    w.as_agent(Command::new(format!("{WORK}/bin/hostile")).args(args))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("hostile as agent")
}

/// How many times the racy cases run: `CODEXT_SOAK_ROUNDS` (scripts/soak.sh
/// sets it high), else `default`.
fn rounds(default: usize) -> usize {
    std::env::var("CODEXT_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

sandbox_test! {
    fn given_another_uid_running_the_users_setuid_file_with_only_its_effective_uid_then_it_is_killed_and_a_third_users_removal_is_not_delayed() {
        let w = World::with_config("[limits]\nreaper_interval = \"1s\"\n");
        for round in 0..rounds(2) {
            eprintln!("round {round}");
            mixed_uid_round(&w, round);
        }
    }
}

/// One round of the mixed-uid case: U plants, B runs it keeping only U's
/// effective uid (and forks more of the same), U logs out, V logs in and
/// out; both are removed in time.
fn mixed_uid_round(w: &World, round: usize) {
    let (b_uid, _) = w.agent;
    // The last round's signals go before this round's sessions start.
    let _ = std::fs::remove_file("/tmp/mixed.out");
    let _ = std::fs::remove_file("/tmp/go");
    let u = w.arm();
    // U plants a setuid copy of a program of its own in /tmp and stays
    // until B runs it.
    let mut session = w.spawn_ssh(
        &u.user,
        &u.password,
        &format!(
            "cp {WORK}/bin/hostile /tmp/planted && chmod 4755 /tmp/planted && echo planted; \
                      while [ ! -e /tmp/go ]; do sleep 0.05; done"
        ),
    );
    read_until(&mut session, "planted");
    // B runs it detached (reparented to init, which reaps it) and keeps
    // U only as its effective uid: kill(2) from a sender whose uids
    // match U only in the effective slot cannot reach it.
    let out = w
        .as_agent(Command::new("/bin/sh").args([
            "-c",
            &format!(
                "setsid -f /tmp/planted mixed-uids {} </dev/null >/tmp/mixed.out 2>&1",
                round % 3 * 10
            ),
        ]))
        .output()
        .expect("sh");
    assert!(out.status.success());
    wait_until(Duration::from_secs(10), "the mixed-uid process", || {
        std::fs::read_to_string("/tmp/mixed.out")
            .unwrap_or_default()
            .contains("mixed")
    });
    let said = std::fs::read_to_string("/tmp/mixed.out").unwrap();
    assert!(
        said.contains(&format!("mixed {b_uid} {} {b_uid} ok", u.uid)),
        "{said}"
    );
    let mixed: Vec<u32> = processes_of(u.uid)
        .into_iter()
        .filter(|p| uid_line(*p).starts_with(&format!("{b_uid} {}", u.uid)))
        .collect();
    assert!(!mixed.is_empty(), "a process with Uid: B U B U");
    eprintln!("planted process {}: Uid: {}", mixed[0], uid_line(mixed[0]));
    // U logs out.
    sh("touch /tmp/go");
    let _ = session.wait();
    let u_logout = Instant::now();
    // A third user V logs in, leaves a process and logs out.
    let v = w.arm();
    let out = w.ssh_password(
        &v.user,
        &v.password,
        "nohup sleep 1000 >/dev/null 2>&1 & echo started",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "started");
    let v_logout = Instant::now();
    w.wait_removed(&v.user, v.uid);
    let v_took = v_logout.elapsed();
    w.wait_removed(&u.user, u.uid);
    let u_took = u_logout.elapsed();
    eprintln!("U removed {u_took:?} after its logout, V {v_took:?} after its own");
    assert!(u_took < Duration::from_secs(30), "U took {u_took:?}");
    assert!(
        v_took < Duration::from_secs(15),
        "V's removal was held up: {v_took:?}"
    );
    assert!(processes_of(u.uid).is_empty() && processes_of(v.uid).is_empty());
    w.wait_audit("U's removal", |e| {
        e["event"] == "remove" && e["user"] == u.user.as_str() && e["result"] == "ok"
    });
}

sandbox_test! {
    fn given_a_descriptor_held_to_the_users_setuid_files_then_after_the_uid_goes_to_the_next_holder_it_grants_nothing_of_it() {
        // One uid: the next grant gets the same uid (a forced wrap).
        let w = World::with_config("[accounts]\nuid_min = 59500\nuid_max = 59500\n[limits]\nreaper_interval = \"1s\"\n");
        let (b_uid, _) = w.agent;
        let u = w.arm();
        let mut session = w.spawn_ssh(
            &u.user,
            &u.password,
            &format!("cp {WORK}/bin/hostile /tmp/planted && chmod 4755 /tmp/planted && \
                      cp {WORK}/bin/hostile ~/planted && chmod 6755 ~/planted && chmod 711 ~ && echo planted; \
                      while [ ! -e /tmp/go ]; do sleep 0.05; done"),
        );
        read_until(&mut session, "planted");
        // B opens both and keeps the descriptors.
        let home_file = format!("/home/{}/planted", u.user);
        let mut held: Vec<Child> = ["/tmp/planted", home_file.as_str()]
            .iter()
            .map(|f| {
                let mut c = as_b(&w, &["hold-exec", f]);
                read_until(&mut c, "held");
                c
            })
            .collect();
        sh("touch /tmp/go");
        let _ = session.wait();
        w.wait_removed(&u.user, u.uid);
        w.wait_audit("U's removal", |e| e["event"] == "remove" && e["user"] == u.user.as_str() && e["result"] == "ok");
        // The uid goes to V, who keeps a secret in its home.
        let v = w.arm();
        assert_eq!(v.uid, u.uid, "the one uid was not handed out again");
        let mut v_session = w.spawn_ssh(
            &v.user,
            &v.password,
            "umask 077; echo secret-of-v > ~/secret && echo written; while [ ! -e /tmp/go2 ]; do sleep 0.05; done",
        );
        read_until(&mut v_session, "written");
        let secret = format!("/home/{}/secret\n", v.user);
        for (c, file) in held.iter_mut().zip(["/tmp/planted", "home"]) {
            c.stdin.as_mut().unwrap().write_all(secret.as_bytes()).unwrap();
            let out = c.wait_with_output_ref();
            eprintln!("{file}: {}", out.trim());
            assert!(out.contains(&format!("euid {b_uid}")) && out.contains("denied"), "the held {file} ran as the next holder: {out}");
            assert!(!out.contains("secret-of-v"), "{out}");
        }
        sh("touch /tmp/go2");
        let _ = v_session.wait();
        w.wait_removed(&v.user, v.uid);
    }
}

/// Reads what a piped child printed until it exits.
trait WaitRef {
    fn wait_with_output_ref(&mut self) -> String;
}

impl WaitRef for Child {
    fn wait_with_output_ref(&mut self) -> String {
        use std::io::Read;
        let mut text = String::new();
        if let Some(mut out) = self.stdout.take() {
            let _ = out.read_to_string(&mut text);
        }
        let _ = self.wait();
        text
    }
}

sandbox_test! {
    fn given_keys_in_the_users_keyrings_then_the_next_holder_of_the_uid_finds_none() {
        // A uid of its own (keyrings are per uid in the kernel's first user
        // namespace, shared by every sandbox): one uid, forced wrap.
        let w = World::with_config("[accounts]\nuid_min = 59601\nuid_max = 59601\n[limits]\nreaper_interval = \"1s\"\n");
        let u = w.arm();
        let out = w.ssh_password(&u.user, &u.password, &format!("{WORK}/bin/hostile keys"));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("keys stored"), "{said}{}", String::from_utf8_lossy(&out.stderr));
        w.wait_removed(&u.user, u.uid);
        w.wait_audit("U's removal", |e| e["event"] == "remove" && e["user"] == u.user.as_str());
        let users = std::fs::read_to_string("/proc/key-users").unwrap_or_default();
        eprintln!("/proc/key-users after the removal:\n{users}");
        let v = w.arm();
        assert_eq!(v.uid, u.uid);
        let out = w.ssh_password(&v.user, &v.password, &format!("{WORK}/bin/hostile find-keys"));
        let found = String::from_utf8_lossy(&out.stdout);
        eprintln!("the next holder looked: {found}");
        assert!(found.contains("found 0"), "the next holder found its predecessor's keys: {found}");
        w.wait_removed(&v.user, v.uid);
    }
}

sandbox_test! {
    fn given_a_quarantined_uid_then_after_apt_purge_and_a_new_setup_it_is_still_not_handed_out() {
        // Probe: tmpfs takes chattr +i on this kernel (Linux 6.0 and later).
        let probe = sh("touch /tmp/probe && chattr +i /tmp/probe && lsattr /tmp/probe; chattr -i /tmp/probe; rm -f /tmp/probe");
        assert!(probe.contains("-i-"), "tmpfs does not take chattr +i here: {probe}");
        let config = "[accounts]\nuid_min = 59700\nuid_max = 59701\n[limits]\nreaper_interval = \"1s\"\n";
        let mut w = World::with_config(config);
        let a = w.arm();
        assert_eq!(a.uid, codext_tests::uid(59700));
        let mut held = w.hold_session(&a.user, &a.password, 1);
        // A file of the uid the sweep cannot remove.
        sh(&format!("touch /tmp/stuck && chown {} /tmp/stuck && chattr +i /tmp/stuck", a.uid));
        let _ = held.kill();
        let _ = held.wait();
        wait_until(Duration::from_secs(30), "the uid to be quarantined", || {
            w.state()["quarantine"].get(a.uid.to_string()).is_some()
        });
        // `apt purge codext`: prerm's unsetup, then postrm's purge (which
        // deletes the state folder, quarantine list included), for real.
        w.kill_helper();
        let out = World::helper_cli(&["unsetup"]);
        assert!(out.status.success(), "unsetup: {}", String::from_utf8_lossy(&out.stderr));
        let postrm = codext_tests::repo().join("packaging/debian/codext/postrm");
        sh(&format!("sh {} purge", postrm.display()));
        assert!(!std::path::Path::new("/var/lib/codext").exists());
        // Installed again: setup (init) and the daemon.
        std::fs::create_dir_all("/etc/codext").unwrap();
        std::fs::write("/etc/codext/helper.toml", codext_tests::world::in_uid_block(config)).unwrap();
        let said = codext_tests::world::setup_host();
        eprintln!("{said}");
        sh("cp /etc/codext/server_key.pub /home/agent/server.pub && chown agent: /home/agent/server.pub");
        w.start_helper();
        let status = String::from_utf8_lossy(&World::helper_cli(&["status"]).stdout).into_owned();
        assert!(status.contains(&format!("quarantined uid {}", a.uid)) && status.contains("/tmp/stuck"), "{status}");
        for _ in 0..3 {
            let (user, _) = w.issue();
            let uid = w.state()["users"][&user]["uid"].as_u64().unwrap_or(0);
            assert_ne!(uid, u64::from(a.uid), "the quarantined uid was handed out after the purge");
            let out = World::helper_cli(&["revoke", &user]);
            assert!(out.status.success());
        }
        sh("chattr -i /tmp/stuck && rm /tmp/stuck");
    }
}
