//! `codext-helper setup` and `unsetup`: wiring a host into codext and back,
//! with one command each.
//!
//! `setup` computes every file change first (and refuses, changing nothing,
//! a PAM stack whose shape it does not recognise), prints the diff, writes
//! the files atomically, runs `sshd -t` and checks the effective sshd
//! configuration for a codext user, and only then keeps them; any failure
//! puts back the byte-identical previous files. Then it runs
//! [`Helper::init`] (server key, group, system accounts) and records what it
//! did in a manifest under the state folder, so that `unsetup` removes
//! exactly that: previous files back byte for byte where nothing else
//! changed since, only codext's lines where the operator edited a file.
//!
//! The lines it adds are the ones the shipped files document:
//! `@include codext` as the first rule of `/etc/pam.d/sshd`,
//! `@include codext-session` just before its `pam_selinux.so open` rule,
//! and, in `/etc/pam.d/atd` and `/etc/pam.d/cron` where they exist, an
//! `account` rule that refuses members of the codext group (a temporary
//! user must leave no job behind for the next holder of its uid).

use crate::config::Config;
use crate::error::{HelperError, Result};
use crate::lifecycle::Helper;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a package installs the shipped files (the layout of `pam.d/` in
/// the source tree: `codext`, `codext-session`, `sshd_config.d/codext.conf`,
/// `limits.d/codext.conf`).
pub const DEFAULT_DATA_DIR: &str = "/usr/share/codext";
/// sshd's PAM stack.
pub const PAM_SSHD: &str = "/etc/pam.d/sshd";
/// The sshd drop-in: `00-` so it is read first (sshd keeps the first value
/// it reads for each keyword, sshd_config(5)).
pub const SSHD_DROP_IN: &str = "/etc/ssh/sshd_config.d/00-codext.conf";
/// The limits file.
pub const LIMITS_FILE: &str = "/etc/security/limits.d/codext.conf";
/// PAM stacks of the job daemons codext users must be kept out of.
pub const JOB_STACKS: [&str; 2] = ["/etc/pam.d/atd", "/etc/pam.d/cron"];
/// The manifest's name in the state folder.
pub const MANIFEST: &str = "setup.json";
/// The auth line in `/etc/pam.d/sshd`.
pub const INCLUDE_AUTH: &str = "@include codext";
/// The session line in `/etc/pam.d/sshd`.
pub const INCLUDE_SESSION: &str = "@include codext-session";
const SSHD: &str = "/usr/sbin/sshd";
const SYSTEMCTL: &str = "/usr/bin/systemctl";
const UNIT: &str = "codext-helper.service";

/// What `setup` is asked to do.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// The shipped files (see [`DEFAULT_DATA_DIR`]).
    pub data_dir: PathBuf,
    /// The PAM module to reference by absolute path; `None`: `pam_codext.so`
    /// in the PAM module folder.
    pub module: Option<PathBuf>,
    /// A built module to install as `pam_codext.so` in the PAM module
    /// folder (then named by that name).
    pub install_module: Option<PathBuf>,
    /// Print the diff, change nothing.
    pub dry_run: bool,
}

/// One file as setup leaves it, recorded for `unsetup`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRecord {
    /// The file.
    pub path: PathBuf,
    /// Its content before the first setup (`None`: it did not exist).
    pub before: Option<String>,
    /// SHA-256 (hex) of the content setup wrote last.
    pub after_sha256: String,
    /// The lines setup inserted into an existing file (empty: setup wrote
    /// the whole file).
    pub added: Vec<String>,
}

/// What setup did, kept in the state folder for `unsetup`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version (1).
    pub version: u32,
    /// Files written or edited, in the order they were.
    pub files: Vec<FileRecord>,
    /// Accounts `init` created (they appeared in `/etc/passwd`).
    pub users: Vec<String>,
    /// Groups `init` created.
    pub groups: Vec<String>,
    /// Files `init` created (the server key and its public half).
    pub created_files: Vec<PathBuf>,
    /// Folders `init` created.
    pub created_dirs: Vec<PathBuf>,
    /// The module setup installed, if it did.
    #[serde(default)]
    pub module: Option<ModuleRecord>,
}

/// `pam_codext.so` as setup installed it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ModuleRecord {
    /// Where (the PAM module folder).
    pub path: PathBuf,
    /// SHA-256 (hex) of what setup installed.
    pub after_sha256: String,
    /// A copy of the module it replaced, in the state folder.
    pub backup: Option<PathBuf>,
}

fn sha256_bytes(b: &[u8]) -> String {
    codext_core::encoding::hex(&Sha256::digest(b))
}

/// A change to one file.
#[derive(Debug, Clone)]
struct Change {
    path: PathBuf,
    before: Option<String>,
    after: String,
    added: Vec<String>,
}

fn sha256_hex(text: &str) -> String {
    codext_core::encoding::hex(&Sha256::digest(text.as_bytes()))
}

fn refused(m: impl Into<String>) -> HelperError {
    HelperError::Refused(m.into())
}

fn sys(m: impl Into<String>) -> HelperError {
    HelperError::System(m.into())
}

// ---------------------------------------------------------------------------
// PAM files, as text

/// One line of a PAM file, as Linux-PAM reads it (pam.conf(5): `#` starts a
/// comment anywhere on a line; a leading `-` on the type silences a missing
/// module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PamLine {
    /// Blank or comment only.
    Blank,
    /// `@include NAME`.
    Include(String),
    /// `TYPE CONTROL MODULE ARGS…`.
    Rule {
        /// `auth`, `account`, `session` or `password` (without `-`).
        kind: String,
        /// The control field, brackets included.
        control: String,
        /// The module path or name.
        module: String,
        /// The arguments.
        args: Vec<String>,
    },
}

/// Parses one line (see [`PamLine`]); `None` for a line PAM would not
/// accept or that this parser does not understand (continuations).
pub fn parse_pam_line(line: &str) -> Option<PamLine> {
    let text = line.split('#').next().unwrap_or("").trim();
    if text.is_empty() {
        return Some(PamLine::Blank);
    }
    if text.ends_with('\\') {
        return None;
    }
    if let Some(rest) = text.strip_prefix("@include") {
        let name = rest.trim();
        return (!name.is_empty() && !name.contains(char::is_whitespace))
            .then(|| PamLine::Include(name.to_owned()));
    }
    let (kind, rest) = text.split_once(char::is_whitespace)?;
    let kind = kind.trim_start_matches('-').to_ascii_lowercase();
    if !["auth", "account", "session", "password"].contains(&kind.as_str()) {
        return None;
    }
    let rest = rest.trim_start();
    let (control, rest) = if rest.starts_with('[') {
        let end = rest.find(']')?;
        (&rest[..=end], &rest[end + 1..])
    } else {
        rest.split_once(char::is_whitespace)?
    };
    let mut words = rest.split_whitespace();
    let module = words.next()?.to_owned();
    Some(PamLine::Rule {
        kind,
        control: control.to_owned(),
        module,
        args: words.map(str::to_owned).collect(),
    })
}

fn module_name(module: &str) -> &str {
    module.rsplit('/').next().unwrap_or(module)
}

fn is_rule(l: &PamLine) -> bool {
    !matches!(l, PamLine::Blank)
}

fn selinux(l: &PamLine, arg: &str) -> bool {
    matches!(l, PamLine::Rule { kind, module, args, .. }
        if kind == "session" && module_name(module) == "pam_selinux.so" && args.iter().any(|a| a == arg))
}

fn parse_all(text: &str, path: &str) -> Result<Vec<PamLine>> {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            parse_pam_line(l).ok_or_else(|| {
                refused(format!(
                    "{path} line {}: {l:?} is not a PAM line codext-helper understands; \
                     wire codext by hand (docs/SECURITY_REVIEW.md) or fix the line",
                    i + 1
                ))
            })
        })
        .collect()
}

fn insert_before(text: &str, index: usize, lines: &[String]) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i == index {
            for new in lines {
                out.push_str(new);
                out.push('\n');
            }
        }
        out.push_str(l);
    }
    out
}

/// `/etc/pam.d/sshd` with codext's two lines in place, and the lines added.
///
/// The shape understood is Debian's (and Ubuntu's): the first rule is
/// `@include common-auth`; the first session rule is `pam_selinux.so
/// close` and there is exactly one `pam_selinux.so open` after it. Anything
/// else is refused: a wrong guess in this file locks people out.
pub fn plan_pam_sshd(text: &str) -> Result<(String, Vec<String>)> {
    let lines = parse_all(text, PAM_SSHD)?;
    let shape = |why: &str| {
        refused(format!(
            "{PAM_SSHD}: {why}; codext-helper setup only edits the stock Debian shape \
             (first rule `@include common-auth`, session rules framed by `pam_selinux.so close` \
             first and one `pam_selinux.so open`). Nothing was changed: add `{INCLUDE_AUTH}` as the \
             first rule and `{INCLUDE_SESSION}` just before `pam_selinux.so open` by hand"
        ))
    };
    let inc = |name: &str| PamLine::Include(name.to_owned());
    let count = |l: &PamLine| lines.iter().filter(|x| *x == l).count();
    let (n_auth, n_session) = (count(&inc("codext")), count(&inc("codext-session")));
    if n_auth > 1 || n_session > 1 {
        return Err(shape("codext is included more than once"));
    }
    let rules: Vec<(usize, &PamLine)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| is_rule(l))
        .collect();
    // Auth: `@include codext` must be the first rule, `@include common-auth` next.
    let others: Vec<&(usize, &PamLine)> = rules
        .iter()
        .filter(|(_, l)| **l != inc("codext") && **l != inc("codext-session"))
        .collect();
    let Some(&&(first_index, first)) = others.first() else {
        return Err(shape("the file has no rules"));
    };
    if *first != inc("common-auth") {
        return Err(shape("the first rule is not `@include common-auth`"));
    }
    let mut added = Vec::new();
    let mut out = text.to_owned();
    let auth_ok = rules.first().is_some_and(|(_, l)| **l == inc("codext"));
    if n_auth == 1 && !auth_ok {
        return Err(shape("`@include codext` is not the first rule"));
    }
    // Session: between the first session rule (selinux close) and selinux open.
    let session: Vec<&(usize, &PamLine)> = others
        .iter()
        .copied()
        .filter(|(_, l)| matches!(l, PamLine::Rule { kind, .. } if kind == "session"))
        .collect();
    if !session.first().is_some_and(|(_, l)| selinux(l, "close")) {
        return Err(shape(
            "the first session rule is not `pam_selinux.so close`",
        ));
    }
    let opens: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| selinux(l, "open"))
        .map(|(i, _)| i)
        .collect();
    let [open] = opens[..] else {
        return Err(shape("there is not exactly one `pam_selinux.so open` rule"));
    };
    let before_open = rules.iter().rev().find(|(i, _)| *i < open).map(|(_, l)| *l);
    if n_session == 1 && before_open != Some(&inc("codext-session")) {
        return Err(shape(
            "`@include codext-session` is not the rule just before `pam_selinux.so open`",
        ));
    }
    // Insert from the bottom up so indices stay valid.
    if n_session == 0 {
        out = insert_before(&out, open, &[INCLUDE_SESSION.to_owned()]);
        added.push(INCLUDE_SESSION.to_owned());
    }
    if n_auth == 0 {
        out = insert_before(&out, first_index, &[INCLUDE_AUTH.to_owned()]);
        added.insert(0, INCLUDE_AUTH.to_owned());
    }
    Ok((out, added))
}

/// The rule that keeps `group` out of a job daemon's PAM stack.
pub fn job_rule(group: &str) -> String {
    format!("account    required     pam_succeed_if.so quiet user notingroup {group}")
}

fn job_comment(group: &str) -> String {
    format!("# codext: members of group {group} (temporary users) may not run jobs here")
}

/// A job daemon's stack (`atd`, `cron`) with [`job_rule`] as its first
/// account rule, and the lines added. The shape understood: exactly one
/// `@include common-account` and no account rule before it.
pub fn plan_job_stack(text: &str, path: &str, group: &str) -> Result<(String, Vec<String>)> {
    let lines = parse_all(text, path)?;
    let rule = parse_pam_line(&job_rule(group));
    let is_ours = |l: &PamLine| Some(l) == rule.as_ref();
    let account = |l: &PamLine| matches!(l, PamLine::Rule { kind, .. } if kind == "account");
    let shape = |why: &str| {
        refused(format!(
            "{path}: {why}; codext-helper setup expects one `@include common-account` and no \
             account rule before it. Nothing was changed: add `{}` as the first account rule \
             by hand",
            job_rule(group)
        ))
    };
    let ours: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| is_ours(l))
        .map(|(i, _)| i)
        .collect();
    let first_account = lines
        .iter()
        .position(|l| account(l) && !is_ours(l) || *l == PamLine::Include("common-account".into()));
    match (&ours[..], first_account) {
        ([], None) => Err(shape("no account rules")),
        ([], Some(i)) => {
            if lines
                .iter()
                .filter(|l| **l == PamLine::Include("common-account".into()))
                .count()
                != 1
                || lines[i] != PamLine::Include("common-account".into())
            {
                return Err(shape("the account rules are not the stock ones"));
            }
            let added = vec![job_comment(group), job_rule(group)];
            Ok((insert_before(text, i, &added), added))
        }
        ([one], Some(i)) if *one < i => Ok((text.to_owned(), Vec::new())),
        ([_], None) => Ok((text.to_owned(), Vec::new())),
        _ => Err(shape("the codext rule is there twice or not first")),
    }
}

/// `text` without one occurrence of each of `lines` (compared without
/// trailing white space), and how many were found.
pub fn remove_lines(text: &str, lines: &[String]) -> (String, usize) {
    let mut kept: Vec<&str> = text.split_inclusive('\n').collect();
    let mut found = 0;
    for l in lines {
        if let Some(i) = kept.iter().position(|k| k.trim_end() == l.trim_end()) {
            kept.remove(i);
            found += 1;
        }
    }
    (kept.concat(), found)
}

/// The shipped PAM file text with the module token `pam_codext.so` of each
/// rule replaced by `module` (comments untouched).
pub fn with_module(text: &str, module: &str) -> String {
    text.split_inclusive('\n')
        .map(|l| match parse_pam_line(l) {
            Some(PamLine::Rule { module: m, .. }) if m == "pam_codext.so" => {
                let (code, comment) = l.split_once('#').map_or((l, None), |(c, r)| (c, Some(r)));
                let code = code
                    .split_inclusive(char::is_whitespace)
                    .map(|w| {
                        if w.trim_end() == "pam_codext.so" {
                            format!("{module}{}", &w["pam_codext.so".len()..])
                        } else {
                            w.to_owned()
                        }
                    })
                    .collect::<String>();
                match comment {
                    Some(c) => format!("{code}#{c}"),
                    None => code,
                }
            }
            _ => l.to_owned(),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The host

/// Folders that hold PAM modules on this host (those with `pam_unix.so`),
/// multiarch first.
pub fn pam_module_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for base in ["/usr/lib", "/lib"] {
        if let Ok(entries) = std::fs::read_dir(base) {
            let mut arch: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.contains("-linux-"))
                })
                .map(|p| p.join("security"))
                .collect();
            arch.sort();
            dirs.extend(arch);
        }
    }
    dirs.extend(
        [
            "/usr/lib64/security",
            "/lib64/security",
            "/usr/lib/security",
            "/lib/security",
        ]
        .map(PathBuf::from),
    );
    let mut seen = Vec::<PathBuf>::new();
    dirs.into_iter()
        .filter(|d| d.join("pam_unix.so").exists())
        .filter(|d| {
            let c = std::fs::canonicalize(d).unwrap_or_else(|_| d.clone());
            let new = !seen.contains(&c);
            seen.push(c);
            new
        })
        .collect()
}

/// Checks that only root can change `path`: it and every folder above it
/// belong to root and are writable by nobody else (a sticky folder such as
/// `/tmp` is fine: others cannot rename root's entries in it).
pub fn root_only_path(path: &Path) -> std::result::Result<(), String> {
    let path = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut p = Some(path.as_path());
    while let Some(cur) = p {
        let m = std::fs::metadata(cur).map_err(|e| format!("{}: {e}", cur.display()))?;
        let sticky = m.is_dir() && m.mode() & 0o1000 != 0;
        let writable = m.mode() & 0o002 != 0 || (m.mode() & 0o020 != 0 && m.gid() != 0);
        if m.uid() != 0 || (writable && !sticky) {
            return Err(format!(
                "{} is not root's alone (owner uid {}, mode {:o}): whoever can change it can run code inside sshd",
                cur.display(),
                m.uid(),
                m.mode() & 0o7777
            ));
        }
        p = cur.parent();
    }
    Ok(())
}

/// How the PAM lines name the module: `pam_codext.so` (installed in the PAM
/// folder) or an absolute path.
pub fn resolve_module(module: Option<&Path>) -> Result<String> {
    let dirs = pam_module_dirs();
    let path = match module {
        Some(m) => std::fs::canonicalize(m)
            .map_err(|e| HelperError::Input(format!("--module {}: {e}", m.display())))?,
        None => dirs.iter().map(|d| d.join("pam_codext.so")).find(|p| p.exists()).ok_or_else(|| {
            let dir = dirs.first().map_or("/usr/lib/x86_64-linux-gnu/security".into(), |d| d.display().to_string());
            refused(format!(
                "pam_codext.so is not in the PAM module folder: install it \
                 (install -m 0644 target/release/libpam_codext.so {dir}/pam_codext.so) or pass --module PATH"
            ))
        })?,
    };
    if !path.is_file() {
        return Err(HelperError::Input(format!(
            "{} is not a file",
            path.display()
        )));
    }
    root_only_path(&path).map_err(refused)?;
    let in_pam_dir = path.file_name().is_some_and(|n| n == "pam_codext.so")
        && path.parent().is_some_and(|p| {
            dirs.iter()
                .any(|d| std::fs::canonicalize(d).ok().as_deref() == Some(p))
        });
    Ok(if in_pam_dir {
        "pam_codext.so".into()
    } else {
        path.display().to_string()
    })
}

/// Why NSS would not consult nss-systemd (which announces armed users), or
/// `None` when `/etc/nsswitch.conf` lists `systemd` for `passwd` and the
/// module is installed.
pub fn nss_problem(nsswitch: &str) -> Option<String> {
    let line = nsswitch
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .find_map(|l| l.trim().strip_prefix("passwd:"));
    let Some(sources) = line else {
        return Some(
            "/etc/nsswitch.conf has no passwd: line; make it `passwd: files systemd`".into(),
        );
    };
    if !sources.split_whitespace().any(|s| s == "systemd") {
        return Some(format!(
            "/etc/nsswitch.conf says `passwd:{sources}`: add systemd (`passwd: files systemd`), or sshd never sees codext users"
        ));
    }
    None
}

/// Is `libnss_systemd.so.2` installed?
pub fn nss_systemd_installed() -> bool {
    ["/usr/lib", "/lib"].iter().any(|base| {
        Path::new(base).join("libnss_systemd.so.2").exists()
            || std::fs::read_dir(base).is_ok_and(|d| {
                d.flatten()
                    .any(|e| e.path().join("libnss_systemd.so.2").exists())
            })
    })
}

fn read_opt(path: &Path) -> Result<Option<String>> {
    match std::fs::read(path) {
        Ok(b) => String::from_utf8(b).map(Some).map_err(|_| {
            refused(format!(
                "{} is not UTF-8 text; not touching it",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HelperError::system(
            format!("cannot read {}", path.display()),
            e,
        )),
    }
}

fn read_data(dir: &Path, name: &str) -> Result<String> {
    let p = dir.join(name);
    std::fs::read_to_string(&p).map_err(|e| {
        HelperError::Input(format!(
            "cannot read {} ({e}): pass --data-dir with the shipped files (the source tree's pam.d/)",
            p.display()
        ))
    })
}

/// Replaces `path` with `text` atomically; a new file is root's, 0644; an
/// existing one keeps its mode and owner.
fn write_file(path: &Path, text: &str) -> Result<()> {
    write_bytes(path, text.as_bytes(), 0o644)
}

/// Like [`write_file`] with bytes; a new file gets `new_mode`.
fn write_bytes(path: &Path, bytes: &[u8], new_mode: u32) -> Result<()> {
    let fail = |what: &str, e: std::io::Error| {
        HelperError::system(format!("cannot {what} {}", path.display()), e)
    };
    let dir = path
        .parent()
        .ok_or_else(|| sys(format!("{} has no folder", path.display())))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let old = std::fs::symlink_metadata(path).ok();
    if old.as_ref().is_some_and(|m| !m.is_file()) {
        return Err(refused(format!(
            "{} is not a regular file; not touching it",
            path.display()
        )));
    }
    let tmp = dir.join(format!(".{name}.codext-setup"));
    let _ = std::fs::remove_file(&tmp);
    let mode = old.as_ref().map_or(new_mode, |m| m.mode() & 0o7777);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| fail("create a temporary file for", e))?;
    let done = f
        .write_all(bytes)
        .and_then(|()| f.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|()| match &old {
            Some(m) => std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid())),
            None => Ok(()),
        })
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("write", e));
    }
    Ok(())
}

fn put_back(path: &Path, before: Option<&str>) -> Result<()> {
    match before {
        Some(text) => write_file(path, text),
        None => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(HelperError::system(
                format!("cannot remove {}", path.display()),
                e,
            )),
        },
    }
}

fn diff(path: &Path, before: Option<&str>, after: Option<&str>) -> String {
    let name = path.display().to_string();
    let (a, b) = (before.unwrap_or(""), after.unwrap_or(""));
    let old = if before.is_some() {
        name.clone()
    } else {
        "/dev/null".into()
    };
    let new = if after.is_some() {
        name
    } else {
        "/dev/null".into()
    };
    similar::TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(2)
        .header(&old, &new)
        .to_string()
}

fn names_in(file: &str) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split(':')
                .next()
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
        })
        .collect()
}

fn run_quiet(program: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output()
}

/// Is systemd the init system (sd_booted(3): `/run/systemd/system` exists)?
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn manifest_path(cfg: &Config) -> PathBuf {
    cfg.state_dir.join(MANIFEST)
}

/// Reads the manifest, if setup ran.
pub fn load_manifest(cfg: &Config) -> Result<Option<Manifest>> {
    let path = manifest_path(cfg);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| HelperError::state_data(format!("{} is corrupt", path.display()), e, "")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HelperError::state(
            format!("cannot read {}", path.display()),
            e,
        )),
    }
}

fn save_manifest(cfg: &Config, m: &Manifest) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(m)
        .map_err(|e| HelperError::state_data("cannot encode the manifest", e, ""))?;
    crate::store::write_atomic(&cfg.state_dir, MANIFEST, &bytes, 0o600)
}

// ---------------------------------------------------------------------------
// setup

fn plan(cfg: &Config, opts: &SetupOptions, module: &str) -> Result<Vec<Change>> {
    let group = &cfg.accounts.group;
    let mut changes = Vec::new();
    let mut whole = |path: &str, text: String| -> Result<()> {
        let before = read_opt(Path::new(path))?;
        if before.as_deref() != Some(text.as_str()) {
            changes.push(Change {
                path: path.into(),
                before,
                after: text,
                added: Vec::new(),
            });
        }
        Ok(())
    };
    let d = &opts.data_dir;
    whole(
        "/etc/pam.d/codext",
        with_module(&read_data(d, "codext")?, module),
    )?;
    whole(
        "/etc/pam.d/codext-session",
        with_module(&read_data(d, "codext-session")?, module),
    )?;
    whole(SSHD_DROP_IN, read_data(d, "sshd_config.d/codext.conf")?)?;
    whole(
        LIMITS_FILE,
        read_data(d, "limits.d/codext.conf")?.replace("@codext ", &format!("@{group} ")),
    )?;
    let sshd = read_opt(Path::new(PAM_SSHD))?.ok_or_else(|| {
        refused(format!(
            "{PAM_SSHD} does not exist: is openssh-server installed?"
        ))
    })?;
    let (after, added) = plan_pam_sshd(&sshd)?;
    if !added.is_empty() {
        changes.push(Change {
            path: PAM_SSHD.into(),
            before: Some(sshd),
            after,
            added,
        });
    }
    for path in JOB_STACKS {
        if let Some(text) = read_opt(Path::new(path))? {
            let (after, added) = plan_job_stack(&text, path, group)?;
            if !added.is_empty() {
                changes.push(Change {
                    path: path.into(),
                    before: Some(text),
                    after,
                    added,
                });
            }
        }
    }
    Ok(changes)
}

/// What `sshd -T -C user=user-000000000000,…` says for a codext user:
/// (keyword, value) pairs, lower-case keywords.
pub fn sshd_effective() -> std::result::Result<Vec<(String, String)>, String> {
    let out = run_quiet(
        SSHD,
        &[
            "-T",
            "-C",
            "user=user-000000000000,host=localhost,addr=127.0.0.1,laddr=127.0.0.1,lport=22",
        ],
    )
    .map_err(|e| format!("cannot run {SSHD}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "sshd -T failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect())
}

fn check_sshd() -> std::result::Result<(), String> {
    let out = run_quiet(SSHD, &["-t"]).map_err(|e| format!("cannot run {SSHD}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "sshd -t refused the configuration: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let eff = sshd_effective()?;
    let get = |k: &str| {
        eff.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if get("authenticationmethods") != Some("password publickey") || get("usepam") != Some("yes") {
        return Err(format!(
            "{SSHD_DROP_IN} does not take effect for user-* (sshd -T: authenticationmethods {:?}, usepam {:?}): \
             does /etc/ssh/sshd_config `Include /etc/ssh/sshd_config.d/*.conf` before any Match, with UsePAM yes?",
            get("authenticationmethods").unwrap_or("?"),
            get("usepam").unwrap_or("?")
        ));
    }
    Ok(())
}

fn rollback(applied: &[Change]) {
    for c in applied.iter().rev() {
        if let Err(e) = put_back(&c.path, c.before.as_deref()) {
            crate::log::error!("ROLLBACK FAILED for {}: {e}", c.path.display());
        } else {
            println!("rolled back {}", c.path.display());
        }
    }
}

/// Runs `setup` (see the module docs). Prints what it changes.
pub fn setup(cfg: &Config, opts: &SetupOptions) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(refused("setup must run as root"));
    }
    let nsswitch = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
    if let Some(p) = nss_problem(&nsswitch) {
        return Err(refused(p));
    }
    if !nss_systemd_installed() {
        return Err(refused(
            "libnss_systemd.so.2 is missing: apt-get install libnss-systemd",
        ));
    }
    // The module to install, if asked: (target, new bytes, old bytes).
    let install = match &opts.install_module {
        None => None,
        Some(src) => {
            let bytes = std::fs::read(src).map_err(|e| {
                HelperError::Input(format!("--install-module {}: {e}", src.display()))
            })?;
            let dir = pam_module_dirs().into_iter().next().ok_or_else(|| {
                refused("no PAM module folder (none holds pam_unix.so): pass --module PATH")
            })?;
            let target = dir.join("pam_codext.so");
            let before = std::fs::read(&target).ok();
            Some((target, bytes, before))
        }
    };
    let module = match &install {
        Some(_) => "pam_codext.so".to_owned(),
        None => resolve_module(opts.module.as_deref())?,
    };
    let changes = plan(cfg, opts, &module)?;
    let install = install.filter(|(_, new, old)| old.as_deref() != Some(new.as_slice()));
    if let Some((target, new, old)) = install.as_ref().filter(|_| opts.dry_run) {
        println!(
            "dry run: would {} {} (sha256 {})",
            if old.is_some() { "replace" } else { "install" },
            target.display(),
            sha256_bytes(new)
        );
    }
    for c in &changes {
        print!("{}", diff(&c.path, c.before.as_deref(), Some(&c.after)));
    }
    let key_missing = !cfg.server_key.exists();
    let group_missing = crate::accounts::lookup_group(&cfg.accounts.group)?.is_none();
    if opts.dry_run {
        if changes.is_empty() {
            println!("dry run: no file would change");
        }
        if key_missing {
            println!(
                "dry run: would create the server key {}",
                cfg.server_key.display()
            );
        }
        if group_missing {
            println!("dry run: would create the group {}", cfg.accounts.group);
        }
        println!("dry run: nothing was changed");
        return Ok(());
    }
    let mut applied: Vec<Change> = Vec::new();
    let undo_module = || {
        if let Some((target, _, old)) = &install {
            let back = match old {
                Some(b) => write_bytes(target, b, 0o644),
                None => std::fs::remove_file(target).map_err(|e| sys(e.to_string())),
            };
            match back {
                Ok(()) => println!("rolled back {}", target.display()),
                Err(e) => crate::log::error!("ROLLBACK FAILED for {}: {e}", target.display()),
            }
        }
    };
    if let Some((target, new, _)) = &install {
        write_bytes(target, new, 0o644)?;
        if let Err(e) = root_only_path(target) {
            undo_module();
            return Err(refused(e));
        }
    }
    for c in &changes {
        if let Err(e) = write_file(&c.path, &c.after) {
            rollback(&applied);
            undo_module();
            return Err(e);
        }
        applied.push(c.clone());
    }
    if let Err(e) = check_sshd() {
        rollback(&applied);
        undo_module();
        return Err(sys(format!("{e}; every file is back as it was")));
    }
    // init: server key, group, system accounts (whatever init makes).
    let (users_before, groups_before) = (names_in("/etc/passwd"), names_in("/etc/group"));
    let key_dir = cfg.server_key.parent().map(Path::to_path_buf);
    let key_dir_missing = key_dir.as_ref().is_some_and(|d| !d.exists());
    let pub_missing = !cfg.server_public_key().exists();
    let init = Helper::new(cfg.clone()).and_then(|h| h.init());
    let report = match init {
        Ok(r) => r,
        Err(e) => {
            rollback(&applied);
            undo_module();
            return Err(e);
        }
    };
    let mut m = load_manifest(cfg)?.unwrap_or(Manifest {
        version: 1,
        ..Manifest::default()
    });
    for c in &applied {
        let after_sha256 = sha256_hex(&c.after);
        match m.files.iter_mut().find(|r| r.path == c.path) {
            Some(r) => {
                r.after_sha256 = after_sha256;
                for a in &c.added {
                    if !r.added.contains(a) {
                        r.added.push(a.clone());
                    }
                }
            }
            None => m.files.push(FileRecord {
                path: c.path.clone(),
                before: c.before.clone(),
                after_sha256,
                added: c.added.clone(),
            }),
        }
    }
    for u in names_in("/etc/passwd")
        .into_iter()
        .filter(|u| !users_before.contains(u))
    {
        m.users.push(u);
    }
    for g in names_in("/etc/group")
        .into_iter()
        .filter(|g| !groups_before.contains(g))
    {
        m.groups.push(g);
    }
    if key_dir_missing {
        m.created_dirs.extend(key_dir);
    }
    if key_missing {
        m.created_files.push(cfg.server_key.clone());
    }
    if key_missing || pub_missing {
        m.created_files.push(cfg.server_public_key());
    }
    m.created_files.dedup();
    if let Some((target, new, old)) = &install {
        let backup = match (&m.module, old) {
            (Some(r), _) => r.backup.clone(),
            (None, Some(old)) => {
                let b = cfg.state_dir.join("pam_codext.so.before");
                crate::store::write_atomic(&cfg.state_dir, "pam_codext.so.before", old, 0o600)?;
                Some(b)
            }
            (None, None) => None,
        };
        m.module = Some(ModuleRecord {
            path: target.clone(),
            after_sha256: sha256_bytes(new),
            backup,
        });
    }
    save_manifest(cfg, &m)?;
    for c in &applied {
        let what = match (&c.before, c.added.is_empty()) {
            (None, _) => "created".to_owned(),
            (Some(_), true) => "replaced".to_owned(),
            (Some(_), false) => format!("edited (+{} lines)", c.added.len()),
        };
        println!("{what} {}", c.path.display());
    }
    if let Some((target, _, old)) = &install {
        println!(
            "{} {}",
            if old.is_some() {
                "replaced"
            } else {
                "installed"
            },
            target.display()
        );
    }
    if applied.is_empty() && install.is_none() {
        println!("no file changed: the host was already wired");
    }
    println!(
        "sshd -t: the configuration is valid; user-* gets password authentication through PAM"
    );
    println!(
        "server key: {} ({}){}",
        report.server_public_key,
        report.fingerprint,
        if report.created {
            ", created: give it to the agent"
        } else {
            ""
        }
    );
    println!(
        "group: {} (gid {}){}",
        report.group,
        report.gid,
        if group_missing { ", created" } else { "" }
    );
    for u in m.users.iter().filter(|u| !users_before.contains(u)) {
        println!("system account: {u}, created");
    }
    println!(
        "manifest: {} (codext-helper unsetup undoes exactly this)",
        manifest_path(cfg).display()
    );
    if systemd_running() {
        for args in [
            &["enable", "--now", UNIT][..],
            &["reload-or-restart", "ssh.service"][..],
        ] {
            let out = run_quiet(SYSTEMCTL, args)
                .map_err(|e| HelperError::system("cannot run systemctl", e))?;
            if !out.status.success() {
                return Err(sys(format!(
                    "systemctl {} failed: {} (the files stay wired; fix this and run setup again)",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            println!("systemctl {}: done", args.join(" "));
        }
    } else {
        println!(
            "systemd is not running as PID 1: start the daemon yourself (`codext-helper serve`, as root, \
             kept running) and restart sshd so it reads {SSHD_DROP_IN}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// unsetup

/// Runs `unsetup`: removes what the manifest says setup added. Prints what
/// it does; harmless when setup never ran or unsetup already did.
pub fn unsetup(cfg: &Config, dry_run: bool) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(refused("unsetup must run as root"));
    }
    let Some(m) = load_manifest(cfg)? else {
        println!(
            "nothing to undo: no manifest at {} (setup never ran, or unsetup already did)",
            manifest_path(cfg).display()
        );
        return Ok(());
    };
    let live = Helper::new(cfg.clone())?.status()?;
    if !live.is_empty() {
        return Err(refused(format!(
            "{} codext user(s) are pending or logged in ({}): revoke them first (codext-helper revoke USER)",
            live.len(),
            live.iter().map(|e| e.user.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    let mut report = Vec::new();
    for r in m.files.iter().rev() {
        let now = read_opt(&r.path)?;
        let Some(now) = now else {
            report.push(format!("{}: already gone", r.path.display()));
            continue;
        };
        let next = if sha256_hex(&now) == r.after_sha256 {
            match &r.before {
                Some(_) => (
                    r.before.clone(),
                    format!(
                        "restored {} (byte-identical to before setup)",
                        r.path.display()
                    ),
                ),
                None => (None, format!("removed {}", r.path.display())),
            }
        } else if !r.added.is_empty() {
            let (text, found) = remove_lines(&now, &r.added);
            if found == 0 {
                report.push(format!(
                    "{}: edited since setup and no codext line left; left alone",
                    r.path.display()
                ));
                continue;
            }
            (
                Some(text),
                format!(
                    "{} was edited since setup: removed only codext's {found} line(s), kept the rest",
                    r.path.display()
                ),
            )
        } else {
            report.push(format!(
                "{} was changed since setup: left in place (it is yours now; delete it to finish)",
                r.path.display()
            ));
            continue;
        };
        if dry_run {
            print!("{}", diff(&r.path, Some(&now), next.0.as_deref()));
            continue;
        }
        put_back(&r.path, next.0.as_deref())?;
        report.push(next.1);
    }
    if dry_run {
        println!("dry run: nothing was changed");
        return Ok(());
    }
    if let Some(r) = &m.module {
        match std::fs::read(&r.path) {
            Ok(now) if sha256_bytes(&now) == r.after_sha256 => {
                match r.backup.as_ref().map(std::fs::read) {
                    Some(Ok(old)) => {
                        write_bytes(&r.path, &old, 0o644)?;
                        report.push(format!(
                            "restored {} (the module setup replaced)",
                            r.path.display()
                        ));
                    }
                    Some(Err(e)) => report.push(format!(
                        "{}: its backup is unreadable ({e}); left in place",
                        r.path.display()
                    )),
                    None => {
                        std::fs::remove_file(&r.path).map_err(|e| {
                            HelperError::system(format!("cannot remove {}", r.path.display()), e)
                        })?;
                        report.push(format!("removed {}", r.path.display()));
                    }
                }
                if let Some(b) = &r.backup {
                    let _ = std::fs::remove_file(b);
                }
            }
            Ok(_) => report.push(format!(
                "{} was replaced since setup: left in place",
                r.path.display()
            )),
            Err(_) => report.push(format!("{}: already gone", r.path.display())),
        }
    }
    if systemd_running() {
        let _ = run_quiet(SYSTEMCTL, &["disable", "--now", UNIT]);
        report.push(format!("systemctl disable --now {UNIT}"));
    }
    for u in m.users.iter().rev() {
        if names_in("/etc/passwd").contains(u) {
            let out = run_quiet("/usr/sbin/userdel", &["--", u])
                .map_err(|e| HelperError::system("cannot run userdel", e))?;
            if !out.status.success() {
                return Err(sys(format!(
                    "userdel {u}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            report.push(format!("removed system account {u}"));
        }
    }
    for g in m.groups.iter().rev() {
        if names_in("/etc/group").contains(g) {
            let out = run_quiet("/usr/sbin/groupdel", &["--", g])
                .map_err(|e| HelperError::system("cannot run groupdel", e))?;
            if !out.status.success() {
                return Err(sys(format!(
                    "groupdel {g}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            report.push(format!("removed group {g}"));
        }
    }
    for f in m.created_files.iter().rev() {
        if std::fs::remove_file(f).is_ok() {
            report.push(format!(
                "removed {} (a later setup makes a new server key: agents must pin it again)",
                f.display()
            ));
        }
    }
    for d in m.created_dirs.iter().rev() {
        if std::fs::remove_dir(d).is_ok() {
            report.push(format!("removed {}", d.display()));
        } else if d.exists() {
            report.push(format!("{}: not empty, left in place", d.display()));
        }
    }
    let path = manifest_path(cfg);
    std::fs::remove_file(&path)
        .map_err(|e| HelperError::state(format!("cannot remove {}", path.display()), e))?;
    for line in report {
        println!("{line}");
    }
    if !systemd_running() {
        println!(
            "stop `codext-helper serve` if it runs, and restart sshd so it forgets {SSHD_DROP_IN}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_SSHD: &str = "# PAM configuration for the Secure Shell service\n\n\
        # Standard Un*x authentication.\n@include common-auth\n\n\
        account    required     pam_nologin.so\n@include common-account\n\n\
        session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so close\n\
        session    required     pam_loginuid.so\n@include common-session\n\
        session    optional     pam_mail.so standard noenv # [1]\n\
        session    required     pam_limits.so\n\
        # SELinux needs to intervene at login time\n\
        session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so open\n\n\
        @include common-password\n";

    fn rules(text: &str) -> Vec<PamLine> {
        text.lines()
            .filter_map(parse_pam_line)
            .filter(is_rule)
            .collect()
    }

    #[test]
    fn given_the_debian_stack_then_codext_goes_first_and_just_before_selinux_open() {
        let (out, added) = plan_pam_sshd(DEBIAN_SSHD).unwrap();
        assert_eq!(added, [INCLUDE_AUTH, INCLUDE_SESSION]);
        let r = rules(&out);
        assert_eq!(r[0], PamLine::Include("codext".into()));
        assert_eq!(r[1], PamLine::Include("common-auth".into()));
        let open = r.iter().position(|l| selinux(l, "open")).unwrap();
        assert_eq!(r[open - 1], PamLine::Include("codext-session".into()));
        // Nothing else changed: removing the two lines gives the original back.
        assert_eq!(remove_lines(&out, &added), (DEBIAN_SSHD.to_owned(), 2));
    }

    #[test]
    fn given_a_wired_stack_then_planning_again_changes_nothing() {
        let (once, _) = plan_pam_sshd(DEBIAN_SSHD).unwrap();
        let (twice, added) = plan_pam_sshd(&once).unwrap();
        assert_eq!(twice, once);
        assert!(added.is_empty());
    }

    #[test]
    fn given_stacks_of_unknown_shape_then_each_is_refused_with_the_reason() {
        for (text, why) in [
            (
                DEBIAN_SSHD.replace(
                    "@include common-auth\n",
                    "auth required pam_env.so\n@include common-auth\n",
                ),
                "first rule",
            ),
            (
                DEBIAN_SSHD.replace("pam_selinux.so close", "pam_foo.so close"),
                "pam_selinux.so close",
            ),
            (
                DEBIAN_SSHD.replace(
                    "pam_selinux.so open\n",
                    "pam_selinux.so open\nsession required pam_selinux.so open\n",
                ),
                "exactly one",
            ),
            (
                format!("@include codext\n@include codext\n{DEBIAN_SSHD}"),
                "more than once",
            ),
            (
                DEBIAN_SSHD.replace(
                    "@include common-auth\n",
                    "@include common-auth\n@include codext\n",
                ),
                "not the first rule",
            ),
            (
                DEBIAN_SSHD.replace(
                    "session    required     pam_limits.so\n",
                    "session    required     pam_limits.so \\\n",
                ),
                "not a PAM line",
            ),
            (String::new(), "no rules"),
        ] {
            let err = plan_pam_sshd(&text).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains("by hand"), "{why}: {err}");
        }
    }

    #[test]
    fn given_the_job_stacks_then_the_rule_comes_before_common_account_once() {
        let atd = "@include common-auth\n@include common-account\nsession    required   pam_loginuid.so\n";
        let (out, added) = plan_job_stack(atd, "/etc/pam.d/atd", "codext").unwrap();
        assert_eq!(added.len(), 2);
        let r = rules(&out);
        assert_eq!(r[1], parse_pam_line(&job_rule("codext")).unwrap());
        assert_eq!(r[2], PamLine::Include("common-account".into()));
        assert_eq!(
            plan_job_stack(&out, "/etc/pam.d/atd", "codext").unwrap(),
            (out.clone(), Vec::new())
        );
        assert_eq!(remove_lines(&out, &added).0, atd);
        let odd = "account required pam_unix.so\n@include common-account\n";
        assert!(plan_job_stack(odd, "/etc/pam.d/cron", "codext").is_err());
    }

    #[test]
    fn given_shipped_pam_files_then_only_the_rules_name_the_module_path() {
        let text = "# pam_codext.so in the folder\nauth [default=die] pam_codext.so\nsession optional pam_codext.so debug # pam_codext.so\n";
        let out = with_module(text, "/opt/x/libpam_codext.so");
        assert_eq!(
            out,
            "# pam_codext.so in the folder\nauth [default=die] /opt/x/libpam_codext.so\nsession optional /opt/x/libpam_codext.so debug # pam_codext.so\n"
        );
        assert_eq!(with_module(text, "pam_codext.so"), text);
    }

    #[test]
    fn given_pam_lines_then_they_parse_as_libpam_reads_them() {
        assert_eq!(parse_pam_line("  # c"), Some(PamLine::Blank));
        assert_eq!(
            parse_pam_line("@include common-auth # x"),
            Some(PamLine::Include("common-auth".into()))
        );
        assert_eq!(
            parse_pam_line("-session [success=ok default=bad] pam_x.so a b"),
            Some(PamLine::Rule {
                kind: "session".into(),
                control: "[success=ok default=bad]".into(),
                module: "pam_x.so".into(),
                args: vec!["a".into(), "b".into()]
            })
        );
        assert_eq!(parse_pam_line("bogus required pam_x.so"), None);
    }

    #[test]
    fn given_nsswitch_texts_then_a_missing_systemd_source_is_named() {
        assert_eq!(nss_problem("passwd:         files systemd\n"), None);
        assert!(nss_problem("passwd: files\n")
            .unwrap()
            .contains("add systemd"));
        assert!(nss_problem("# passwd: files systemd\n")
            .unwrap()
            .contains("no passwd"));
    }

    #[test]
    fn given_paths_then_only_those_nobody_but_root_can_change_pass() {
        let dir = std::env::temp_dir().join(format!("codext-rootonly-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pam_codext.so");
        std::fs::write(&file, b"x").unwrap();
        if !nix::unistd::geteuid().is_root() {
            // A normal user can only make files of its own: refused by owner;
            // a root-owned system file passes. The mode cases need root.
            assert!(root_only_path(&file).is_err());
            assert_eq!(root_only_path(Path::new("/bin/sh")), Ok(()));
            std::fs::remove_dir_all(&dir).unwrap();
            return;
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        // The sticky /tmp above is fine.
        assert_eq!(root_only_path(&file), Ok(()));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(root_only_path(&file)
            .unwrap_err()
            .contains("not root's alone"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(root_only_path(&file)
            .unwrap_err()
            .contains(&dir.display().to_string()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn given_an_edited_file_then_only_our_lines_go() {
        let text = "a\n@include codext\nb\nmine\n";
        assert_eq!(
            remove_lines(text, &["@include codext".into()]),
            ("a\nb\nmine\n".into(), 1)
        );
        assert_eq!(remove_lines("a\n", &["x".into()]), ("a\n".into(), 0));
    }
}
