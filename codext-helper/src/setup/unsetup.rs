//! `unsetup`: removing exactly what the manifest says setup added.

use super::files::{diff, load_manifest, manifest_path, names_in, put_back, read_opt, write_bytes};
use super::host::{run_quiet, systemd_running};
use super::pam::remove_lines;
use super::{refused, sha256_bytes, sha256_hex, sys, CHANNEL_UNIT, SSHD_DROP_IN, SYSTEMCTL, UNIT};
use crate::config::Config;
use crate::error::{HelperError, Result};
use crate::lifecycle::Helper;

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
            live.iter().map(|e| e.user().as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    let mut report = Vec::new();
    if m.pending {
        report.push(
            "setup did not finish (it was interrupted or failed): undoing what it recorded".into(),
        );
    }
    for r in m.files.iter().rev() {
        let now = read_opt(&r.path)?;
        if now == r.before {
            // Recorded, but the change was never made (setup stopped
            // between the record and the write), or already undone.
            report.push(format!("{}: as it was before setup", r.path.display()));
            continue;
        }
        let Some(now) = now else {
            report.push(format!("{}: already gone", r.path.display()));
            continue;
        };
        let sha = sha256_hex(&now);
        let next = if sha == r.after_sha256 || r.earlier_sha256.contains(&sha) {
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
        let before = r.backup.as_ref().and_then(|b| std::fs::read(b).ok());
        match std::fs::read(&r.path) {
            Ok(now) if before.as_deref() == Some(now.as_slice()) => {
                report.push(format!("{}: as it was before setup", r.path.display()));
                if let Some(b) = &r.backup {
                    let _ = std::fs::remove_file(b);
                }
            }
            Ok(now)
                if sha256_bytes(&now) == r.after_sha256
                    || r.earlier_sha256.contains(&sha256_bytes(&now)) =>
            {
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
        // The channel first: it runs as an account removed below (userdel
        // refuses a user with processes) and talks to the helper.
        for unit in [CHANNEL_UNIT, UNIT] {
            let _ = run_quiet(SYSTEMCTL, &["disable", "--now", unit]);
            report.push(format!("systemctl disable --now {unit}"));
        }
        // As setup does: sshd forgets the drop-in and the PAM lines now,
        // not at its next restart.
        let args = ["reload-or-restart", "ssh.service"];
        match run_quiet(SYSTEMCTL, &args) {
            Ok(out) if out.status.success() => {
                report.push(format!("systemctl {}: done", args.join(" ")))
            }
            Ok(out) => report.push(format!(
                "systemctl {} failed: {} (restart sshd yourself)",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => report.push(format!(
                "cannot run systemctl {}: {e} (restart sshd yourself)",
                args.join(" ")
            )),
        }
    }
    for u in m.users.iter().rev() {
        if names_in("/etc/passwd").contains(u) {
            run_del("userdel", u)?;
            report.push(format!("removed system account {u}"));
        }
    }
    // [recording] hook: the recorder loses its setgid group before the
    // group goes (a later group given that gid must not get the bit).
    if m.groups.contains(&cfg.recording.group) {
        report.extend(crate::recording::host::release(cfg));
    }
    for g in m.groups.iter().rev() {
        if names_in("/etc/group").contains(g) {
            run_del("groupdel", g)?;
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

/// Runs `/usr/sbin/<tool> -- <name>` (`userdel` or `groupdel`); a failure
/// carries the tool's own message.
fn run_del(tool: &str, name: &str) -> Result<()> {
    let out = run_quiet(&format!("/usr/sbin/{tool}"), &["--", name])
        .map_err(|e| HelperError::system(format!("cannot run {tool}"), e))?;
    if !out.status.success() {
        return Err(sys(format!(
            "{tool} {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
