//! [`World`]: a codext server inside the sandbox — wired by
//! `codext-helper setup` into the sandbox's `/etc` (shipped PAM files, sshd
//! drop-in, limits, server key, group), the helper serving, the real sshd on port 22 of the sandbox's own
//! loopback, and an unprivileged `agent` user holding a codext key.

use crate::{bin, repo};
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where the sandbox keeps logs and copies of the binaries.
pub const WORK: &str = "/run/codext-test";
/// Helper daemon stderr.
pub const HELPER_LOG: &str = "/run/codext-test/helper.log";
/// sshd stderr.
pub const SSHD_LOG: &str = "/run/codext-test/sshd.log";

/// A user armed by the manual flow.
#[derive(Debug, Clone)]
pub struct Armed {
    /// The user name.
    pub user: String,
    /// The announced uid.
    pub uid: u32,
    /// The puzzle text.
    pub puzzle: String,
    /// The password (test harness only).
    pub password: String,
}

/// The server and the agent, inside the sandbox.
#[derive(Debug)]
pub struct World {
    helper: Option<Child>,
    sshd: Option<Child>,
    /// The agent's uid and gid.
    pub agent: (u32, u32),
    /// The agent's private key.
    pub agent_key: PathBuf,
    /// The pinned server public key (a copy the agent can read).
    pub server_pub: PathBuf,
}

/// Runs `cmd`, returning its output; panics only if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a shell snippet as root and returns stdout; panics on failure.
pub fn sh(script: &str) -> String {
    let out = run(Command::new("/bin/sh").arg("-c").arg(script));
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Does NSS resolve `name`?
pub fn resolves(name: &str) -> bool {
    run(Command::new("getent").args(["passwd", name]))
        .status
        .success()
}

/// Is `name` in `/etc/passwd`?
pub fn in_passwd(name: &str) -> bool {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(':').next() == Some(name))
}

/// pids of processes of `uid` (any of real, effective, saved, fs uid).
pub fn processes_of(uid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/status"))
                        .ok()
                        .and_then(|s| {
                            s.lines()
                                .find_map(|l| l.strip_prefix("Uid:"))
                                .map(|ids| ids.split_whitespace().any(|i| i.parse() == Ok(uid)))
                        })
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Files anywhere under `dir` owned by `uid`.
pub fn files_of(dir: &Path, uid: u32) -> Vec<PathBuf> {
    files_of_uids(dir, uid..=uid)
}

/// Every file under `dir` (not following symlinks) owned by a uid in `uids`.
pub fn files_of_uids(dir: &Path, uids: std::ops::RangeInclusive<u32>) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let here = d.symlink_metadata().map(|m| m.dev()).unwrap_or(0);
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if uids.contains(&m.uid()) {
                found.push(e.path());
            }
            if m.is_dir() && !read_only_mount_below(&e.path(), here, &m) {
                stack.push(e.path());
            }
        }
    }
    found
}

/// Is `path` (a folder whose parent lies on device `parent_dev`) the top of
/// another, read-only mount? Walks skip those: nothing can have been written
/// there during a test, and the sandbox keeps a checkout under `/tmp` (and
/// its build folder, hundreds of thousands of files) as such a mount.
pub fn read_only_mount_below(path: &Path, parent_dev: u64, meta: &std::fs::Metadata) -> bool {
    use nix::sys::statvfs::{statvfs, FsFlags};
    use std::os::unix::fs::MetadataExt;
    meta.dev() != parent_dev && statvfs(path).is_ok_and(|v| v.flags().contains(FsFlags::ST_RDONLY))
}

fn install_file(from: &Path, to: &Path, mode: u32) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.display(), to.display()));
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

impl World {
    /// Sets everything up with the default helper configuration.
    #[allow(clippy::new_without_default)]
    pub fn new() -> World {
        World::with_config("")
    }

    /// Sets everything up with `helper_toml` as `/etc/codext/helper.toml`
    /// (empty: no file, the defaults).
    pub fn with_config(helper_toml: &str) -> World {
        std::fs::create_dir_all(WORK).expect("work dir");
        std::fs::create_dir_all(format!("{WORK}/bin")).expect("bin dir");
        std::fs::set_permissions(WORK, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // Copies of the binaries every user may run (the checkout itself
        // may sit in a folder only root can enter).
        for name in [
            "codext",
            "codext-helper",
            "socket-probe",
            "hostile",
            "channel-probe",
        ] {
            install_file(&bin(name), &Path::new(WORK).join("bin").join(name), 0o755);
        }
        // Always a file: the test's own uid block (see `UidBlock`).
        std::fs::create_dir_all("/etc/codext").expect("mkdir /etc/codext");
        std::fs::write("/etc/codext/helper.toml", in_uid_block(helper_toml))
            .expect("write helper.toml");
        // The operator's one command: PAM lines, sshd drop-in, limits,
        // at/cron rules, server key and group.
        setup_host();
        // The agent: an unprivileged local user with a codext key.
        sh("useradd --create-home --shell /bin/bash agent");
        let (uid, gid) = ids("agent");
        let agent_key = PathBuf::from("/home/agent/agent.key");
        install_file(
            &repo().join("docs/test-vectors/v1/agent.key"),
            &agent_key,
            0o600,
        );
        install_file(
            &repo().join("docs/test-vectors/v1/agent.pub"),
            Path::new("/home/agent/agent.key.pub"),
            0o644,
        );
        let server_pub = PathBuf::from("/home/agent/server.pub");
        install_file(Path::new("/etc/codext/server_key.pub"), &server_pub, 0o644);
        sh("chown -R agent: /home/agent");
        let mut w = World {
            helper: None,
            sshd: None,
            agent: (uid, gid),
            agent_key,
            server_pub,
        };
        w.start_helper();
        w.start_sshd();
        w
    }

    /// Runs `codext-helper ARGS` as root.
    pub fn helper_cli(args: &[&str]) -> Output {
        run(Command::new(bin("codext-helper")).args(args))
    }

    /// Starts `codext-helper serve` as the shipped unit would run it
    /// ([`helper_serve_command`]), stderr appended to [`HELPER_LOG`], and
    /// waits until its socket answers.
    pub fn start_helper(&mut self) {
        if let Err(e) = self.try_start_helper(&[]) {
            panic!("the helper did not start: {e}");
        }
    }

    /// Like [`World::start_helper`], with `groups` as supplementary
    /// groups; the helper's stderr if it exits before its socket answers.
    pub fn try_start_helper(&mut self, groups: &[u32]) -> Result<(), String> {
        self.try_start_helper_with(groups, &[])
    }

    /// Like [`World::try_start_helper`], with `env` added to the helper's
    /// environment (e.g. `CODEXT_LOG_LEVEL=info` instead of the harness's
    /// `debug`).
    pub fn try_start_helper_with(
        &mut self,
        groups: &[u32],
        env: &[(&str, &str)],
    ) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(HELPER_LOG)
            .expect("helper log");
        let before = std::fs::read_to_string(HELPER_LOG)
            .unwrap_or_default()
            .len();
        let mut child = helper_serve_command(groups)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start helper");
        let mut exited = None;
        wait_until(Duration::from_secs(10), "the helper socket", || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                return true;
            }
            // The socket is bound before the start-up reconcile, so a
            // connection alone is not readiness: the "listening" line is
            // printed after it (where systemd gets READY=1).
            let log = std::fs::read_to_string(HELPER_LOG).unwrap_or_default();
            log.get(before..)
                .is_some_and(|l| l.contains("codext-helper: listening on"))
                && std::os::unix::net::UnixStream::connect("/run/codext/helper.sock").is_ok()
        });
        if let Some(status) = exited {
            let log = std::fs::read_to_string(HELPER_LOG).unwrap_or_default();
            return Err(format!(
                "{status}: {}",
                log.get(before..).unwrap_or("").trim()
            ));
        }
        self.helper = Some(child);
        Ok(())
    }

    /// Kills the helper daemon (SIGKILL) and waits for it.
    pub fn kill_helper(&mut self) {
        if let Some(mut c) = self.helper.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// pid of the helper daemon.
    pub fn helper_pid(&self) -> u32 {
        self.helper.as_ref().map(Child::id).expect("helper running")
    }

    /// Starts sshd on port 22, stderr to [`SSHD_LOG`], and waits until it
    /// accepts connections.
    pub fn start_sshd(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(SSHD_LOG)
            .expect("sshd log");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-o", "LogLevel=VERBOSE"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        self.sshd = Some(child);
        wait_until(Duration::from_secs(10), "sshd on port 22", || {
            TcpStream::connect("127.0.0.1:22").is_ok()
        });
    }

    /// Stops sshd and starts it again (to pick up configuration changes).
    pub fn restart_sshd(&mut self) {
        if let Some(mut c) = self.sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        wait_until(Duration::from_secs(10), "port 22 to close", || {
            TcpStream::connect("127.0.0.1:22").is_err()
        });
        self.start_sshd();
    }

    /// Runs `codext ARGS` as the agent.
    pub fn agent_cli(&self, args: &[&str]) -> Output {
        run(self.as_agent(Command::new(format!("{WORK}/bin/codext")).args(args)))
    }

    /// Runs `codext open` as the agent with its key, the server's key and
    /// this host, the master named `name`; `args` follow (the puzzle last).
    pub fn agent_open(&self, name: &str, args: &[&str]) -> Output {
        let key = self.agent_key.to_string_lossy().into_owned();
        let server = self.server_pub.to_string_lossy().into_owned();
        let mut all = vec![
            "open",
            "--key",
            &key,
            "--server-key",
            &server,
            "--host",
            "127.0.0.1",
            "--name",
            name,
        ];
        all.extend_from_slice(args);
        self.agent_cli(&all)
    }

    /// Makes `cmd` run as the agent, in its home.
    pub fn as_agent<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.uid(self.agent.0)
            .gid(self.agent.1)
            .current_dir("/home/agent")
            .env_clear()
            .env("HOME", "/home/agent")
            .env("USER", "agent")
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
    }

    /// Issues a puzzle to the agent's key: (user, puzzle).
    pub fn issue(&self) -> (String, String) {
        self.issue_profile("shell")
    }

    /// Issues a puzzle of the grant profile `profile` to the
    /// agent's key: (user, puzzle).
    pub fn issue_profile(&self, profile: &str) -> (String, String) {
        let out = World::helper_cli(&[
            "issue",
            "--client-key",
            "/home/agent/agent.key.pub",
            "--profile",
            profile,
            "--json",
        ]);
        assert!(
            out.status.success(),
            "issue: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("issue json");
        (
            v["user"].as_str().expect("user").to_owned(),
            v["puzzle"].as_str().expect("puzzle").to_owned(),
        )
    }

    /// The agent solves `puzzle`: the JSON `codext solve --json --password` prints.
    pub fn solve(&self, puzzle: &str) -> serde_json::Value {
        let key = self.agent_key.to_string_lossy().into_owned();
        let server = self.server_pub.to_string_lossy().into_owned();
        let out = self.agent_cli(&[
            "solve",
            "--key",
            &key,
            "--server-key",
            &server,
            "--json",
            "--password",
            puzzle,
        ]);
        assert!(
            out.status.success(),
            "solve: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("solve json")
    }

    /// Issue, solve and answer: a user ready to log in.
    pub fn arm(&self) -> Armed {
        self.arm_profile("shell")
    }

    /// [`World::arm`] for a grant of `profile`.
    pub fn arm_profile(&self, profile: &str) -> Armed {
        let (user, puzzle) = self.issue_profile(profile);
        let solved = self.solve(&puzzle);
        let out = World::helper_cli(&[
            "answer",
            solved["answer"].as_str().expect("answer"),
            "--json",
        ]);
        assert!(
            out.status.success(),
            "answer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("answer json");
        Armed {
            user,
            uid: v["uid"].as_u64().expect("uid") as u32,
            puzzle,
            password: solved["password"].as_str().expect("password").to_owned(),
        }
    }

    /// The agent logs in with `codext ssh` (token from memory, host checked
    /// against the signed fingerprints) and runs `command`.
    pub fn login(&self, puzzle: &str, command: &[&str]) -> Output {
        let key = self.agent_key.to_string_lossy().into_owned();
        let server = self.server_pub.to_string_lossy().into_owned();
        let mut args = vec![
            "ssh",
            "--key",
            &key,
            "--server-key",
            &server,
            "--host",
            "127.0.0.1",
            puzzle,
            "--",
        ];
        args.extend_from_slice(command);
        self.agent_cli(&args)
    }

    /// `ssh user@127.0.0.1 command` with `password` through sshpass (test
    /// harness only; codext itself never puts a password in the environment).
    pub fn ssh_password(&self, user: &str, password: &str, command: &str) -> Output {
        let mut cmd = Command::new("sshpass");
        cmd.arg("-e").arg("ssh").args(ssh_args(&[
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
        ]));
        cmd.arg(format!("{user}@127.0.0.1"))
            .arg(command)
            .env("SSHPASS", password);
        run(self.as_agent(&mut cmd).env("SSHPASS", password))
    }

    /// Like [`World::ssh_password`], from source address `from` (another
    /// loopback address).
    pub fn ssh_password_from(
        &self,
        from: &str,
        user: &str,
        password: &str,
        command: &str,
    ) -> Output {
        let mut cmd = Command::new("sshpass");
        cmd.arg("-e").arg("ssh").args(ssh_args(&[
            "-b",
            from,
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
        ]));
        cmd.arg(format!("{user}@127.0.0.1")).arg(command);
        run(self.as_agent(&mut cmd).env("SSHPASS", password))
    }

    /// `ssh -i key user@127.0.0.1 command` (public key only).
    pub fn ssh_key(&self, user: &str, key: &Path, command: &str) -> Output {
        let mut cmd = Command::new("ssh");
        cmd.args(ssh_args(&[
            "-o",
            "PreferredAuthentications=publickey",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
        ]));
        cmd.arg(key).arg(format!("{user}@127.0.0.1")).arg(command);
        // HOME in scratch space: ssh must not touch the real /root.
        run(cmd.stdin(Stdio::null()).env("HOME", WORK))
    }

    /// The helper's state file, parsed.
    pub fn state(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read("/var/lib/codext/state.json").unwrap_or_default())
            .unwrap_or_default()
    }

    /// The audit trail's events, parsed.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string("/var/log/codext/audit.jsonl")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (10 s at most) for an audit line `pred` accepts and returns
    /// it. The helper writes an event after the change it records (the
    /// state saved, the account gone), so a test that saw the change waits
    /// for the line rather than reading the trail at once.
    pub fn wait_audit(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut found = None;
        wait_until(Duration::from_secs(10), what, || {
            found = self.audit().into_iter().find(|e| pred(e));
            found.is_some()
        });
        found.expect("found")
    }

    /// Starts `ssh user@127.0.0.1 sleep 120` with `password` in the
    /// background and waits until the helper counts `sessions` sessions.
    pub fn hold_session(&self, user: &str, password: &str, sessions: usize) -> Child {
        let child = self.spawn_ssh(user, password, "sleep 120");
        wait_until(Duration::from_secs(20), "the session to open", || {
            self.sessions_of(user) == sessions
        });
        // The session's command runs only once the recorder (the login
        // shell) has its channel accepted by the helper: until then a
        // helper that stops refuses the channel (recording fails closed).
        wait_until(
            Duration::from_secs(20),
            "the session's command to run",
            || {
                Command::new("pgrep")
                    .args(["-u", user, "-x", "sleep"])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            },
        );
        child
    }

    /// Starts `ssh user@127.0.0.1 command` with `password` in the
    /// background (stdout piped, stdin and stderr null) and returns at once.
    pub fn spawn_ssh(&self, user: &str, password: &str, command: &str) -> Child {
        let mut cmd = Command::new("sshpass");
        cmd.arg("-e")
            .arg("ssh")
            .args(ssh_args(&[]))
            .arg(format!("{user}@127.0.0.1"))
            .arg(command);
        self.as_agent(&mut cmd)
            .env("SSHPASS", password)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh")
    }

    /// Open sessions the helper counts for `user`.
    pub fn sessions_of(&self, user: &str) -> usize {
        self.state()["users"][user]["sessions"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0)
    }

    /// Number of connections the helper daemon has accepted so far.
    pub fn helper_connections(&self) -> usize {
        std::fs::read_to_string(HELPER_LOG)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(": connection "))
            .count()
    }

    /// Waits until `user` (uid `uid`) is gone: not in NSS, no home, no
    /// process, no file in the shared temporary folders.
    pub fn wait_removed(&self, user: &str, uid: u32) {
        wait_until(
            Duration::from_secs(30),
            &format!("{user} to be removed"),
            || {
                // The state entry goes last, after the temporary folders are swept.
                !resolves(user)
                    && !in_passwd(user)
                    && !Path::new(&format!("/home/{user}")).exists()
                    && processes_of(uid).is_empty()
                    && self.state()["users"].get(user).is_none()
            },
        );
        for dir in ["/tmp", "/var/tmp", "/dev/shm"] {
            assert!(
                files_of(Path::new(dir), uid).is_empty(),
                "files of uid {uid} left in {dir}"
            );
        }
        assert!(!Path::new(&format!("/run/userdb/{user}.user")).exists());
    }

    /// Appends to the helper log and sshd log dumps on failure.
    pub fn dump_logs(&self) {
        for f in [HELPER_LOG, SSHD_LOG] {
            eprintln!(
                "--- {f} ---\n{}",
                std::fs::read_to_string(f).unwrap_or_default()
            );
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for c in [self.helper.take(), self.sshd.take()].into_iter().flatten() {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The capabilities of `CapabilityBoundingSet=` in the shipped unit, in
/// setpriv(1)'s spelling (`chown,dac_override,…`).
pub fn unit_capabilities() -> String {
    let unit = std::fs::read_to_string(repo().join("systemd/codext-helper.service"))
        .expect("read the shipped unit");
    let line = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet=");
    line.split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect::<Vec<_>>()
        .join(",")
}

/// `codext-helper serve` with exactly the shipped unit's `Nice=`,
/// capability bounding set, no inheritable capabilities and `NoNewPrivileges`
/// (through setpriv(1)), plus `groups` as supplementary groups (the unit's
/// `SupplementaryGroups=`; none by default), logging at `debug`.
pub fn helper_serve_command(groups: &[u32]) -> Command {
    let caps: String = unit_capabilities()
        .split(',')
        .map(|c| format!(",+{c}"))
        .collect();
    let unit = std::fs::read_to_string(repo().join("systemd/codext-helper.service"))
        .expect("read the shipped unit");
    let nice = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("Nice="))
        .unwrap_or("0")
        .to_owned();
    let mut cmd = Command::new("/usr/bin/nice");
    cmd.arg("-n").arg(nice).arg("/usr/bin/setpriv");
    cmd.arg(format!("--bounding-set=-all{caps}"))
        .arg("--inh-caps=-all")
        .arg("--no-new-privs");
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        cmd.arg(format!("--groups={}", list.join(",")));
    }
    cmd.arg("--").arg(bin("codext-helper")).arg("serve");
    // Every connection is logged (at debug): tests count them.
    cmd.env("CODEXT_LOG_LEVEL", "debug");
    cmd
}

/// Common ssh client options for the harness's own ssh calls (after the
/// program name).
pub fn ssh_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "-F",
        "none",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "NumberOfPasswordPrompts=1",
        "-o",
        "BatchMode=no",
    ];
    v.extend_from_slice(extra);
    v
}

/// uid and gid of a local user.
pub fn ids(user: &str) -> (u32, u32) {
    let out = sh(&format!("id -u {user}; id -g {user}"));
    let mut it = out.lines().map(|l| l.trim().parse::<u32>().expect("id"));
    (it.next().expect("uid"), it.next().expect("gid"))
}

/// `helper_toml` with its uid range moved into this test's block
/// ([`crate::uid`]): `uid_min`/`uid_max` lines are moved, and a file that
/// sets no range gets the default range, moved.
pub fn in_uid_block(helper_toml: &str) -> String {
    let shift = |line: &str, key: &str| -> Option<String> {
        let v = line
            .trim()
            .strip_prefix(key)?
            .trim_start()
            .strip_prefix('=')?;
        let n: u32 = v.trim().parse().ok()?;
        Some(format!("{key} = {}", crate::uid(n)))
    };
    let mut out = String::new();
    let mut has_range = false;
    for line in helper_toml.lines() {
        match shift(line, "uid_min").or_else(|| shift(line, "uid_max")) {
            Some(moved) => {
                has_range = true;
                out.push_str(&moved);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    if has_range {
        return out;
    }
    let range = format!(
        "uid_min = {}\nuid_max = {}\n",
        crate::uid(59_000),
        crate::uid(59_999)
    );
    match out.find("[accounts]\n") {
        Some(at) => {
            let at = at + "[accounts]\n".len();
            format!("{}{range}{}", &out[..at], &out[at..])
        }
        None => format!("{out}[accounts]\n{range}"),
    }
}

/// Runs `codext-helper setup` with the checkout's shipped files and the
/// built module (what [`World::with_config`] does); panics unless it
/// succeeds. Returns its stdout.
pub fn setup_host() -> String {
    let args = setup_args(&[]);
    let out = World::helper_cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "setup: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `setup --data-dir <checkout>/pam.d --module <built module>` and `extra`.
pub fn setup_args(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "setup".into(),
        "--data-dir".into(),
        repo().join("pam.d").display().to_string(),
        "--module".into(),
        module_path().display().to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// The built PAM module.
pub fn module_path() -> PathBuf {
    bin("libpam_codext.so")
}

/// Installs the shipped `pam.d/codext` and `pam.d/codext-session` into
/// `/etc/pam.d` (module path rewritten to `module`) and includes them from
/// `/etc/pam.d/sshd` by hand — only for tests that need a stack `setup`
/// would refuse (a module that does not exist).
pub fn install_pam(module: &Path) {
    for name in ["codext", "codext-session"] {
        let text = std::fs::read_to_string(repo().join("pam.d").join(name)).expect("read pam file");
        let text = text.replace(" pam_codext.so", &format!(" {}", module.display()));
        std::fs::write(Path::new("/etc/pam.d").join(name), text).expect("write pam file");
    }
    let sshd = std::fs::read_to_string("/etc/pam.d/sshd").expect("read /etc/pam.d/sshd");
    if sshd.contains("@include codext") {
        return;
    }
    let mut out = String::from("@include codext\n");
    let mut placed = false;
    for line in sshd.lines() {
        out.push_str(line);
        out.push('\n');
        if line.contains("pam_selinux.so close") && !placed {
            out.push_str("@include codext-session\n");
            placed = true;
        }
    }
    assert!(placed, "no pam_selinux close line in /etc/pam.d/sshd");
    std::fs::write("/etc/pam.d/sshd", out).expect("write /etc/pam.d/sshd");
}

/// Removes codext from `/etc/pam.d/sshd` (the stock stack).
pub fn uninstall_pam() {
    let sshd = std::fs::read_to_string("/etc/pam.d/sshd").expect("read");
    let out: String = sshd
        .lines()
        .filter(|l| !l.starts_with("@include codext"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write("/etc/pam.d/sshd", out).expect("write");
}

/// Writes `text` to `path` with `mode`.
pub fn write_file(path: &str, text: &str, mode: u32) {
    let mut f = std::fs::File::create(path).expect("create");
    f.write_all(text.as_bytes()).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
