//! The `container` profile, for real: a private dockerd in the
//! sandbox, a workspace image built from the debootstrapped base; every
//! session of the grant — a terminal, a command, scp, sftp, rsync, `git
//! push` — runs in the container the helper started for it, as the grant's
//! uid:gid, through `codext open`; and after `codext close` no container,
//! volume, process, group or sudo rule of the grant is left. Then the
//! temporary user plays against it.

use codext_tests::docker::{docker, Dockerd, IMAGE};
use codext_tests::pty::Pty;
use codext_tests::sandbox_test;
use codext_tests::world::{processes_of, run, World};
use serde_json::Value;
use std::process::{Command, Output};
use std::time::Duration;

fn profile() -> String {
    format!(
        r#"
[profiles.ws]
kind = "container"
image = "{IMAGE}"
shell = "/bin/bash"
memory_mb = 256
disk_mb = 64
pids = 64
"#
    )
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(out: &Output, what: &str) -> String {
    let (o, e) = text(out);
    assert!(
        out.status.success(),
        "{what} failed ({}): {o}{e}",
        out.status
    );
    o
}

fn agent(w: &World, program: &str, args: &[&str]) -> Output {
    run(w.as_agent(Command::new(program).args(args)))
}

fn on(w: &World, cmd: &str) -> Output {
    agent(w, "ssh", &["codext-web1", cmd])
}

fn open(w: &World, puzzle: &str) -> Vec<Value> {
    let out = w.agent_open("web1", &["--profile", "ws", "--json", puzzle]);
    ok(&out, "codext open")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event line"))
        .collect()
}

/// Containers and volumes the private dockerd still has.
fn docker_leftovers() -> (String, String) {
    (
        ok(&docker(&["ps", "-aq"]), "docker ps"),
        ok(&docker(&["volume", "ls", "-q"]), "docker volume ls"),
    )
}

/// After `codext close`: nothing of the grant anywhere.
fn nothing_left(w: &World, user: &str, uid: u32) {
    w.wait_removed(user, uid);
    assert_eq!(docker_leftovers(), (String::new(), String::new()));
    assert!(processes_of(uid).is_empty());
    let group = std::fs::read_to_string("/etc/group").unwrap();
    assert!(!group.contains(user), "{group}");
    let doctor = World::helper_cli(&["doctor"]);
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("profiles.docker")),
        "{report}"
    );
}

sandbox_test! {
    fn given_a_container_grant_then_a_shell_a_command_scp_sftp_rsync_and_git_push_run_inside_and_close_leaves_nothing() {
        let Some(_dockerd) = Dockerd::start() else { return };
        let w = World::with_config(&profile());
        let a = w.arm_profile("ws");
        let events = open(&w, &a.puzzle);
        let connected = events.iter().find(|e| e["event"] == "connected").expect("connected");
        assert_eq!(connected["profile"], "ws");
        // A command: inside, in the workspace, as the grant's uid.
        let out = ok(&on(&w, "id -u; pwd; echo $HOME; hostname; test -e /.dockerenv && echo in-docker"), "a command");
        assert_eq!(out, format!("{}\n/workspace\n/workspace\ncodext\nin-docker\n", a.uid));
        // Started by the helper for the grant (the first session waited for
        // it), as the grant's uid:gid, unprivileged, no network, read-only.
        let name = format!("codext-{}", a.user);
        let user = ok(&docker(&["inspect", "--format", "{{.Config.User}} {{.HostConfig.Privileged}} {{.HostConfig.NetworkMode}} {{.HostConfig.ReadonlyRootfs}}", &name]), "inspect");
        assert_eq!(user.trim(), format!("{}:{} false none true", a.uid, ids_gid(&w)), "{user}");
        // Exit statuses and both streams come back.
        let out = on(&w, "echo out; echo err >&2; exit 7");
        assert_eq!(out.status.code(), Some(7));
        assert_eq!(text(&out), ("out\n".into(), "err\n".into()));
        // stdin reaches it (bash -s).
        let mut c = Command::new("ssh");
        let out = run(w.as_agent(c.args(["codext-web1", "bash -s"]).stdin(std::fs::File::open(write_agent_file("script.sh", "echo from-stdin-$((6*7))\n")).unwrap())));
        assert_eq!(ok(&out, "bash -s"), "from-stdin-42\n");
        // A terminal: an interactive shell in the container.
        let mut cmd = Command::new("ssh");
        w.as_agent(cmd.args(["-tt", "codext-web1"]));
        let mut term = Pty::spawn(&mut cmd);
        term.wait_for("$ ", Duration::from_secs(30));
        term.send("echo interactive-$((6*7)) $(id -u) $(tty)\r");
        term.wait_for("interactive-42", Duration::from_secs(10));
        term.send("exit\r");
        assert!(term.wait().success());
        assert!(term.output().contains(&format!("interactive-42 {} /dev/pts/", a.uid)), "{}", term.output());
        // scp (sftp mode) and legacy scp, both ways, into the workspace.
        ok(&agent(&w, "/bin/sh", &["-c", "head -c 100000 /dev/urandom > up.bin"]), "a file");
        ok(&agent(&w, "scp", &["-q", "up.bin", "codext-web1:up.bin"]), "scp up");
        ok(&agent(&w, "scp", &["-O", "-q", "up.bin", "codext-web1:legacy.bin"]), "scp -O up");
        ok(&agent(&w, "scp", &["-q", "codext-web1:up.bin", "down.bin"]), "scp down");
        ok(&agent(&w, "cmp", &["up.bin", "down.bin"]), "round trip");
        let sums = ok(&on(&w, "sha256sum up.bin legacy.bin | cut -c1-64 | uniq | wc -l; stat -c %u up.bin; id -un"), "in the workspace");
        assert_eq!(sums, format!("1\n{}\n{}\n", a.uid, a.user), "both copies there, the grant's; its name known inside");
        // Nothing of it landed on the host's home.
        assert!(!std::path::Path::new(&format!("/home/{}/up.bin", a.user)).exists());
        // sftp, rsync.
        ok(&agent(&w, "/bin/sh", &["-c", "printf 'put up.bin s.bin\\nls\\n' > batch && sftp -q -b batch codext-web1 >/dev/null"]), "sftp");
        ok(&agent(&w, "/bin/sh", &["-c", "mkdir -p tree/a && echo one > tree/a/f"]), "a tree");
        ok(&agent(&w, "rsync", &["-a", "-e", "ssh", "tree/", "codext-web1:tree/"]), "rsync");
        assert_eq!(ok(&on(&w, "cat tree/a/f; test -f s.bin && echo sftp-ok"), "read back"), "one\nsftp-ok\n");
        // git push to a bare repository in the workspace.
        ok(&on(&w, "git init -q --bare repo.git"), "git init --bare");
        ok(&agent(&w, "/bin/sh", &["-c", "git init -q work && cd work && echo hi > f && git add f && git -c user.name=a -c user.email=a@example.com commit -qm first && git push -q codext-web1:repo.git HEAD:refs/heads/main"]), "git push");
        assert_eq!(ok(&on(&w, "git --git-dir=repo.git log --format=%s main"), "git log"), "first\n");
        // The container's start and every channel are in the audit trail
        // and recorded.
        let audit = w.audit();
        assert!(audit.iter().any(|e| e["event"] == "container" && e["result"] == "started" && e["user"] == a.user.as_str()), "{audit:?}");
        assert!(audit.iter().any(|e| e["event"] == "gate" && e["result"] == "enter"));
        let list = ok(&World::helper_cli(&["sessions", "list", "--user", &a.user, "--json"]), "sessions list");
        assert!(list.contains("git-receive-pack") && list.contains("sha256sum"), "{list}");
        // One account, one session: every channel rode the master.
        assert_eq!(w.sessions_of(&a.user), 1);
        // codext close: the container goes with the account.
        ok(&w.agent_cli(&["close", "web1"]), "codext close");
        nothing_left(&w, &a.user, a.uid);
        assert!(w.audit().iter().any(|e| e["event"] == "remove" && e["user"] == a.user.as_str() && e["result"] == "ok"));
    }
}

sandbox_test! {
    fn given_the_temporary_user_against_its_container_then_no_socket_no_host_proc_no_mount_no_survivor_and_a_full_disk_stops_at_its_limit() {
        let Some(_dockerd) = Dockerd::start() else { return };
        let w = World::with_config(&profile());
        let a = w.arm_profile("ws");
        open(&w, &a.puzzle);
        // The docker socket: not in the container, and the account is in no
        // group that reaches it on the host.
        let out = on(&w, "ls -l /run/docker.sock /var/run/docker.sock 2>&1; echo rc=$?");
        assert!(ok(&out, "socket").contains("rc=2"), "{}", text(&out).0);
        let groups = codext_tests::world::sh(&format!("id -Gn {}", a.user));
        let owner = codext_tests::world::sh("stat -c '%U %G %a' /run/docker.sock");
        let sock_group = owner.split_whitespace().nth(1).unwrap().to_owned();
        assert!(owner.starts_with("root ") && owner.ends_with(" 660\n"), "{owner}");
        assert!(
            !groups.split_whitespace().any(|g| g == sock_group || g == "root" || g == "docker"),
            "{groups} (the socket is {owner})"
        );
        // No capability, no new privileges: no mount, no setuid way up.
        let status = ok(&on(&w, "grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status"), "status");
        assert!(status.contains("CapEff:\t0000000000000000") && status.contains("NoNewPrivs:\t1"), "{status}");
        let out = on(&w, "mkdir -p /workspace/m && mount -t tmpfs x /workspace/m; mount --bind / /workspace/m; echo done");
        assert!(!text(&out).0.contains("tmpfs") && text(&out).1.contains("permission denied") || text(&out).1.contains("must be superuser"), "{:?}", text(&out));
        // The host's /proc is not reachable: its own PID namespace.
        let procs = ok(&on(&w, "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '"), "processes");
        assert!(!procs.contains("sshd") && !procs.contains("codext-helper") && !procs.contains("dockerd"), "{procs}");
        let host_pid = w.helper_pid();
        let out = on(&w, &format!("cat /proc/{host_pid}/cmdline 2>/dev/null | tr '\\0' ' ' | grep -c codext-helper"));
        assert_eq!(text(&out).0.trim(), "0");
        // The root file system is read-only; the workspace stops at its
        // limit (ENOSPC), and nothing reaches the host's disk.
        let out = on(&w, "touch /usr/x 2>&1; dd if=/dev/zero of=/workspace/fill bs=1M count=200 2>&1 | grep -o 'No space left on device' | head -1; df -m /workspace | tail -1");
        let (o, _) = text(&out);
        assert!(o.contains("Read-only file system"), "{o}");
        assert!(o.contains("No space left on device"), "{o}");
        let size: u64 = o.lines().last().and_then(|l| l.split_whitespace().nth(1)).and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!((60..=70).contains(&size), "workspace size {size} MiB: {o}");
        // The process and memory limits are the container's cgroup's (a
        // fork bomb past them takes the whole `docker exec` down with it,
        // exit 254, rather than making the session print anything).
        let limits = ok(&on(&w, "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max"), "limits");
        assert_eq!(limits, format!("64\n{}\n", 256u64 << 20), "{limits}");
        // A process left behind, detached, and the container asked to stay:
        // nothing survives the grant.
        ok(&on(&w, "nohup sleep 600 >/dev/null 2>&1 </dev/null & echo started"), "a survivor");
        ok(&w.agent_cli(&["close", "web1"]), "codext close");
        nothing_left(&w, &a.user, a.uid);
        // And another grant's container is a fresh one: the workspace of
        // the last is gone with it.
        let b = w.arm_profile("ws");
        open(&w, &b.puzzle);
        assert_eq!(ok(&on(&w, "ls -A /workspace | wc -l; id -u"), "fresh"), format!("0\n{}\n", b.uid));
        ok(&w.agent_cli(&["close", "web1"]), "codext close");
        nothing_left(&w, &b.user, b.uid);
    }
}

/// The codext group's gid.
fn ids_gid(_w: &World) -> u32 {
    codext_tests::world::sh("getent group codext | cut -d: -f3")
        .trim()
        .parse()
        .expect("the codext group")
}

/// Writes `text` to a file of the agent's and returns its path.
fn write_agent_file(name: &str, text: &str) -> String {
    let path = format!("/home/agent/{name}");
    std::fs::write(&path, text).expect("write");
    codext_tests::world::sh(&format!("chown agent: {path}"));
    path
}
