//! What setup asks of the host: the PAM module folders and module path,
//! NSS, whether systemd runs, and the quiet runner for its programs.

use super::refused;
use crate::error::{HelperError, Result};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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

pub(super) fn run_quiet(program: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
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
