//! (issue 23) Session recording, for real: every channel of every codext
//! session runs through the recorder (the accounts' login shell) and is
//! streamed to the helper, stored root-only, its SHA-256 in the audit
//! trail; the operator lists, shows, plays and exports it.

use codext_tests::pty::Pty;
use codext_tests::sandbox_test;
use codext_tests::world::{run, sh, wait_until, World, WORK};
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `codext open --name web1 … PUZZLE` as the agent.
fn open(w: &World, puzzle: &str) {
    let key = w.agent_key.to_string_lossy().into_owned();
    let server = w.server_pub.to_string_lossy().into_owned();
    let out = w.agent_cli(&[
        "open",
        "--key",
        &key,
        "--server-key",
        &server,
        "--host",
        "127.0.0.1",
        "--name",
        "web1",
        "--json",
        puzzle,
    ]);
    ok(&out, "codext open");
}

/// A stock program run by the agent in its home.
fn agent(w: &World, program: &str, args: &[&str]) -> Output {
    run(w.as_agent(Command::new(program).args(args)))
}

fn agent_sh(w: &World, script: &str) -> Output {
    agent(w, "/bin/sh", &["-c", script])
}

/// `codext-helper ARGS`, which must succeed; its stdout.
fn helper(args: &[&str]) -> String {
    ok(
        &World::helper_cli(args),
        &format!("codext-helper {}", args.join(" ")),
    )
}

/// The sealed records' audit lines of `user`.
fn sealed(w: &World, user: &str) -> Vec<Value> {
    w.audit()
        .into_iter()
        .filter(|e| e["event"] == "record" && e["user"] == user)
        .collect()
}

/// Waits until `n` records of `user` are sealed.
fn wait_sealed(w: &World, user: &str, n: usize) -> Vec<Value> {
    wait_until(
        Duration::from_secs(20),
        &format!("{n} sealed records of {user}"),
        || sealed(w, user).len() >= n,
    );
    sealed(w, user)
}

/// `sessions list --json`.
fn list(args: &[&str]) -> Vec<Value> {
    let mut a = vec!["sessions", "list", "--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&helper(&a)).expect("sessions list --json")
}

/// The channels of `user` in `sessions list --json`, in order.
fn channels(user: &str) -> Vec<Value> {
    list(&["--user", user])
        .into_iter()
        .flat_map(|s| s["channels"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn exit_code(c: &Value) -> Option<i64> {
    c["exit"]["code"].as_i64()
}

sandbox_test! {
    fn given_an_agent_task_then_every_channel_is_recorded_listed_shown_played_and_exported() {
        let w = World::new();
        let a = w.arm();
        open(&w, &a.puzzle);
        // 1. An interactive shell through a terminal driver.
        let mut cmd = Command::new("ssh");
        w.as_agent(cmd.args(["-tt", "codext-web1"])).env("TERM", "xterm");
        let mut term = Pty::spawn(&mut cmd);
        term.wait_for("$ ", Duration::from_secs(20));
        term.send("echo interactive-$((6*7))\r");
        term.wait_for("interactive-42", Duration::from_secs(10));
        // ^C reaches a program of the shell (signals pass the recorder).
        term.send("echo sl''eeping-now; sleep 600\r");
        term.wait_for("sleeping-now", Duration::from_secs(10));
        term.send("\x03");
        term.send("echo interrupted-$?\r");
        term.wait_for("interrupted-130", Duration::from_secs(10));
        term.send("printf '\\033]0;title-from-agent\\007visible-after-title\\n'\r");
        term.wait_for("visible-after-title", Duration::from_secs(10));
        term.send("exit\r");
        assert!(term.wait().success());
        // 2. A remote command with output on both streams and exit 7.
        let out = agent(&w, "ssh", &["codext-web1", "echo out-line; echo err-line >&2; exit 7"]);
        assert_eq!(out.status.code(), Some(7));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "out-line\n");
        // 3. `bash -s` fed from stdin.
        std::fs::write("/home/agent/script.sh", "echo from-stdin-script $((2+3))\nexit 0\n").unwrap();
        let out = run(w.as_agent(Command::new("sh").args(["-c", "ssh codext-web1 bash -s < script.sh"])));
        assert_eq!(ok(&out, "bash -s"), "from-stdin-script 5\n");
        // 4. scp (OpenSSH 9 speaks sftp for it) and legacy scp.
        ok(&agent_sh(&w, "head -c 20000 /dev/urandom > up.bin"), "make a file");
        ok(&agent(&w, "scp", &["-q", "up.bin", "codext-web1:up.bin"]), "scp");
        ok(&agent(&w, "scp", &["-O", "-q", "up.bin", "codext-web1:legacy.bin"]), "scp -O");
        // 5. sftp with a few file operations.
        ok(&agent_sh(&w, "printf 'put up.bin sftp.bin\\nrename sftp.bin moved.bin\\nmkdir newdir\\nget moved.bin back.bin\\nrm moved.bin\\n' > batch && sftp -q -b batch codext-web1 >/dev/null && cmp up.bin back.bin"), "sftp");
        // 6. Three commands multiplexed on the master at once.
        let muxed: Vec<_> = (1..=3)
            .map(|i| {
                let mut c = Command::new("ssh");
                w.as_agent(c.args(["codext-web1", &format!("sleep 0.3; echo mux-{i}; exit {i}")]))
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("ssh through the master")
            })
            .collect();
        for (i, c) in muxed.into_iter().enumerate() {
            let out = c.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(i as i32 + 1));
            assert_eq!(String::from_utf8_lossy(&out.stdout), format!("mux-{}\n", i + 1));
        }
        // Ten channels: `codext open`'s own (it reads its linger file), and
        // the nine above.
        let records = wait_sealed(&w, &a.user, 10);
        // Every record's SHA-256 is in the chain, and the store matches it.
        let verify = helper(&["audit", "verify"]);
        assert!(verify.contains("records intact"), "{verify}");

        // list: one session (one connection: the master), every channel.
        let sessions = list(&["--user", &a.user]);
        assert_eq!(sessions.len(), 1, "{sessions:#?}");
        let chans = channels(&a.user);
        let find = |pred: &dyn Fn(&Value) -> bool, what: &str| -> Value {
            chans.iter().find(|c| pred(c)).cloned().unwrap_or_else(|| panic!("no {what} channel in {chans:#?}"))
        };
        let shell = find(&|c| c["kind"] == "shell", "shell");
        assert_eq!(shell["tty"], true);
        assert_eq!(exit_code(&shell), Some(0));
        let cmd = find(&|c| c["command"] == "echo out-line; echo err-line >&2; exit 7", "command");
        assert_eq!(exit_code(&cmd), Some(7));
        assert_eq!(cmd["bytes"]["out"], 9);
        assert_eq!(cmd["bytes"]["err"], 9);
        let bash_s = find(&|c| c["command"] == "bash -s", "bash -s");
        assert_eq!(bash_s["bytes"]["in"], 39);
        assert_eq!(exit_code(&bash_s), Some(0));
        let sftps: Vec<&Value> = chans.iter().filter(|c| c["kind"] == "sftp").collect();
        assert_eq!(sftps.len(), 2, "scp and sftp each one sftp channel: {chans:#?}");
        assert!(chans.iter().any(|c| c["kind"] == "scp" && c["command"].as_str().unwrap_or("").starts_with("scp -t")));
        for i in 1..=3 {
            let m = find(&|c| c["command"] == format!("sleep 0.3; echo mux-{i}; exit {i}"), "muxed");
            assert_eq!(exit_code(&m), Some(i));
        }
        assert!(chans.iter().all(|c| c["truncated"] == false), "{chans:#?}");
        assert!(records.iter().all(|r| r["sha256"].as_str().is_some_and(|s| s.len() == 64)));
        let session = sessions[0]["session"].as_str().unwrap().to_owned();

        // show: commands, exit codes, bytes, the sftp operations.
        let shown = helper(&["sessions", "show", &session]);
        for want in [
            "echo out-line; echo err-line >&2; exit 7", "exit:      7", "bash -s", "(login shell)",
            "sftp:      open /home/", "rename", "sftp.bin -> ", "moved.bin", "sftp:      mkdir", "sftp:      remove",
            "written 20000 bytes", "exit:      3",
        ] {
            assert!(shown.contains(want), "{want:?} not in:\n{shown}");
        }
        // The title sequence the agent printed is shown escaped, never raw.
        assert!(!shown.contains('\x1b'));

        // play: the output comes back, filtered.
        let played = helper(&["sessions", "play", &session, "--speed", "1000"]);
        for want in ["interactive-42", "visible-after-title", "out-line", "err-line", "from-stdin-script 5", "mux-1", "mux-2", "mux-3"] {
            assert!(played.contains(want), "{want:?} not in the replay:\n{played}");
        }
        // The typed command is echoed; the sequence it printed is dropped.
        assert!(played.contains("title-from-agent"));
        assert!(!played.contains("\x1b]0;"), "the title sequence reached the operator's terminal");

        // export: one page, opened in headless Chromium.
        let page = format!("{WORK}/session.html");
        helper(&["sessions", "export", &session, "--html", &page]);
        let dom = chromium_dom(&page, "recording-export");
        for want in ["echo out-line; echo err-line &gt;&amp;2; exit 7", "bash -s", "mux-2", "interactive-42"] {
            assert!(dom.contains(want), "{want:?} not in the page's DOM:\n{}", &dom[..dom.len().min(4000)]);
        }

        let close = w.agent_cli(&["close", "web1"]);
        ok(&close, "codext close");
        w.wait_removed(&a.user, a.uid);
    }
}

/// Opens `page` in headless Chromium (Debian's `chromium`, fresh profile,
/// no network), returns the DOM after its scripts ran, and keeps a
/// screenshot as `target/test-artifacts/<name>.png`.
fn chromium_dom(page: &str, name: &str) -> String {
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        "--virtual-time-budget=8000",
        "--window-size=1200,2400",
    ];
    let profile = format!("/tmp/chromium-{name}");
    let url = format!("file://{page}");
    let dom = run(Command::new("chromium")
        .args(flags)
        .arg(format!("--user-data-dir={profile}-dom"))
        .arg("--dump-dom")
        .arg(&url)
        .env("HOME", "/tmp"));
    assert!(
        dom.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let shot = codext_tests::artifacts_dir().join(format!("{name}.png"));
    let out = run(Command::new("chromium")
        .args(flags)
        .arg(format!("--user-data-dir={profile}-shot"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .env("HOME", "/tmp"));
    assert!(
        out.status.success() && shot.exists(),
        "chromium screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(
        page,
        codext_tests::artifacts_dir().join(format!("{name}.html")),
    )
    .expect("keep the page");
    let dom_copy = codext_tests::artifacts_dir().join(format!("{name}.dom.html"));
    std::fs::write(&dom_copy, &dom.stdout).expect("keep the DOM");
    println!(
        "screenshot kept: {} (DOM: {})",
        shot.display(),
        dom_copy.display()
    );
    let _ = sh(&format!("rm -rf {profile}-dom {profile}-shot"));
    String::from_utf8_lossy(&dom.stdout).into_owned()
}

/// Starts `ssh codext-web1 COMMAND` and waits for its first line of
/// output, `first` (so the command runs, recorded, past its echo); returns
/// the client and the recorder's pid.
fn start_victim(w: &World, uid: u32, command: &str, first: &str) -> (std::process::Child, u32) {
    use std::io::BufRead;
    let mut c = Command::new("ssh");
    let mut child = w
        .as_agent(c.args(["codext-web1", command]))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the first line");
    assert_eq!(line.trim(), first);
    (child, recorder_of(uid, command))
}

/// pid of the recorder running `command` for uid `uid` (root reads the
/// command line: `codext-record -c COMMAND`).
fn recorder_of(uid: u32, command: &str) -> u32 {
    let mut found = None;
    wait_until(
        Duration::from_secs(10),
        &format!("the recorder of {command:?}"),
        || {
            found = codext_tests::world::processes_of(uid)
                .into_iter()
                .find(|pid| {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                    args.first() == Some(&&b"codext-record"[..])
                        && args.get(2) == Some(&command.as_bytes())
                });
            found.is_some()
        },
    );
    found.expect("found")
}

sandbox_test! {
    fn given_the_recorder_killed_by_the_agent_then_its_channel_ends_and_the_record_is_kept_marked_truncated() {
        let w = World::new();
        let a = w.arm();
        open(&w, &a.puzzle);
        let victim = "echo before-the-kill; sleep 60; echo never";
        let (running, pid) = start_victim(&w, a.uid, victim, "before-the-kill");
        // The agent kills it from another channel: it may (same uid).
        let out = agent(&w, "ssh", &["codext-web1", &format!("kill -KILL {pid}")]);
        ok(&out, "kill the recorder");
        let out = running.wait_with_output().unwrap();
        assert!(!out.status.success(), "the channel outlived its recorder");
        let chan = wait_until_channel(&a.user, victim);
        assert_eq!(chan["truncated"], true, "{chan:#?}");
        let reason = chan["reason"].as_str().unwrap_or("");
        assert!(reason.contains("killed"), "{reason}");
        let shown = helper(&["sessions", "show", chan["id"].as_str().unwrap()]);
        assert!(shown.contains("truncated: yes") && shown.contains("killed"), "{shown}");
        let played = helper(&["sessions", "play", chan["id"].as_str().unwrap(), "--speed", "1000"]);
        assert!(played.contains("before-the-kill"), "what came before the kill is kept: {played}");
        // The kill itself is on record too, and the records verify.
        assert!(channels(&a.user).iter().any(|c| c["command"] == format!("kill -KILL {pid}")));
        assert!(helper(&["audit", "verify"]).contains("records intact"));
        ok(&w.agent_cli(&["close", "web1"]), "codext close");
        w.wait_removed(&a.user, a.uid);
    }
}

/// Waits until `user`'s channel running `command` is sealed; returns it.
fn wait_until_channel(user: &str, command: &str) -> Value {
    let mut found = None;
    wait_until(
        Duration::from_secs(20),
        &format!("the record of {command:?}"),
        || {
            found = channels(user)
                .into_iter()
                .find(|c| c["command"] == command && c["recording"] == false);
            found.is_some()
        },
    );
    found.expect("found")
}

sandbox_test! {
    fn given_the_agent_in_another_channel_then_it_can_neither_trace_nor_read_the_recorder_nor_reach_the_store_or_the_socket() {
        let w = World::new();
        let a = w.arm();
        open(&w, &a.puzzle);
        let victim = "echo watched; sleep 60";
        let (mut running, pid) = start_victim(&w, a.uid, victim, "watched");
        // What a process of the user may do to another of its own (a
        // sleep of its own is the control) and to the recorder.
        let probe = format!(
            r#"sleep 60 >/dev/null 2>&1 & own=$!
/usr/bin/python3 - {pid} $own <<'PY'
import ctypes, os, sys, socket
libc = ctypes.CDLL(None, use_errno=True)
for name, pid in (("recorder", int(sys.argv[1])), ("own", int(sys.argv[2]))):
    r = libc.ptrace(16, pid, 0, 0)  # PTRACE_ATTACH
    e = ctypes.get_errno()
    print(name, "ptrace", "ok" if r == 0 else os.strerror(e))
    for f in ("mem", "environ", "maps"):
        try:
            open("/proc/%d/%s" % (pid, f), "rb").close()
            print(name, f, "ok")
        except OSError as x:
            print(name, f, x.strerror)
for path in ("/var/lib/codext/recordings", "/run/codext-record"):
    try:
        os.listdir(path)
        print(path, "listed")
    except OSError as x:
        print(path, x.strerror)
try:
    open("/var/lib/codext/recordings/x.rec", "w")
    print("store writable")
except OSError as x:
    print("store", x.strerror)
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("/run/codext-record/socket")
    print("socket connected")
except OSError as x:
    print("socket", x.strerror)
PY
kill -KILL $own"#
        );
        let out = ok(&agent(&w, "ssh", &["codext-web1", &probe]), "the probe");
        for want in [
            "recorder ptrace Operation not permitted",
            "recorder mem Permission denied",
            "recorder environ Permission denied",
            "recorder maps Permission denied",
            "own ptrace ok",
            "own mem ok",
            "/var/lib/codext/recordings Permission denied",
            "/run/codext-record Permission denied",
            "store Permission denied",
            "socket Permission denied",
        ] {
            assert!(out.contains(want), "{want:?} not in:\n{out}");
        }
        // The recorder is untouched: its channel ends normally, recorded.
        ok(&agent(&w, "ssh", &["codext-web1", "pkill -x sleep; true"]), "end the sleep");
        let _ = running.wait();
        let chan = wait_until_channel(&a.user, victim);
        assert_eq!(chan["truncated"], false, "{chan:#?}");
        ok(&w.agent_cli(&["close", "web1"]), "codext close");
        w.wait_removed(&a.user, a.uid);
    }
}

sandbox_test! {
    fn given_a_terminal_session_then_its_shell_cannot_write_to_the_client_around_the_recorder() {
        let w = World::new();
        let a = w.arm();
        open(&w, &a.puzzle);
        let mut cmd = Command::new("ssh");
        w.as_agent(cmd.args(["-tt", "codext-web1"])).env("TERM", "xterm");
        let mut term = Pty::spawn(&mut cmd);
        term.wait_for("$ ", Duration::from_secs(20));
        // SSH_TTY names the client's terminal, which sshd gave the user.
        term.send("echo bypass > \"$SSH_TTY\"; echo rc=$?; ls -l \"$SSH_TTY\" | cut -c1-10; tty\r");
        term.wait_for("rc=", Duration::from_secs(10));
        term.send("exit\r");
        assert!(term.wait().success());
        let out = term.output();
        assert!(out.contains("rc=1"), "{out}");
        assert!(out.contains("Device or resource busy"), "{out}");
        ok(&w.agent_cli(&["close", "web1"]), "codext close");
        w.wait_removed(&a.user, a.uid);
    }
}
