//! `codext-helper doctor`: every condition codext needs on this host, one
//! line each — ok, warn or fail, and what to do. It changes nothing; a
//! reviewer runs it and gets the whole picture (`--json` for machines).
//!
//! What each check proves is listed in `docs/SECURITY_REVIEW.md`, with the
//! test that breaks the host on purpose and sees the check fail.
//!
//! Why one file over 400 lines: a flat list of independent checks, each a short
//! function adding lines to one report, read top to bottom as the host's
//! checklist; only the token-scope parsing (`token_scopes`) stands apart.

use crate::config::Config;
use crate::setup::{self, PamLine};
use codext_wire::{read_frame, write_frame, ReplyStatus, Request};
use serde::Serialize;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod mounts;
mod token_scopes;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As codext needs it.
    Ok,
    /// Works, but weaker than it should be.
    Warn,
    /// codext is unsafe or will not work: fix it.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable name (`sshd.usepam`, `modes.socket`, …).
    pub check: String,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do (empty when ok).
    pub advice: String,
}

/// The name doctor asks sshd and PAM about: a codext user that never exists.
pub const PROBE_USER: &str = "user-000000000000";
/// The earliest plausible time (2025-01-01): a clock before it is wrong.
const EPOCH_FLOOR: u64 = 1_735_689_600;

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn add(
        &mut self,
        check: &str,
        status: Status,
        detail: impl Into<String>,
        advice: impl Into<String>,
    ) {
        let advice = if status == Status::Ok {
            String::new()
        } else {
            advice.into()
        };
        self.0.push(Check {
            check: check.into(),
            status,
            detail: detail.into(),
            advice,
        });
    }
    fn ok(&mut self, check: &str, detail: impl Into<String>) {
        self.add(check, Status::Ok, detail, "");
    }
    fn fail(&mut self, check: &str, detail: impl Into<String>, advice: impl Into<String>) {
        self.add(check, Status::Fail, detail, advice);
    }
    fn warn(&mut self, check: &str, detail: impl Into<String>, advice: impl Into<String>) {
        self.add(check, Status::Warn, detail, advice);
    }
}

/// Runs every check.
pub fn run(cfg: &Config) -> Vec<Check> {
    let mut r = Report::default();
    pam_checks(&mut r, &cfg.accounts.group);
    sshd_checks(&mut r, cfg.recording.enabled);
    nss_check(&mut r);
    let daemon = helper_check(&mut r, cfg);
    mode_checks(&mut r, cfg);
    proc_check(&mut r, daemon);
    memory_check(&mut r, daemon);
    uid_check(&mut r, cfg);
    quarantine_check(&mut r, cfg);
    mount_checks(&mut r, cfg);
    host_key_check(&mut r, cfg);
    digitalocean_check(&mut r, cfg);
    clock_check(&mut r, cfg);
    // [recording] hook: the recorder, the real shell, the socket, the store.
    for (check, fail, detail, advice) in crate::recording::host::doctor(cfg) {
        match fail {
            None => r.ok(check, detail),
            Some(true) => r.fail(check, detail, advice),
            Some(false) => r.warn(check, detail, advice),
        }
    }
    // [profiles] hook (issue 26): the gate's sshd drop-in, groups, sudo
    // rules, docker.
    let live = live_users(cfg);
    for (check, fail, detail, advice) in crate::profiles::doctor::doctor(cfg, &live) {
        match fail {
            None => r.ok(check, detail),
            Some(true) => r.fail(check, detail, advice),
            Some(false) => r.warn(check, detail, advice),
        }
    }
    r.0
}

/// The live grants' users (an empty list before any state exists: reading
/// the state would create its folder).
fn live_users(cfg: &Config) -> Vec<String> {
    if !cfg.state_dir.is_dir() {
        return Vec::new();
    }
    crate::lifecycle::Helper::new(cfg.clone())
        .and_then(|h| h.status())
        .map(|v| {
            v.into_iter()
                .filter(|e| e.is_live())
                .map(|e| e.user.to_string())
                .collect()
        })
        .unwrap_or_default()
}

// --- PAM -------------------------------------------------------------------

/// The module named by the auth rule of `/etc/pam.d/codext`, as a path.
fn module_file(codext: &str) -> Option<PathBuf> {
    let module = codext
        .lines()
        .find_map(|l| match setup::parse_pam_line(l) {
            Some(PamLine::Rule { kind, module, .. })
                if kind == "auth" && module.contains("pam_codext") =>
            {
                Some(module)
            }
            _ => None,
        })?;
    if module.starts_with('/') {
        return Some(PathBuf::from(module));
    }
    setup::pam_module_dirs()
        .into_iter()
        .map(|d| d.join(&module))
        .find(|p| p.exists())
        .or_else(|| Some(PathBuf::from(module)))
}

fn pam_checks(r: &mut Report, group: &str) {
    let rerun = "run `codext-helper setup` (or fix the file by hand, see docs/SECURITY_REVIEW.md)";
    // The codext stack files and their control values.
    let codext = std::fs::read_to_string("/etc/pam.d/codext").unwrap_or_default();
    let session = std::fs::read_to_string("/etc/pam.d/codext-session").unwrap_or_default();
    let mut bad = Vec::new();
    for (file, kind, control) in setup::EXPECTED_RULES {
        let text = if file == "codext" { &codext } else { &session };
        let found: Vec<String> = text
            .lines()
            .filter_map(|l| match setup::parse_pam_line(l) {
                Some(PamLine::Rule {
                    kind: k,
                    control: c,
                    module,
                    ..
                }) if k == kind && module.contains("pam_codext") => Some(c),
                _ => None,
            })
            .collect();
        if found.len() != 1 || found[0] != control {
            bad.push(format!("/etc/pam.d/{file}: expected one `{kind} {control}` pam_codext rule, found {found:?}"));
        }
    }
    if bad.is_empty() {
        r.ok(
            "pam.rules",
            "/etc/pam.d/codext and codext-session hold the shipped rules",
        );
    } else {
        r.fail("pam.rules", bad.join("; "), rerun);
    }
    // The module file.
    match module_file(&codext) {
        None => r.fail("pam.module", "no pam_codext auth rule in /etc/pam.d/codext", rerun),
        Some(p) if !p.is_file() => r.fail(
            "pam.module",
            format!("{} does not exist: codext logins fail (everyone else is unaffected)", p.display()),
            "install pam_codext.so into the PAM module folder, or run `codext-helper setup --module PATH`",
        ),
        Some(p) => match setup::root_only_path(&p) {
            Err(e) => r.fail("pam.module", e, "make the module and every folder above it root's, writable by root only"),
            Ok(()) => r.ok("pam.module", format!("{} is present and root's alone", p.display())),
        },
    }
    libpam_check(r);
    // sshd's stack.
    match std::fs::read_to_string(setup::PAM_SSHD) {
        Err(e) => r.fail("pam.sshd", format!("{}: {e}", setup::PAM_SSHD), "install openssh-server"),
        Ok(text) => match setup::plan_pam_sshd(&text) {
            Ok((_, missing)) if missing.is_empty() => r.ok(
                "pam.sshd",
                "`@include codext` is the first rule, `@include codext-session` right after pam_selinux close (before pam_env), once each",
            ),
            Ok((_, missing)) if text.lines().any(|l| l.trim() == setup::INCLUDE_SESSION) && missing == [setup::INCLUDE_SESSION] => r.fail(
                "pam.sshd",
                format!(
                    "`{}` is not the rule right after `pam_selinux.so close` (an earlier release put it just before `pam_selinux.so open`): pam_env runs before it and reads a temporary user's ~/.pam_environment, which can replace what sshd says about the key that logged in (SSH_AUTH_INFO_0) and so skip the grant key check and its audit line",
                    setup::INCLUDE_SESSION
                ),
                rerun,
            ),
            Ok((_, missing)) => r.fail("pam.sshd", format!("{} lacks {}", setup::PAM_SSHD, missing.join(", ")), rerun),
            Err(e) => r.fail("pam.sshd", e.to_string(), "put the stock stack back, then run `codext-helper setup`"),
        },
    }
    match std::fs::metadata(setup::LIMITS_FILE) {
        Ok(_) => r.ok(
            "limits",
            format!("{} sets the temporary users' limits", setup::LIMITS_FILE),
        ),
        Err(e) => r.warn(
            "limits",
            format!(
                "{}: {e}: codext users get the default limits",
                setup::LIMITS_FILE
            ),
            rerun,
        ),
    }
    // The job daemons.
    for path in setup::JOB_STACKS {
        let name = format!("pam.{}", path.rsplit('/').next().unwrap_or(path));
        match std::fs::read_to_string(path) {
            Err(_) => r.ok(&name, format!("{path} does not exist (that daemon is not installed)")),
            Ok(text) => match setup::plan_job_stack(&text, path, group) {
                Ok((_, missing)) if missing.is_empty() => r.ok(&name, format!("{path} refuses the {group} group")),
                Ok(_) => r.fail(
                    &name,
                    format!("{path} lets codext users queue jobs that outlive their account (run later as the next holder of the uid)"),
                    rerun,
                ),
                Err(e) => r.fail(&name, e.to_string(), "fix the file by hand"),
            },
        }
    }
}

/// Asks libpam itself: account management for the probe user through the
/// sshd stack, which only pam_codext answers with "permission denied".
fn libpam_check(r: &mut Report) {
    let out = Command::new("pamtester")
        .args(["sshd", PROBE_USER, "acct_mgmt"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Err(_) => r.warn(
            "pam.libpam",
            "pamtester is not installed: cannot ask libpam whether it loads pam_codext",
            "apt-get install pamtester, then run doctor again",
        ),
        Ok(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            let text = text.trim().to_owned();
            // pam_codext's own answers for the probe user: "permission
            // denied" (no such live account) or "cannot retrieve
            // authentication info" (helper down). Without it the stack ends
            // in another code (pam_unix's, or libpam's for a module it
            // could not load).
            let ours = [
                "Permission denied",
                "Authentication service cannot retrieve authentication info",
            ];
            if !ours.iter().any(|m| text.contains(m)) {
                r.fail(
                    "pam.libpam",
                    format!("libpam did not run pam_codext for {PROBE_USER} ({text}): the module is missing, not loadable or not in the stack"),
                    "check the module path in /etc/pam.d/codext and that the file is a pam_codext build for this machine",
                );
            } else {
                r.ok(
                    "pam.libpam",
                    format!("libpam loads pam_codext and it decides for user-* ({text})"),
                );
            }
        }
    }
}

// --- sshd ------------------------------------------------------------------

fn sshd_checks(r: &mut Report, recording: bool) {
    let eff = match setup::sshd_effective() {
        Ok(e) => e,
        Err(e) => {
            r.fail(
                "sshd.config",
                e,
                "fix the sshd configuration (sshd -t says what is wrong)",
            );
            return;
        }
    };
    let get = |k: &str| {
        eff.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let fix = format!("{} must be read first and win: run `codext-helper setup`, and set no conflicting value in a Match block above it", setup::SSHD_DROP_IN);
    for (key, want, why) in setup::USER_SSHD_SETTINGS {
        let check = format!("sshd.{key}");
        if get(key) == want {
            r.ok(&check, format!("{key} {want} for user-*"));
        } else {
            r.fail(
                &check,
                format!("{key} is {:?} for user-*, not {want} ({why})", get(key)),
                &fix,
            );
        }
    }
    match get("clientaliveinterval").parse::<u64>() {
        Ok(n) if n > 0 => r.ok("sshd.clientaliveinterval", format!("clientaliveinterval {n}, countmax {}", get("clientalivecountmax"))),
        _ => r.fail(
            "sshd.clientaliveinterval",
            "ClientAliveInterval is 0 for user-*: a dead TCP peer keeps the account alive for hours",
            &fix,
        ),
    }
    if eff
        .iter()
        .any(|(k, v)| k == "subsystem" && v.contains("internal-sftp"))
    {
        // With recording on the login shell is the recorder, which
        // internal-sftp would bypass: sftp would go unrecorded.
        r.add(
            "sshd.sftp",
            if recording { Status::Fail } else { Status::Warn },
            "`Subsystem sftp internal-sftp` applies to user-*: it bypasses the login shell (and so the session recorder)",
            "use the stock `Subsystem sftp /usr/lib/openssh/sftp-server`, or override it for user-* with ForceCommand",
        );
    } else {
        r.ok(
            "sshd.sftp",
            "sftp for user-* goes through the login shell (the session recorder)",
        );
    }
}

fn nss_check(r: &mut Report) {
    let text = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
    match setup::nss_problem(&text) {
        Some(p) => r.fail("nss", p, "make the passwd line `passwd: files systemd`"),
        None if !setup::nss_systemd_installed() => r.fail(
            "nss",
            "libnss_systemd.so.2 is missing: armed users never resolve",
            "apt-get install libnss-systemd",
        ),
        None => r.ok(
            "nss",
            "passwd: consults nss-systemd, which announces armed users",
        ),
    }
}

// --- the daemon --------------------------------------------------------------

/// Pings the daemon; returns its pid.
fn helper_check(r: &mut Report, cfg: &Config) -> Option<i32> {
    let start = if setup::systemd_running() {
        "systemctl start codext-helper"
    } else {
        "start `codext-helper serve` as root"
    };
    let sock = &cfg.socket;
    let ping = || -> std::result::Result<(i32, String), String> {
        let mut s = std::os::unix::net::UnixStream::connect(sock)
            .map_err(|e| format!("cannot connect to {}: {e}", sock.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        let pid = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
            .map(|c| c.pid())
            .map_err(|e| e.to_string())?;
        let body = Request::Ping.encode().map_err(|e| e.to_string())?;
        write_frame(&mut s, &body).map_err(|e| e.to_string())?;
        let frame = read_frame(&mut s).map_err(|e| format!("no answer: {e}"))?;
        let reply = codext_wire::Reply::decode(&frame).map_err(|e| e.to_string())?;
        if reply.status != ReplyStatus::Ok {
            return Err(format!("it answered {:?}: {}", reply.status, reply.reason));
        }
        Ok((pid, reply.reason))
    };
    match ping() {
        Ok((pid, reason)) => {
            r.ok(
                "helper",
                format!(
                    "the daemon (pid {pid}) answers a ping on {} ({reason})",
                    sock.display()
                ),
            );
            Some(pid)
        }
        Err(e) => {
            r.fail(
                "helper",
                format!("the daemon does not answer: {e}; every codext login is refused"),
                start,
            );
            None
        }
    }
}

fn mode_checks(r: &mut Report, cfg: &Config) {
    let socket_dir = cfg
        .socket
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let audit_dir = cfg
        .audit_log
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let items: [(&str, PathBuf, u32, &str); 5] = [
        ("modes.socket", cfg.socket.clone(), 0o600, "socket"),
        ("modes.socket_dir", socket_dir, 0o700, "dir"),
        ("modes.state_dir", cfg.state_dir.clone(), 0o700, "dir"),
        ("modes.server_key", cfg.server_key.clone(), 0o600, "file"),
        ("modes.audit_dir", audit_dir, 0o755, "dir"),
    ];
    for (check, path, max, kind) in items {
        match std::fs::symlink_metadata(&path) {
            Err(e) => r.fail(
                check,
                format!("{}: {e}", path.display()),
                "run `codext-helper setup` (and start the daemon)",
            ),
            Ok(m) => {
                let mode = m.mode() & 0o7777;
                let right_kind = match kind {
                    "socket" => m.file_type().is_socket(),
                    "dir" => m.is_dir(),
                    _ => m.is_file(),
                };
                if !right_kind || m.uid() != 0 || mode & !max != 0 {
                    r.fail(
                        check,
                        format!("{} is a {} of uid {} with mode {mode:o}; want a {kind} of root, at most {max:o}", path.display(), kind_of(&m), m.uid()),
                        format!("chown root:root {0} && chmod {max:o} {0}", path.display()),
                    );
                } else {
                    r.ok(
                        check,
                        format!("{} is root's, mode {mode:o}", path.display()),
                    );
                }
            }
        }
    }
    match std::fs::metadata(cfg.server_public_key()) {
        Ok(_) => r.ok(
            "modes.server_pub",
            format!("{} exists", cfg.server_public_key().display()),
        ),
        Err(e) => r.fail(
            "modes.server_pub",
            format!("{}: {e}", cfg.server_public_key().display()),
            "run `codext-helper setup`",
        ),
    }
}

fn kind_of(m: &std::fs::Metadata) -> &'static str {
    if m.file_type().is_socket() {
        "socket"
    } else if m.is_dir() {
        "dir"
    } else if m.is_file() {
        "file"
    } else {
        "special file"
    }
}

fn proc_check(r: &mut Report, daemon: Option<i32>) {
    // The daemon's own view when it runs (its mount namespace, its
    // capabilities); otherwise this process's mounts and the unit's
    // capability set, which has no CAP_SYS_PTRACE.
    let (mountinfo, status, whose) = match daemon {
        Some(pid) => (
            std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default(),
            std::fs::read_to_string(format!("/proc/{pid}/status")).ok(),
            format!("the daemon (pid {pid})"),
        ),
        None => (
            std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            None,
            "a helper with the unit's capabilities".to_owned(),
        ),
    };
    let viewer = status
        .as_deref()
        .map(crate::procfs::Viewer::from_status)
        .unwrap_or(crate::procfs::Viewer {
            sys_ptrace: false,
            groups: vec![0],
        });
    let problem = match crate::procfs::parse_proc_mount(&mountinfo) {
        None => Some("/proc is not a proc mount".to_owned()),
        Some(m) => crate::procfs::visibility_problem(&m, &viewer),
    };
    match problem {
        None => r.ok("proc", format!("/proc shows every process to {whose}")),
        Some(why) => r.fail(
            "proc",
            format!("{why}: teardown could miss a temporary user's processes"),
            "remount /proc without hidepid (or with gid= of a group the helper is in): mount -o remount,hidepid=0 /proc, and fix /etc/fstab",
        ),
    }
}

/// Whether the running daemon locked its memory (it does not when that
/// would starve it: no `CAP_IPC_LOCK` under a finite `RLIMIT_MEMLOCK`).
fn memory_check(r: &mut Report, daemon: Option<i32>) {
    let Some(pid) = daemon else {
        return; // `helper` already fails.
    };
    let locked = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .as_deref()
        .and_then(crate::procfs::locked_kib);
    match locked {
        Some(kib) if kib > 0 => r.ok(
            "memory",
            format!("the daemon's memory is locked ({kib} kB): passwords it checks never reach swap"),
        ),
        _ => r.warn(
            "memory",
            format!("the daemon (pid {pid}) has not locked its memory: a password being checked could be written to swap"),
            "give the daemon CAP_IPC_LOCK (the shipped unit does; docker: --cap-add IPC_LOCK) and restart it",
        ),
    }
}

// --- accounts ------------------------------------------------------------------

fn uid_check(r: &mut Report, cfg: &Config) {
    let (min, max) = (cfg.accounts.uid_min, cfg.accounts.uid_max);
    // Only read the state when it exists: opening it would create the folder.
    let ours: Vec<String> = if cfg.state_dir.is_dir() {
        crate::lifecycle::Helper::new(cfg.clone())
            .and_then(|h| h.status())
            .map(|v| v.into_iter().map(|e| e.user.to_string()).collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    // /etc/passwd, and every NSS source (LDAP, sssd, userdb…) by uid.
    let mut held: Vec<(String, u32)> = crate::accounts::passwd_file_entries()
        .into_iter()
        .filter_map(|(name, uid)| {
            Some((name, uid.as_raw())).filter(|(_, u)| (min..=max).contains(u))
        })
        .collect();
    for uid in min..=max {
        if let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
            if !held.iter().any(|(n, _)| *n == u.name) {
                held.push((u.name, uid));
            }
        }
    }
    let foreign: Vec<String> = held
        .into_iter()
        .filter(|(name, _)| !ours.contains(name))
        .map(|(name, uid)| format!("{name} ({uid})"))
        .collect();
    let systemd_overlap = [(60001u32, 60513u32), (61184, 65519)]
        .iter()
        .any(|(a, b)| min <= *b && *a <= max);
    if systemd_overlap {
        r.fail(
            "uids",
            format!("{min}..={max} overlaps systemd's reserved ranges (60001-60513, 61184-65519)"),
            "choose accounts.uid_min..uid_max below 60001",
        );
    } else if !foreign.is_empty() {
        r.fail(
            "uids",
            format!(
                "accounts not made by codext hold uids in {min}..={max}: {}",
                foreign.join(", ")
            ),
            "move them out of the range or choose another accounts.uid_min..uid_max in helper.toml",
        );
    } else {
        r.ok(
            "uids",
            format!("{min}..={max} holds only codext's accounts and is clear of systemd's ranges"),
        );
    }
}

/// Where a temporary user's files can go: the homes and the swept folders
/// on `nosuid` mounts, and no world-writable folder on the root file
/// system outside the swept set (see [`mounts`]). Warnings: codext works,
/// but leftovers are less contained.
fn mount_checks(r: &mut Report, cfg: &Config) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let all = mounts::parse_mountinfo(&info);
    let mut folders = vec![cfg.accounts.home_base.clone()];
    folders.extend(crate::paths::SWEEP_ROOTS.iter().map(PathBuf::from));
    let bare = mounts::without_nosuid(&all, &folders);
    if bare.is_empty() {
        r.ok(
            "mounts.nosuid",
            "the homes and every swept folder are on nosuid mounts",
        );
    } else {
        let list: Vec<String> = bare
            .iter()
            .map(|(f, m)| format!("{} (on {})", f.display(), m.display()))
            .collect();
        r.warn(
            "mounts.nosuid",
            format!("without nosuid: {}", list.join(", ")),
            "mount them nosuid (a tmpfs for /tmp: `systemctl enable tmp.mount`, or `tmpfs /tmp tmpfs nosuid,nodev 0 0` in /etc/fstab; for a separate file system add nosuid to its options): until its removal sweeps it, a setuid file a temporary user leaves there runs as that user for anyone who finds it",
        );
    }
    let skip: Vec<PathBuf> = folders
        .iter()
        .map(|f| std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()))
        .collect();
    let walk = mounts::world_writable(Path::new("/"), &skip, Duration::from_secs(10));
    let swept = crate::paths::SWEEP_ROOTS.join(", ");
    if !walk.found.is_empty() {
        let mut shown: Vec<String> = walk
            .found
            .iter()
            .take(10)
            .map(|p| p.display().to_string())
            .collect();
        if walk.found.len() > 10 {
            shown.push(format!("and {} more", walk.found.len() - 10));
        }
        r.warn(
            "mounts.world_writable",
            format!(
                "world-writable folders on the root file system that codext does not sweep: {}",
                shown.join(", ")
            ),
            format!(
                "this is the operator's job: take write permission from others (`chmod o-w FOLDER`), or give such a folder a file system of its own and clean it yourself; a temporary user can leave files there that outlive its account and belong to the next holder of its uid (codext sweeps only {swept} and the homes)"
            ),
        );
    } else if walk.cut {
        r.warn(
            "mounts.world_writable",
            format!(
                "stopped after 10 s and {} folders of the root file system: not all were looked at",
                walk.folders
            ),
            "look yourself: `find / -xdev -type d -perm -0002`; any folder it lists outside the swept ones can hold a temporary user's files after its removal",
        );
    } else {
        r.ok(
            "mounts.world_writable",
            format!(
                "no world-writable folder on the root file system outside {swept} and the homes ({} folders looked at)",
                walk.folders
            ),
        );
    }
}

/// Quarantined uids (their last holders left files the sweep could not
/// remove): a warning while some remain free, a failure when none does.
fn quarantine_check(r: &mut Report, cfg: &Config) {
    // Only read the state when it exists: opening it would create the folder.
    if !cfg.state_dir.is_dir() {
        r.ok("quarantine", "no state yet: no uid is quarantined");
        return;
    }
    let held = match crate::lifecycle::Helper::new(cfg.clone()).and_then(|h| h.quarantined()) {
        Ok(held) => held,
        Err(e) => {
            r.fail(
                "quarantine",
                format!("cannot read the state: {e}"),
                "see the helper's log",
            );
            return;
        }
    };
    let range = u64::from(cfg.accounts.uid_max - cfg.accounts.uid_min) + 1;
    let uids: Vec<String> = held.keys().map(u32::to_string).collect();
    let advice = "look with `codext-helper quarantine list`, remove what is left, then \
                  `codext-helper quarantine release UID`";
    if held.is_empty() {
        r.ok("quarantine", "no uid is quarantined");
    } else if held.len() as u64 >= range {
        r.fail(
            "quarantine",
            format!(
                "every uid of the range is quarantined ({}): no login can be issued",
                uids.join(", ")
            ),
            advice,
        );
    } else {
        r.warn(
            "quarantine",
            format!(
                "{} uid(s) quarantined, never handed out until released: {}",
                held.len(),
                uids.join(", ")
            ),
            advice,
        );
    }
}

fn host_key_check(r: &mut Report, cfg: &Config) {
    match codext_core::hostkeys::fingerprints(&cfg.host_key_dir, &cfg.host_keys) {
        Ok(f) if !f.is_empty() => r.ok(
            "hostkeys",
            format!("{} host key(s) to sign into puzzles", f.len()),
        ),
        Ok(_) => r.fail(
            "hostkeys",
            "no host key found",
            "ssh-keygen -A (or set host_keys in helper.toml)",
        ),
        Err(e) => r.fail(
            "hostkeys",
            e.to_string(),
            "ssh-keygen -A (or fix host_keys in helper.toml)",
        ),
    }
}

fn digitalocean_check(r: &mut Report, cfg: &Config) {
    let d = &cfg.digitalocean;
    if !d.enabled {
        // The package carries codext-channel: say how to turn it on, so an
        // installed but unconfigured channel reads as a choice, not a fault.
        let detail = match token_scopes::channel_binary() {
            Some(bin) => format!(
                "the DigitalOcean channel is off ({} is installed; to use it: the API token in {}, \
                 [digitalocean] enabled = true in helper.toml, then systemctl enable --now codext-channel)",
                bin.display(),
                d.token_file.display()
            ),
            None => "the DigitalOcean channel is off".to_owned(),
        };
        r.ok("digitalocean", detail);
        return;
    }
    match crate::accounts::killer_ids(&d.channel_user) {
        Ok((uid, _)) => r.ok(
            "digitalocean.channel",
            format!(
                "the channel process runs as {} (uid {uid}); the helper serves it {}",
                d.channel_user,
                d.channel_socket.display()
            ),
        ),
        Err(_) => r.fail(
            "digitalocean.channel",
            format!("the channel user {} does not exist", d.channel_user),
            "codext-helper init (it creates the user), then systemctl enable --now codext-channel",
        ),
    }
    let path = &d.token_file;
    match std::fs::symlink_metadata(path) {
        Err(e) if std::env::var_os("DIGITALOCEAN_TOKEN").is_none() => {
            r.fail("digitalocean", format!("{}: {e}", path.display()), format!("put the API token in {} (0600, root)", path.display()))
        }
        Err(_) => r.warn("digitalocean", "the token comes from DIGITALOCEAN_TOKEN", format!("prefer {} (0600, root)", path.display())),
        Ok(m) if !m.is_file() || m.uid() != 0 || m.mode() & 0o077 != 0 => r.fail(
            "digitalocean",
            format!("{} has uid {} mode {:o}: others may read the API token", path.display(), m.uid(), m.mode() & 0o7777),
            format!("chown root:root {0} && chmod 600 {0}", path.display()),
        ),
        Ok(_) => r.ok(
            "digitalocean",
            format!("{} is root's, 0600 (codext-channel.service reads it with LoadCredential=); the token needs droplet:read, tag:read, tag:create, tag:delete, ssh_key:read", path.display()),
        ),
    }
    let token = match std::fs::symlink_metadata(path) {
        Ok(_) => codext_core::secret_file::read_secret(
            path,
            "the API token file",
            codext_core::secret_file::Owner::Uid(0),
        )
        .ok(),
        Err(_) => std::env::var("DIGITALOCEAN_TOKEN")
            .ok()
            .map(zeroize::Zeroizing::new),
    };
    match token {
        Some(t) if !t.trim().is_empty() => {
            token_scopes::check(r, cfg, &zeroize::Zeroizing::new(t.trim().to_owned()))
        }
        _ => {}
    }
}

fn clock_check(r: &mut Report, cfg: &Config) {
    let now = codext_core::time::now();
    let key_time = std::fs::metadata(&cfg.server_key)
        .ok()
        .map(|m| u64::try_from(m.mtime()).unwrap_or(0));
    if now < EPOCH_FLOOR {
        r.fail(
            "clock",
            format!(
                "the clock says {} (before 2025): puzzle expiry is meaningless",
                codext_core::time::rfc3339(now)
            ),
            "set the time (timedatectl set-ntp true, or date -s)",
        );
    } else if let Some(t) = key_time.filter(|t| *t > now + 300) {
        r.fail(
            "clock",
            format!(
                "the server key was written at {}, after now ({}): the clock went back",
                codext_core::time::rfc3339(t),
                codext_core::time::rfc3339(now)
            ),
            "set the time (timedatectl set-ntp true)",
        );
    } else {
        r.ok("clock", codext_core::time::rfc3339(now));
    }
}

/// Prints the report; returns the exit status (1 when anything failed).
pub fn print(checks: &[Check], json: bool) -> i32 {
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    if json {
        let v = serde_json::json!({"ok": !failed, "checks": checks});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
        for c in checks {
            let tag = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            if c.advice.is_empty() {
                println!("{tag} {:<width$}  {}", c.check, c.detail);
            } else {
                println!(
                    "{tag} {:<width$}  {} -- do: {}",
                    c.check, c.detail, c.advice
                );
            }
        }
    }
    i32::from(failed)
}
