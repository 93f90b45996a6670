//! `container` profiles: the container a grant's sessions enter, started
//! by root for the grant and removed with it, through the docker CLI
//! (`containers.docker`, talking to `containers.docker_host`; the helper
//! links no HTTP code, and the temporary user never talks to dockerd).
//!
//! How every container is started ([`run_args`]), whatever the profile:
//! * as the grant's uid:gid (`--user`), with the account's supplementary
//!   groups as numeric gids (`--group-add`: a GPU's render group), under
//!   `--init` (zombies reaped), `--cap-drop ALL`,
//!   `--security-opt no-new-privileges`, never `--privileged`;
//! * the image's file system read-only (`--read-only`); the workspace a
//!   tmpfs of `disk_mb` owned by the uid (the disk limit: a write past it
//!   fails with ENOSPC, and nothing of it lands on the host's disk), `/tmp`
//!   a 64 MiB tmpfs; no log kept (`--log-driver none`: output cannot fill
//!   the host's disk either);
//! * `--memory` (= `--memory-swap`), `--cpus`, `--pids-limit`;
//! * `--network none` unless the profile says `host`; its own PID and IPC
//!   namespaces (the host's `/proc` is not reachable);
//! * only the profile's devices (character devices, checked when it
//!   starts) and bind mounts (never the docker socket or a folder holding
//!   it, `/proc`, `/sys`, `/dev`, `/etc`, `/run`, homes, codext's or
//!   docker's state);
//! * an image by digest or a local tag, never pulled (`--pull never`);
//! * no restart, named `codext-<user>`, labelled `codext.user=<user>` so
//!   that reconcile finds what a crash left.
//!
//! Sessions enter it with `docker exec` as the same uid:gid in the
//! workspace ([`exec_args`]); the helper runs that with the descriptors the
//! session's recorder passes it (see `daemon::entry`).

use super::{Container, Mount, Network, ProfileConfig};
use crate::error::{HelperError, Result};
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// The label every codext container carries, with its user.
pub const LABEL_USER: &str = "codext.user";
/// /tmp inside, MiB.
const TMP_MB: u64 = 64;

/// Host folders never bind-mounted into a grant's container.
pub const FORBIDDEN_SOURCES: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var/run",
    "/etc",
    "/boot",
    "/root",
    "/home",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/codext",
    "/var/log/codext",
    "/usr/lib/codext",
];

/// Device files never passed in.
const FORBIDDEN_DEVICES: &[&str] = &[
    "/dev/mem",
    "/dev/kmem",
    "/dev/port",
    "/dev/kmsg",
    "/dev/cpu",
    "/dev/mapper",
    "/dev/disk",
];

fn plain_absolute(p: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && p.to_str().is_some_and(|s| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_./@+-".contains(&b))
        })
}

/// Checks an image reference: a local `name[:tag]` or `name@sha256:<64
/// hex>`, in characters docker reads as nothing but a reference.
pub fn check_image(image: &str) -> std::result::Result<(), String> {
    let ok_chars = !image.is_empty()
        && image.len() <= 255
        && !image.starts_with('-')
        && image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/:@-".contains(&b));
    let digest_ok = match image.split_once('@') {
        None => true,
        Some((name, digest)) => {
            !name.is_empty()
                && digest
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        }
    };
    if ok_chars && digest_ok {
        Ok(())
    } else {
        Err(format!(
            "image {image:?} must be `name@sha256:<64 hex>` or a local `name[:tag]`"
        ))
    }
}

/// Checks a container profile as configured.
pub fn check(cfg: &ProfileConfig, docker_socket: &Path) -> std::result::Result<Container, String> {
    let image = cfg
        .image
        .clone()
        .ok_or_else(|| "a container profile needs `image`".to_owned())?;
    check_image(&image)?;
    let command = if cfg.command.is_empty() {
        vec!["sleep".to_owned(), "infinity".to_owned()]
    } else {
        cfg.command.clone()
    };
    if command.iter().any(|w| w.is_empty() || w.contains('\0')) {
        return Err("`command` has an empty word".into());
    }
    let cpus = cfg.cpus.unwrap_or(1.0);
    if !(cpus > 0.0 && cpus <= 1024.0) {
        return Err("cpus must be above 0 and at most 1024".into());
    }
    let memory_mb = cfg.memory_mb.unwrap_or(1024);
    let pids = cfg.pids.unwrap_or(256);
    let disk_mb = cfg.disk_mb.unwrap_or(512);
    if !(16..=1 << 24).contains(&memory_mb) {
        return Err("memory_mb must be between 16 and 16777216".into());
    }
    if !(8..=1 << 22).contains(&pids) {
        return Err("pids must be between 8 and 4194304".into());
    }
    if disk_mb == 0 || disk_mb + TMP_MB >= memory_mb {
        return Err(format!(
            "disk_mb must be at least 1 and, with /tmp's {TMP_MB}, below memory_mb: the workspace \
             is memory (a tmpfs counted against the container's memory), so a workspace as large \
             as memory_mb would end in the OOM killer instead of a full disk"
        ));
    }
    for d in &cfg.devices {
        let s = d.to_string_lossy();
        if !plain_absolute(d) || !d.starts_with("/dev") || d == Path::new("/dev") {
            return Err(format!("device {s} must be a path under /dev"));
        }
        if FORBIDDEN_DEVICES.iter().any(|f| d.starts_with(f))
            || d.starts_with("/dev/sd")
            || ["sd", "vd", "nvme", "loop", "dm-", "md", "xvd", "hd"]
                .iter()
                .any(|p| {
                    d.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(p))
                })
        {
            return Err(format!(
                "device {s} reaches the host's memory or disks: never passed to a grant"
            ));
        }
    }
    let workspace = cfg
        .workspace
        .clone()
        .unwrap_or_else(|| PathBuf::from("/workspace"));
    if !plain_absolute(&workspace)
        || workspace == Path::new("/")
        || ["/proc", "/sys", "/dev", "/tmp", "/etc"]
            .iter()
            .any(|f| workspace.starts_with(f))
    {
        return Err(format!(
            "workspace {} must be an absolute folder of its own (not /, /proc, /sys, /dev, /tmp, /etc)",
            workspace.display()
        ));
    }
    for m in &cfg.mounts {
        check_mount(m, docker_socket, &workspace)?;
    }
    let shell = cfg
        .shell
        .clone()
        .unwrap_or_else(|| PathBuf::from("/bin/sh"));
    if !plain_absolute(&shell) {
        return Err(format!(
            "shell {} must be an absolute path",
            shell.display()
        ));
    }
    Ok(Container {
        image,
        command,
        cpus,
        memory_mb,
        pids,
        disk_mb,
        devices: cfg.devices.clone(),
        mounts: cfg.mounts.clone(),
        network: cfg.network,
        workspace,
        shell,
    })
}

fn check_mount(
    m: &Mount,
    docker_socket: &Path,
    workspace: &Path,
) -> std::result::Result<(), String> {
    let s = m.source.display();
    if !plain_absolute(&m.source) || m.source == Path::new("/") {
        return Err(format!(
            "mount source {s} must be an absolute folder other than /"
        ));
    }
    if docker_socket.starts_with(&m.source)
        || ["/run/docker.sock", "/var/run/docker.sock"]
            .iter()
            .any(|d| Path::new(d).starts_with(&m.source))
    {
        return Err(format!(
            "mount source {s} is or holds the docker socket: never mounted into a grant"
        ));
    }
    if let Some(f) = FORBIDDEN_SOURCES
        .iter()
        .find(|f| m.source.starts_with(f) || Path::new(f).starts_with(&m.source))
    {
        return Err(format!(
            "mount source {s} is {f} or holds it: never mounted into a grant"
        ));
    }
    if !plain_absolute(&m.target)
        || m.target == Path::new("/")
        || m.target.starts_with(workspace)
        || ["/proc", "/sys", "/dev", "/tmp"]
            .iter()
            .any(|f| m.target.starts_with(f))
    {
        return Err(format!(
            "mount target {} must be an absolute folder of its own (not /, the workspace, /proc, /sys, /dev, /tmp)",
            m.target.display()
        ));
    }
    Ok(())
}

/// The container of `user`.
pub fn name_of(user: &str) -> String {
    format!("codext-{user}")
}

/// Where the helper keeps a container's account files (`passwd`,
/// `group`: the image's own plus the grant's line, bind-mounted read-only
/// over `/etc/passwd` and `/etc/group`: programs such as sftp-server need
/// the uid to have a name). Removed with the container.
pub const FILES_DIR: &str = "/run/codext/containers";

/// `user`'s account files' folder.
pub fn files_of(user: &str) -> PathBuf {
    Path::new(FILES_DIR).join(user)
}

/// `docker create …` arguments (after `docker`) for `user`'s container
/// (`docker start` runs it).
pub fn run_args(
    c: &Container,
    user: &str,
    uid: u32,
    gid: u32,
    groups: &[u32],
    profile: &str,
) -> Vec<String> {
    let files = files_of(user);
    let mut a: Vec<String> = vec![
        "create".into(),
        "--name".into(),
        name_of(user),
        "--hostname".into(),
        "codext".into(),
        "--label".into(),
        format!("{LABEL_USER}={user}"),
        "--label".into(),
        format!("codext.uid={uid}"),
        "--label".into(),
        format!("codext.profile={profile}"),
        "--user".into(),
        format!("{uid}:{gid}"),
    ];
    for g in groups {
        a.push("--group-add".into());
        a.push(g.to_string());
    }
    let ws = c.workspace.to_string_lossy().into_owned();
    a.extend(
        [
            "--init",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--ipc",
            "private",
            "--log-driver",
            "none",
            "--restart",
            "no",
            "--pull",
            "never",
        ]
        .map(String::from),
    );
    a.push("--network".into());
    a.push(
        match c.network {
            Network::None => "none",
            Network::Host => "host",
        }
        .into(),
    );
    a.push("--pids-limit".into());
    a.push(c.pids.to_string());
    a.push("--memory".into());
    a.push(format!("{}m", c.memory_mb));
    a.push("--memory-swap".into());
    a.push(format!("{}m", c.memory_mb));
    a.push("--cpus".into());
    a.push(format!("{}", c.cpus));
    a.push("--tmpfs".into());
    a.push(format!("/tmp:rw,nosuid,nodev,size={TMP_MB}m,mode=1777"));
    a.push("--tmpfs".into());
    a.push(format!(
        "{ws}:rw,nosuid,nodev,size={}m,uid={uid},gid={gid},mode=0700",
        c.disk_mb
    ));
    a.push("--workdir".into());
    a.push(ws.clone());
    a.push("--env".into());
    a.push(format!("HOME={ws}"));
    for d in &c.devices {
        a.push("--device".into());
        a.push(d.to_string_lossy().into_owned());
    }
    for m in &c.mounts {
        a.push("--mount".into());
        a.push(format!(
            "type=bind,source={},target={}{}",
            m.source.display(),
            m.target.display(),
            if m.read_only { ",readonly" } else { "" }
        ));
    }
    for f in ["passwd", "group"] {
        a.push("--mount".into());
        a.push(format!(
            "type=bind,source={},target=/etc/{f},readonly",
            files.join(f).display()
        ));
    }
    // The image, and after it only the command: nothing the user chose.
    a.push("--".into());
    a.push(c.image.clone());
    a.extend(c.command.iter().cloned());
    a
}

/// What a session asks the container to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session<'a> {
    /// A terminal (`docker exec -t`).
    pub tty: bool,
    /// The command (`None`: a login shell).
    pub command: Option<&'a str>,
    /// `TERM` (checked: `[A-Za-z0-9._+-]`).
    pub term: &'a str,
}

/// `docker exec …` arguments (after `docker`) for a session of `user`.
pub fn exec_args(c: &Container, user: &str, uid: u32, gid: u32, s: &Session<'_>) -> Vec<String> {
    let ws = c.workspace.to_string_lossy().into_owned();
    let mut a: Vec<String> = vec!["exec".into(), "--interactive".into()];
    if s.tty {
        a.push("--tty".into());
    }
    a.extend([
        "--user".into(),
        format!("{uid}:{gid}"),
        "--workdir".into(),
        ws.clone(),
        "--env".into(),
        format!("HOME={ws}"),
        "--env".into(),
        format!("USER={user}"),
        "--env".into(),
        format!("LOGNAME={user}"),
        "--env".into(),
        "LANG=C.UTF-8".into(),
    ]);
    let term_ok = !s.term.is_empty()
        && s.term.len() <= 64
        && s.term
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if term_ok {
        a.push("--env".into());
        a.push(format!("TERM={}", s.term));
    }
    a.push(name_of(user));
    let shell = c.shell.to_string_lossy().into_owned();
    match s.command {
        None => {
            a.push(shell);
            a.push("-l".into());
        }
        Some(cmd) => {
            a.push(shell);
            a.push("-c".into());
            a.push(cmd.to_owned());
        }
    }
    a
}

/// The docker CLI as the helper runs it.
#[derive(Debug, Clone)]
pub struct Docker {
    /// `containers.docker`.
    pub program: PathBuf,
    /// `containers.docker_host`.
    pub host: String,
    /// How long one call may take.
    pub deadline: Duration,
}

impl Docker {
    /// The environment every docker call gets (and nothing else).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ("DOCKER_HOST", self.host.clone()),
            // Nothing of root's ~/.docker (credentials, plugins) is read.
            ("DOCKER_CONFIG", "/run/codext/docker".into()),
            ("LC_ALL", "C".into()),
        ]
    }

    fn run(&self, args: &[String]) -> Result<crate::accounts::tools::ToolRun> {
        let program = self.program.to_string_lossy().into_owned();
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::accounts::tools::run_with(&program, &a, &self.env(), self.deadline)
    }

    /// Names of the containers labelled as `user`'s (any state).
    pub fn containers_of(&self, user: Option<&str>) -> Result<Vec<(String, String)>> {
        let filter = match user {
            Some(u) => format!("label={LABEL_USER}={u}"),
            None => format!("label={LABEL_USER}"),
        };
        let out = self.run(&[
            "ps".into(),
            "--all".into(),
            "--no-trunc".into(),
            "--filter".into(),
            filter,
            "--format".into(),
            format!("{{{{.Names}}}} {{{{.Label \"{LABEL_USER}\"}}}}"),
        ])?;
        if !out.success() {
            return Err(HelperError::Account(format!(
                "docker ps failed: {}",
                out.describe()
            )));
        }
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| {
                let (n, u) = l.trim().split_once(' ')?;
                Some((n.to_owned(), u.to_owned()))
            })
            .collect())
    }

    /// True when `user`'s container runs.
    pub fn running(&self, user: &str) -> Result<bool> {
        let out = self.run(&[
            "inspect".into(),
            "--type".into(),
            "container".into(),
            "--format".into(),
            "{{.State.Running}}".into(),
            name_of(user),
        ])?;
        Ok(out.success() && out.stdout.trim() == "true")
    }

    /// Starts `user`'s container (any stopped one of that name goes
    /// first): `docker create` with `args` ([`run_args`]), its account
    /// files made from the image's own `/etc/passwd` and `/etc/group` (read
    /// out of the created container, never run) and the grant's line,
    /// then `docker start`.
    pub fn start(&self, args: &[String], user: &str, account: &Account) -> Result<()> {
        let name = name_of(user);
        self.remove(&name)?;
        let files = files_of(user);
        prepare_files(&files)?;
        let fail = |what: &str, out: &crate::accounts::tools::ToolRun| {
            HelperError::Account(format!(
                "docker {what} for {user} failed: {}",
                out.describe()
            ))
        };
        let out = self.run(args)?;
        if !out.success() {
            return Err(fail("create", &out));
        }
        for (f, line) in [
            ("passwd", account.passwd_line()),
            ("group", account.group_line()),
        ] {
            let image_copy = files.join(format!("{f}.image"));
            let out = self.run(&[
                "cp".into(),
                format!("{name}:/etc/{f}"),
                image_copy.to_string_lossy().into_owned(),
            ])?;
            // An image without the file gets only the grant's line.
            let theirs = if out.success() {
                read_capped(&image_copy)?
            } else {
                String::new()
            };
            let _ = std::fs::remove_file(&image_copy);
            let text = merged(&theirs, &line, account);
            // Written into the very file the mount names (its inode).
            std::fs::write(files.join(f), text).map_err(|e| {
                HelperError::account(format!("cannot write {}", files.join(f).display()), e)
            })?;
        }
        let out = self.run(&["start".into(), name])?;
        if !out.success() {
            return Err(fail("start", &out));
        }
        Ok(())
    }

    /// `docker rm --force --volumes NAME`: stopped (its processes killed)
    /// and removed with its anonymous volumes. A container that is not
    /// there is fine.
    pub fn remove(&self, name: &str) -> Result<()> {
        let out = self.run(&[
            "rm".into(),
            "--force".into(),
            "--volumes".into(),
            name.to_owned(),
        ])?;
        if out.success() || out.stderr.contains("No such container") {
            Ok(())
        } else {
            Err(HelperError::Account(format!(
                "docker rm {name} failed: {}",
                out.describe()
            )))
        }
    }
}

/// The grant's account inside its container.
#[derive(Debug, Clone)]
pub struct Account {
    /// The user name.
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// The workspace (its home inside).
    pub home: PathBuf,
    /// The sessions' shell.
    pub shell: PathBuf,
}

impl Account {
    fn passwd_line(&self) -> String {
        format!(
            "{}:x:{}:{}:codext temporary user:{}:{}\n",
            self.user,
            self.uid,
            self.gid,
            self.home.display(),
            self.shell.display()
        )
    }
    fn group_line(&self) -> String {
        format!("codext:x:{}:\n", self.gid)
    }
}

/// The image's file (`passwd` or `group`) with the grant's line `ours`
/// added: a line of the image with the same name, or the same id, goes
/// (inside, that name and that id are the grant's).
fn merged(theirs: &str, ours: &str, a: &Account) -> String {
    let name = ours.split(':').next().unwrap_or("");
    let id = ours.split(':').nth(2).unwrap_or("");
    let mut out: String = theirs
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split(':').collect();
            f.first() != Some(&name) && f.get(2) != Some(&id) && f.first() != Some(&a.user.as_str())
        })
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(ours);
    out
}

fn read_capped(path: &Path) -> Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path)
        .map_err(|e| HelperError::account(format!("cannot read {}", path.display()), e))?;
    let mut text = String::new();
    f.take(1 << 20)
        .read_to_string(&mut text)
        .map_err(|e| HelperError::account(format!("cannot read {}", path.display()), e))?;
    Ok(text)
}

/// The account files' folder, root's 0755 (the files 0644: the container
/// reads them), empty files in place for the mounts.
fn prepare_files(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| HelperError::account(format!("cannot create {}", dir.display()), e))?;
    for f in ["passwd", "group"] {
        std::fs::write(dir.join(f), b"").map_err(|e| {
            HelperError::account(format!("cannot create {}", dir.join(f).display()), e)
        })?;
    }
    Ok(())
}

/// Removes `user`'s account files (with its container).
pub fn forget_files(user: &str) {
    if codext_wire::UserName::parse(user).is_ok() {
        let _ = std::fs::remove_dir_all(files_of(user));
    }
}

/// Checks, when a container starts, what only the live host can tell:
/// each device is a character device; each mount source exists and is a
/// folder or regular file (not a socket).
pub fn check_host(c: &Container) -> Result<()> {
    for d in &c.devices {
        match std::fs::metadata(d) {
            Ok(m) if m.file_type().is_char_device() || m.is_dir() => {}
            Ok(_) => {
                return Err(HelperError::Config(format!(
                    "device {} is not a character device (or a folder of them)",
                    d.display()
                )))
            }
            Err(e) => return Err(HelperError::Config(format!("device {}: {e}", d.display()))),
        }
    }
    for m in &c.mounts {
        match std::fs::metadata(&m.source) {
            Ok(meta) if meta.is_dir() || meta.is_file() => {}
            Ok(_) => {
                return Err(HelperError::Config(format!(
                    "mount source {} is neither a folder nor a file",
                    m.source.display()
                )))
            }
            Err(e) => {
                return Err(HelperError::Config(format!(
                    "mount source {}: {e}",
                    m.source.display()
                )))
            }
        }
    }
    Ok(())
}
