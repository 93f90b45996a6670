//! A private `dockerd` inside the sandbox, for the container
//! profile's tests: its data on the sandbox's scratch `/var/lib`, its
//! socket at `/run/docker.sock` (the helper's default `docker_host`, in
//! the sandbox's own `/run`), no bridge, no iptables, its containers in a
//! cgroup parent of its own; stopped (every container removed first) when
//! dropped. Its images: the workspace image `scripts/workspace-image.sh`
//! builds from the debootstrapped base `scripts/docker-test.sh` caches
//! (`/var/cache/codext-test`, read-only here) and this machine's git,
//! rsync, scp and sftp-server.
//!
//! When dockerd cannot run here, [`Dockerd::start`] prints the probe and
//! returns `None` (the test then does nothing); under `CI=true` that fails
//! unless the kernel forbids the namespaces a container needs.

use crate::world::run;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The socket.
pub const SOCKET: &str = "/run/docker.sock";
/// The workspace image the tests use.
pub const IMAGE: &str = "codext-workspace:test";
/// docker.io's client (the one that matches its daemon).
pub const DOCKER: &str = "/usr/bin/docker";

/// The cgroup parent of this test's containers (the test's uid block
/// names it: no two sandboxes share one).
fn cgroup_parent() -> String {
    format!("codext-sandbox-{}", crate::uid_base())
}

/// The daemon.
#[derive(Debug)]
pub struct Dockerd {
    child: Child,
}

/// `docker ARGS` against the private daemon.
pub fn docker(args: &[&str]) -> std::process::Output {
    run(Command::new(DOCKER)
        .args(args)
        .env("DOCKER_HOST", format!("unix://{SOCKET}")))
}

fn probe_failed(why: &str) -> Option<Dockerd> {
    let log = std::fs::read_to_string("/run/dockerd.log").unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(15).collect();
    eprintln!("codext-tests: dockerd cannot run a container here: {why}");
    for l in tail.iter().rev() {
        eprintln!("    {l}");
    }
    let forbidden = !run(Command::new("unshare").args([
        "--mount", "--pid", "--uts", "--ipc", "--net", "--fork", "true",
    ]))
    .status
    .success();
    if forbidden {
        eprintln!("codext-tests: the kernel forbids the namespaces a container needs: skipped");
        return None;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "dockerd cannot run here and the kernel does not forbid it (CI=true): {why}"
    );
    eprintln!("codext-tests: skipped (not CI)");
    None
}

impl Dockerd {
    /// Starts the daemon and makes the workspace image; `None` when docker
    /// cannot run here (see the module docs).
    pub fn start() -> Option<Dockerd> {
        for tool in ["/usr/sbin/dockerd", DOCKER] {
            if !Path::new(tool).exists() {
                return probe_failed(&format!("{tool} is missing (apt-get install docker.io)"));
            }
        }
        let log = std::fs::File::create("/run/dockerd.log").expect("dockerd log");
        let child = Command::new("/usr/sbin/dockerd")
            .args([
                "--data-root",
                "/var/lib/docker",
                "--exec-root",
                "/run/docker-exec",
                "--pidfile",
                "/run/dockerd.pid",
                "-H",
                &format!("unix://{SOCKET}"),
                "--storage-driver=overlay2",
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                // Its containers' cgroups apart from any other dockerd's on
                // the host (the hierarchy is the host's).
                &format!("--cgroup-parent=/{}", cgroup_parent()),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let mut d = Dockerd { child };
        let start = Instant::now();
        while !docker(&["info"]).status.success() {
            if let Ok(Some(st)) = d.child.try_wait() {
                return probe_failed(&format!("dockerd exited: {st}"));
            }
            if start.elapsed() > Duration::from_secs(60) {
                return probe_failed("dockerd did not answer within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let built = run(
            Command::new(crate::repo().join("scripts/workspace-image.sh"))
                .arg(IMAGE)
                .env("DOCKER_HOST", format!("unix://{SOCKET}"))
                .env("TMPDIR", "/var/tmp"),
        );
        if built.status.code() == Some(3) {
            eprintln!("{}", String::from_utf8_lossy(&built.stderr));
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no debootstrapped base for the workspace image (CI=true)"
            );
            eprintln!("codext-tests: skipped (not CI)");
            d.stop();
            return None;
        }
        assert!(
            built.status.success(),
            "workspace image: {}{}",
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        );
        let ran = docker(&["run", "--rm", "--network", "none", IMAGE, "true"]);
        if !ran.status.success() {
            let why = String::from_utf8_lossy(&ran.stderr).into_owned();
            d.stop();
            return probe_failed(&format!("a container does not run: {why}"));
        }
        Some(d)
    }

    /// Removes every container and stops the daemon.
    pub fn stop(&mut self) {
        let ids = docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = docker(&["rm", "-f", "-v", id]);
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let start = Instant::now();
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            if start.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The cgroup hierarchy is the host's: the (now empty) parent goes.
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                let dir = c.path().join(cgroup_parent());
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
    }
}
