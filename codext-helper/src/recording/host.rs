//! The host's part in recording: the recorder's own group, the installed
//! recorder's owner and mode (root, that group, setgid, 2711), and what
//! `doctor` checks.
//!
//! Why setgid: the helper must know a recording connection comes from the
//! recorder and not from a program of the user's that speaks the protocol.
//! Its unit holds no `CAP_SYS_PTRACE`, so it cannot read `/proc/PID/exe`
//! of another user's non-dumpable process; a group only the recorder's exec
//! gives is something the kernel attests in `SO_PEERCRED` at connect time,
//! for the very process that connected (no pid reuse race). The exec of a
//! setgid file also makes the process non-dumpable before its first
//! instruction (and the kernel refuses the group to a traced exec), so no
//! process of the user can attach to it, not even in the instant before
//! the recorder's own `prctl`. The group itself grants nothing but the
//! recording socket's folder.

use crate::config::Config;
use crate::error::{HelperError, Result};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// The recorder's mode: setgid, rwx for root, x for the rest (unreadable,
/// so its exec is never dumpable even without the setgid bit).
pub const MODE: u32 = 0o2711;
const DPKG_STATOVERRIDE: &str = "/usr/bin/dpkg-statoverride";
const DPKG_QUERY: &str = "/usr/bin/dpkg-query";
/// The recorder's group's gid, if it exists.
fn group_gid(cfg: &Config) -> Result<Option<u32>> {
    Ok(crate::accounts::lookup_group(&cfg.recording.group)?.map(|g| g.as_raw()))
}

fn run(tool: &str, args: &[&str]) -> std::result::Result<(), String> {
    let out = Command::new(tool)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{tool} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// True when dpkg knows `path` (installed by a package): its owner and
/// mode then go through `dpkg-statoverride`, so upgrades keep them.
fn packaged(path: &Path) -> bool {
    Path::new(DPKG_STATOVERRIDE).exists()
        && Command::new(DPKG_QUERY)
            .arg("-S")
            .arg(path)
            .env_clear()
            .output()
            .is_ok_and(|o| o.status.success())
}

/// `init`'s part: the recorder's group (made whether or not recording is
/// on, so turning it on needs no other step), and the installed recorder
/// made root's, of that group, 2711. A missing recorder is left to
/// `doctor` (recording then refuses every channel, fail closed).
pub fn ensure(cfg: &Config) -> Result<()> {
    let gid = crate::accounts::ensure_group(&cfg.recording.group)?.as_raw();
    let path = &cfg.recording.recorder;
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !m.is_file() {
        return Err(HelperError::Config(format!(
            "recording.recorder {} is not a regular file",
            path.display()
        )));
    }
    if m.uid() == 0 && m.gid() == gid && m.mode() & 0o7777 == MODE {
        return Ok(());
    }
    if packaged(path) {
        let p = path.to_string_lossy();
        let _ = run(DPKG_STATOVERRIDE, &["--remove", &p]);
        run(
            DPKG_STATOVERRIDE,
            &[
                "--update",
                "--add",
                "root",
                &cfg.recording.group,
                &format!("{MODE:o}"),
                &p,
            ],
        )
        .map_err(HelperError::System)?;
    } else {
        // chown first: it clears the setgid bit.
        std::os::unix::fs::chown(path, Some(0), Some(gid))
            .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(MODE)))
            .map_err(|e| HelperError::system(format!("cannot set up {}", path.display()), e))?;
    }
    Ok(())
}

/// `unsetup`'s part, before the group goes: the recorder back to root's
/// own 0755, so no later group that gets the gid gets the setgid bit.
pub fn release(cfg: &Config) -> Vec<String> {
    let mut done = Vec::new();
    let path = &cfg.recording.recorder;
    let Ok(Some(gid)) = group_gid(cfg) else {
        return done;
    };
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return done;
    };
    if !m.is_file() || m.gid() != gid {
        return done;
    }
    if packaged(path) {
        let _ = run(DPKG_STATOVERRIDE, &["--remove", &path.to_string_lossy()]);
    }
    if std::os::unix::fs::chown(path, Some(0), Some(0))
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)))
        .is_ok()
    {
        done.push(format!("{} back to root:root 0755", path.display()));
    }
    done
}

/// True when the ELF file at `path` asks for a dynamic loader (has a
/// `PT_INTERP` program header).
pub fn dynamically_linked(path: &Path) -> std::result::Result<bool, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        bytes.get(o..o + 8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    };
    if bytes.get(..5) != Some(b"\x7fELF\x02") {
        return Err(format!("{} is not a 64-bit ELF file", path.display()));
    }
    let bad = || format!("{}: a truncated ELF header", path.display());
    let phoff = usize::try_from(u64_at(0x20).ok_or_else(bad)?).map_err(|_| bad())?;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(bad)?);
    for i in 0..phnum {
        let at = phoff.saturating_add(i.saturating_mul(phentsize));
        // PT_INTERP is 3.
        if u32_at(at).ok_or_else(bad)? == 3 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One doctor line: (check, fail?, detail, advice).
pub type Line = (&'static str, Option<bool>, String, String);

/// Doctor's checks (`Some(true)`: fail, `Some(false)`: warn, `None`: ok);
/// `sshd.sftp` (internal-sftp would bypass the recorder) is doctor's own.
pub fn doctor(cfg: &Config) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    let r = &cfg.recording;
    if !r.enabled {
        out.push((
            "recording",
            None,
            "session recording is off ([recording] enabled = false)".into(),
            String::new(),
        ));
        return out;
    }
    let setup = "run `codext-helper setup` (or `init`) to give it its group and mode".to_string();
    let gid = group_gid(cfg).ok().flatten();
    let path = &r.recorder;
    let recorder = match std::fs::symlink_metadata(path) {
        Err(e) => Err((
            format!("{}: {e}", path.display()),
            "install the codext package (it ships /usr/lib/codext/codext-record), or set recording.recorder".to_string(),
        )),
        Ok(m) if !m.is_file() => Err((format!("{} is not a regular file", path.display()), setup.clone())),
        Ok(_) if gid.is_none() => Err((
            format!("the recorder's group {} does not exist", r.group),
            setup.clone(),
        )),
        Ok(m) if m.uid() != 0 || Some(m.gid()) != gid || m.mode() & 0o7777 != MODE => Err((
            format!(
                "{} is uid {} gid {} mode {:o}, not root:{} {MODE:o} (setgid: how the helper knows a recording comes from it)",
                path.display(),
                m.uid(),
                m.gid(),
                m.mode() & 0o7777,
                r.group
            ),
            setup.clone(),
        )),
        Ok(_) => match crate::setup::root_only_path(path) {
            Err(e) => Err((
                format!("{e} (whoever can change the recorder can hide what sessions do)"),
                "keep the recorder and every folder above it root's and writable by root only".into(),
            )),
            Ok(()) => match (nix::sys::statvfs::statvfs(path.as_path()), dynamically_linked(path)) {
                (Ok(v), _) if v.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID) => Err((
                    format!("{} lies on a nosuid mount: its setgid bit does nothing", path.display()),
                    "install it on a file system mounted without nosuid".into(),
                )),
                (_, Ok(true)) => Err((
                    format!("{} is dynamically linked: LD_PRELOAD could put code into it", path.display()),
                    "install the statically linked recorder the package ships".into(),
                )),
                (_, Err(e)) => Err((e, "reinstall the codext package".into())),
                _ => Ok(format!(
                    "{} is root:{} {MODE:o}, statically linked, in root-only folders",
                    path.display(),
                    r.group
                )),
            },
        },
    };
    match recorder {
        Ok(d) => out.push(("recording.recorder", None, d, String::new())),
        Err((d, a)) => out.push(("recording.recorder", Some(true), d, a)),
    }
    let shell = &cfg.accounts.shell;
    match std::fs::metadata(shell) {
        Ok(m) if m.is_file() && m.mode() & 0o001 != 0 => out.push((
            "recording.shell",
            None,
            format!("the recorder runs {}", shell.display()),
            String::new(),
        )),
        _ => out.push((
            "recording.shell",
            Some(true),
            format!(
                "accounts.shell {} is not an executable file",
                shell.display()
            ),
            "set accounts.shell to the real shell (e.g. /bin/bash)".into(),
        )),
    }
    let dir = Path::new(codext_record::proto::SOCKET_DIR);
    match std::fs::symlink_metadata(dir) {
        Ok(m)
            if m.is_dir() && m.uid() == 0 && Some(m.gid()) == gid && m.mode() & 0o7777 == 0o750 =>
        {
            out.push((
                "recording.socket",
                None,
                format!("{} is root:{} 0750", dir.display(), r.group),
                String::new(),
            ))
        }
        Ok(m) => out.push((
            "recording.socket",
            Some(true),
            format!(
                "{} is uid {} gid {} mode {:o}, not root:{} 0750",
                dir.display(),
                m.uid(),
                m.gid(),
                m.mode() & 0o7777,
                r.group
            ),
            "restart codext-helper (it makes the folder)".into(),
        )),
        Err(_) => out.push((
            "recording.socket",
            Some(true),
            format!(
                "{} is missing: no channel can be recorded, so none runs",
                dir.display()
            ),
            "start codext-helper (it makes the folder)".into(),
        )),
    }
    let store = cfg.recordings_dir();
    match std::fs::symlink_metadata(&store) {
        Ok(m) if m.is_dir() && m.uid() == 0 && m.mode() & 0o077 == 0 => {
            let used: u64 = std::fs::read_dir(&store)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum();
            out.push((
                "recording.store",
                None,
                format!(
                    "{} holds {used} of {} bytes (root's, 0700)",
                    store.display(),
                    r.store_bytes
                ),
                String::new(),
            ));
        }
        Ok(m) => out.push((
            "recording.store",
            Some(true),
            format!(
                "{} is uid {} mode {:o}: records must be root's alone",
                store.display(),
                m.uid(),
                m.mode() & 0o7777
            ),
            format!("chown root: {0} && chmod 0700 {0}", store.display()),
        )),
        Err(_) => out.push((
            "recording.store",
            Some(false),
            format!(
                "{} does not exist yet (the daemon makes it)",
                store.display()
            ),
            "start codext-helper".into(),
        )),
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn given_this_test_binary_then_it_is_seen_as_dynamically_linked() {
        let exe = std::env::current_exe().unwrap();
        assert_eq!(super::dynamically_linked(&exe), Ok(true));
        assert!(super::dynamically_linked(std::path::Path::new("/etc/passwd")).is_err());
    }
}
