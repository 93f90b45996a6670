//! The checks of the login path: the codext PAM stacks, libpam running
//! the module, sshd's settings for codext users, and NSS announcing armed
//! users.

use super::report::{Report, Status};
use crate::setup::{self, PamLine};
use std::path::PathBuf;
use std::process::Command;

/// The name doctor asks sshd and PAM about: a codext user that never exists.
pub const PROBE_USER: &str = "user-000000000000";

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

pub(super) fn pam_checks(r: &mut Report, group: &str) {
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
pub(super) fn libpam_check(r: &mut Report) {
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

pub(super) fn sshd_checks(r: &mut Report, recording: bool) {
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

pub(super) fn nss_check(r: &mut Report) {
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
