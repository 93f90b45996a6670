//! `setup` itself: the plan of every file change, applying it, checking
//! sshd, rolling back on any failure, then `init` and the manifest.

use super::files::{
    diff, load_manifest, manifest_path, put_back, read_data, read_opt, save_manifest, write_bytes,
    write_file,
};
use super::host::{
    nss_problem, nss_systemd_installed, pam_module_dirs, resolve_module, root_only_path, run_quiet,
    systemd_running,
};
use super::pam::{plan_job_stack, plan_pam_sshd, with_module};
use super::shipped::{check_drop_in, check_limits, check_pam_file};
use super::sshd::check_sshd;
use super::{
    refused, sha256_bytes, sha256_hex, sys, Change, FileRecord, Manifest, ModuleRecord,
    SetupOptions, JOB_STACKS, LIMITS_FILE, PAM_SSHD, SSHD_DROP_IN, SYSTEMCTL, UNIT,
};
use crate::config::Config;
use crate::error::{HelperError, Result};
use crate::lifecycle::{Helper, InitMade};
use std::path::Path;

/// The copy of the module setup replaced, in the state folder.
const MODULE_BACKUP: &str = "pam_codext.so.before";

/// Records `c` in the manifest (before it is made): a file first changed
/// now keeps its previous content; one changed before keeps its first
/// `before` and remembers the content it had from setup.
fn record_file(m: &mut Manifest, c: &Change) {
    let after_sha256 = sha256_hex(&c.after);
    match m.files.iter_mut().find(|r| r.path == c.path) {
        Some(r) => {
            if r.after_sha256 != after_sha256 && !r.earlier_sha256.contains(&r.after_sha256) {
                r.earlier_sha256.push(r.after_sha256.clone());
            }
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
            earlier_sha256: Vec::new(),
            added: c.added.clone(),
        }),
    }
}

/// Records something `init` is about to make.
fn record_made(m: &mut Manifest, made: &InitMade) {
    fn add<T: PartialEq + Clone>(list: &mut Vec<T>, item: &T) {
        if !list.contains(item) {
            list.push(item.clone());
        }
    }
    match made {
        InitMade::Folder(p) => add(&mut m.created_dirs, p),
        InitMade::Key(p) | InitMade::PublicKey(p) => add(&mut m.created_files, p),
        InitMade::Group(g) => add(&mut m.groups, g),
        // useradd --user-group makes its group of the same name; userdel
        // usually removes it, unsetup removes it if not.
        InitMade::Account(u) => {
            add(&mut m.users, u);
            add(&mut m.groups, u);
        }
    }
}

pub(super) fn plan(cfg: &Config, opts: &SetupOptions, module: &str) -> Result<Vec<Change>> {
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
    // What the shipped files say, sshd trusts for every login: they must
    // be root's alone, and say exactly what codext ships.
    root_only_path(d).map_err(|e| {
        refused(format!(
            "--data-dir {}: {e}. Nothing was changed.",
            d.display()
        ))
    })?;
    let shipped = |name: &str, check: &dyn Fn(&str) -> std::result::Result<(), String>| {
        let text = read_data(d, name)?;
        root_only_path(&d.join(name))
            .and_then(|()| check(&text))
            .map_err(|e| {
                refused(format!(
                    "{}: {e}. Nothing was changed.",
                    d.join(name).display()
                ))
            })?;
        Ok::<String, HelperError>(text)
    };
    let codext = shipped("codext", &|t| check_pam_file("codext", t))?;
    let session = shipped("codext-session", &|t| check_pam_file("codext-session", t))?;
    let drop_in = shipped("sshd_config.d/codext.conf", &check_drop_in)?;
    let limits = shipped("limits.d/codext.conf", &check_limits)?;
    whole("/etc/pam.d/codext", with_module(&codext, module))?;
    whole("/etc/pam.d/codext-session", with_module(&session, module))?;
    whole(SSHD_DROP_IN, drop_in)?;
    // The gated profiles' Match blocks; written when a profile
    // needs one, and emptied (not left stale) when none does any more.
    let profiles = crate::profiles::sshd::DROP_IN;
    if cfg.profiles.gated().next().is_some() || Path::new(profiles).exists() {
        whole(
            profiles,
            crate::profiles::sshd::drop_in(&cfg.profiles, &cfg.recording.recorder),
        )?;
    }
    whole(
        LIMITS_FILE,
        limits.replace("@codext ", &format!("@{group} ")),
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

pub(super) fn rollback(applied: &[Change]) {
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
    // The manifest first: a pending record of every change, each written
    // before the change it records (see the module docs).
    let previous = load_manifest(cfg)?;
    let mut m = previous.clone().unwrap_or(Manifest {
        version: 1,
        ..Manifest::default()
    });
    m.pending = true;
    let put_back_manifest = || {
        let back = match &previous {
            Some(p) => save_manifest(cfg, p),
            None => std::fs::remove_file(manifest_path(cfg))
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                })
                .map_err(|e| sys(e.to_string())),
        };
        if let Err(e) = back {
            crate::log::error!("cannot put the manifest back: {e}");
        }
    };
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
    if let Some((target, new, old)) = &install {
        let backup = match (&m.module, old) {
            (Some(r), _) => r.backup.clone(),
            (None, Some(old)) => {
                crate::store::write_atomic(&cfg.state_dir, MODULE_BACKUP, old, 0o600)?;
                Some(cfg.state_dir.join(MODULE_BACKUP))
            }
            (None, None) => None,
        };
        let mut earlier = m
            .module
            .as_ref()
            .map(|r| {
                let mut e = r.earlier_sha256.clone();
                e.push(r.after_sha256.clone());
                e
            })
            .unwrap_or_default();
        earlier.retain(|h| *h != sha256_bytes(new));
        earlier.dedup();
        m.module = Some(ModuleRecord {
            path: target.clone(),
            after_sha256: sha256_bytes(new),
            backup,
            earlier_sha256: earlier,
        });
        save_manifest(cfg, &m)?;
        write_bytes(target, new, 0o644)?;
        crate::setup::crash_point("installing pam_codext.so");
        if let Err(e) = root_only_path(target) {
            undo_module();
            put_back_manifest();
            return Err(refused(e));
        }
    }
    for c in &changes {
        record_file(&mut m, c);
        let done = save_manifest(cfg, &m).and_then(|()| write_file(&c.path, &c.after));
        if let Err(e) = done {
            rollback(&applied);
            undo_module();
            put_back_manifest();
            return Err(e);
        }
        applied.push(c.clone());
        crate::setup::crash_point(&c.path.display().to_string());
    }
    if let Err(e) = check_sshd() {
        rollback(&applied);
        undo_module();
        put_back_manifest();
        return Err(sys(format!("{e}; every file is back as it was")));
    }
    // init: server key, group, system accounts. It says what it is about
    // to make, and the manifest records each before it is made.
    let init = Helper::new(cfg.clone()).and_then(|h| {
        h.init_with(crate::lifecycle::UnixTime::now(), &mut |made| {
            record_made(&mut m, made);
            save_manifest(cfg, &m)
        })
    });
    let report = match init {
        Ok(r) => r,
        Err(e) => {
            rollback(&applied);
            undo_module();
            // What init made stays in the (pending) manifest.
            return Err(sys(format!(
                "{e}; the files are back as they were; `codext-helper unsetup` removes what init made"
            )));
        }
    };
    m.pending = false;
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
        if report.made.contains(&InitMade::Group(report.group.clone())) {
            ", created"
        } else {
            ""
        }
    );
    for made in &report.made {
        if let InitMade::Account(u) = made {
            println!("system account: {u}, created");
        }
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
