//! Creating and removing temporary accounts with the stock tools
//! (`useradd`, `userdel`, `groupadd`), run by absolute path with a clean
//! environment, and the checks that keep the helper's hands off every
//! account it did not create.

use crate::error::{HelperError, Result};
use crate::ids::{Gid, Uid};
use crate::lifecycle::Account;
use crate::sys::KillerIds;
use nix::unistd::{Group, User};
use std::path::Path;
use std::time::{Duration, Instant};

pub mod kill;
pub mod logind;
pub mod shadow;
pub mod sweep;
pub mod tools;

use tools::{GROUPADD, USERADD, USERDEL};

/// The gid of `group`, creating it as a system group if it does not exist.
pub fn ensure_group(group: &str) -> Result<Gid> {
    if let Some(g) = lookup_group(group)? {
        return Ok(g);
    }
    let out = tools::run(
        GROUPADD,
        &["--system", "--", group],
        Duration::from_secs(30),
    )?;
    if !out.success() {
        return Err(HelperError::Account(format!(
            "groupadd {group} failed: {}",
            out.describe()
        )));
    }
    lookup_group(group)?
        .ok_or_else(|| HelperError::Account(format!("group {group} still missing after groupadd")))
}

/// The gid of `group`, if it exists.
pub fn lookup_group(group: &str) -> Result<Option<Gid>> {
    Group::from_name(group)
        .map(|g| g.map(|g| Gid::from_raw(g.gid.as_raw())))
        .map_err(|e| HelperError::account(format!("cannot look up group {group}"), e))
}

/// The accounts NSS and `/etc/passwd` know, for picking a free name and
/// uid (`useradd` itself only checks the files, so both are asked; the
/// file is read once per snapshot).
#[derive(Debug)]
pub struct Known {
    passwd: Vec<(String, Uid)>,
}

impl Known {
    /// Reads `/etc/passwd` now.
    pub fn snapshot() -> Known {
        Known {
            passwd: passwd_file_entries(),
        }
    }

    /// True when NSS or `/etc/passwd` knows `uid`, or logind still keeps
    /// a record of it (a new session would inherit it: [`logind::holds`]).
    pub fn uid_taken(&self, uid: Uid) -> bool {
        !matches!(
            User::from_uid(nix::unistd::Uid::from_raw(uid.as_raw())),
            Ok(None)
        ) || self.passwd.iter().any(|(_, u)| *u == uid)
            || logind::holds(uid)
    }

    /// True when NSS or `/etc/passwd` knows `name`.
    pub fn name_taken(&self, name: &str) -> bool {
        !matches!(User::from_name(name), Ok(None)) || self.passwd.iter().any(|(n, _)| n == name)
    }
}

/// `(name, uid)` of every line of `/etc/passwd`.
pub fn passwd_file_entries() -> Vec<(String, Uid)> {
    let Ok(text) = std::fs::read_to_string("/etc/passwd") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((name.to_owned(), uid))
        })
        .collect()
}

/// Creates the account exactly as announced ([`verify_created`] checks
/// it), a member of `groups` (the profile's). The userdb record
/// must be withdrawn first: `useradd` refuses a name NSS already reports.
pub fn create(account: &Account, groups: &[String], deadline: Duration) -> Result<()> {
    let uid = account.uid.to_string();
    let gid = account.gid.to_string();
    let home = account.home.to_string_lossy();
    let shell = account.shell.to_string_lossy();
    let groups = groups.join(",");
    let mut args = vec![
        "--uid",
        &uid,
        "--gid",
        &gid,
        "--no-user-group",
        "--home-dir",
        &home,
        "--create-home",
        "--shell",
        &shell,
        "--comment",
        "codext temporary user",
        "--key",
        "HOME_MODE=0700",
        // No subordinate uid/gid range (useradd hands one out whenever
        // uidmap is installed): processes under sub-uids would be out of
        // the killer's reach and outlive the account.
        "--key",
        "SUB_UID_COUNT=0",
        "--key",
        "SUB_GID_COUNT=0",
    ];
    // The profile's groups: its own (the sshd Match) and the
    // ones it gives, exactly as announced in the userdb memberships.
    if !groups.is_empty() {
        args.push("--groups");
        args.push(&groups);
    }
    args.push("--");
    args.push(account.name.as_str());
    let out = tools::run(USERADD, &args, deadline)?;
    if !out.success() {
        return Err(HelperError::Account(format!(
            "useradd {} failed: {}",
            account.name,
            out.describe()
        )));
    }
    Ok(())
}

/// Checks that the account NSS now reports is the announced one.
pub fn verify_created(account: &Account) -> Result<()> {
    let user = User::from_name(account.name.as_str())
        .map_err(|e| HelperError::account(format!("cannot look up {}", account.name), e))?
        .ok_or_else(|| {
            HelperError::Account(format!("{} does not resolve after useradd", account.name))
        })?;
    if user.uid.as_raw() != account.uid.as_raw()
        || user.gid.as_raw() != account.gid.as_raw()
        || user.dir != account.home
        || user.shell != account.shell
    {
        return Err(HelperError::Account(format!(
            "{} was created as uid {} gid {} home {} shell {}, not as announced",
            account.name,
            user.uid,
            user.gid,
            user.dir.display(),
            user.shell.display()
        )));
    }
    Ok(())
}

/// True when `/etc/passwd` has the account's name with its uid: the
/// account the helper created is still the one there.
pub fn is_ours_on_disk(account: &Account) -> bool {
    passwd_file_entries()
        .iter()
        .any(|(n, u)| n == account.name.as_str() && *u == account.uid)
}

/// Makes `rel` (plain components) in the account's home, the
/// user's, 0700 — right after `useradd`, before any process of the user
/// runs (so nothing in the home can have been swapped for a link; each
/// component is still checked not to be one).
pub fn make_user_folder(account: &Account, rel: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let mut at = account.home.clone();
    for c in rel.components() {
        let std::path::Component::Normal(n) = c else {
            return Err(HelperError::Account(format!(
                "{} is not a plain folder name",
                rel.display()
            )));
        };
        at.push(n);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() && m.uid() == account.uid.as_raw() => continue,
            Ok(_) => {
                return Err(HelperError::Account(format!(
                    "{} exists and is not the user's folder",
                    at.display()
                )))
            }
            Err(_) => {}
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&at)
            .map_err(|e| HelperError::account(format!("cannot create {}", at.display()), e))?;
        std::os::unix::fs::lchown(&at, Some(account.uid.as_raw()), Some(account.gid.as_raw()))
            .map_err(|e| HelperError::account(format!("cannot chown {}", at.display()), e))?;
    }
    Ok(())
}

/// `gpasswd`, to take a user out of a group a killed `userdel` left it in.
pub const GPASSWD: &str = "/usr/bin/gpasswd";

/// The groups `/etc/group` or `/etc/gshadow` still lists
/// `user` as a member of.
pub fn groups_listing(user: &str) -> Vec<String> {
    let mut out = Vec::new();
    for file in ["/etc/group", "/etc/gshadow"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines() {
            let f: Vec<&str> = line.split(':').collect();
            // group: name:pw:gid:members; gshadow: name:pw:admins:members
            let listed = f.get(3).is_some_and(|m| m.split(',').any(|u| u == user))
                || (file == "/etc/gshadow"
                    && f.get(2).is_some_and(|a| a.split(',').any(|u| u == user)));
            if listed {
                if let Some(name) = f.first() {
                    if !out.iter().any(|g| g == name) {
                        out.push((*name).to_owned());
                    }
                }
            }
        }
    }
    out
}

/// After `userdel`: `user` is in no group any more. `userdel`
/// takes a user out of every group it is in; one killed at its deadline
/// may not have, so what is left is removed with `gpasswd --delete` (the
/// groups named are returned, as a repair). An error when any is still
/// left.
pub fn leave_groups(user: &str, deadline: Duration) -> Result<Vec<String>> {
    let left = groups_listing(user);
    for g in &left {
        tools::run(GPASSWD, &["--delete", user, g], deadline)?;
    }
    let still = groups_listing(user);
    if !still.is_empty() {
        return Err(HelperError::Account(format!(
            "{user} is still a member of {} after gpasswd --delete",
            still.join(", ")
        )));
    }
    Ok(left)
}

/// The killer's uid and gid: a locked system account in `/etc/passwd`,
/// created by `init` (see [`crate::sys`] for why it must exist and be used
/// by nothing else).
pub fn killer_ids(name: &str) -> Result<(Uid, Gid)> {
    let line = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.split(':').next() == Some(name))
                .map(str::to_owned)
        })
        .ok_or_else(|| {
            HelperError::Config(format!(
                "the killer account {name} is not in /etc/passwd: run `codext-helper init`"
            ))
        })?;
    let mut f = line.split(':').skip(2);
    let (Some(Ok(uid)), Some(Ok(gid))) = (
        f.next().map(str::parse::<Uid>),
        f.next().map(str::parse::<Gid>),
    ) else {
        return Err(HelperError::Config(format!(
            "/etc/passwd line of {name} is malformed"
        )));
    };
    if uid.is_root() || gid.is_root() {
        return Err(HelperError::Config(format!(
            "the killer account {name} must not have uid or gid 0"
        )));
    }
    Ok((uid, gid))
}

/// Creates the killer account if it is missing: a system user with its own
/// group, no home, no shell, a locked password, no sub-ids.
pub fn ensure_killer(name: &str, range: (u32, u32)) -> Result<(Uid, Gid)> {
    ensure_system_account(name, "codext killer (never logs in)", range)
}

/// Creates the system account `name` (no home, no shell, no sub-ids,
/// password locked) unless it exists, and checks it is outside `range`
/// and has no usable password: the killer, and the channel process's
/// user (`codext-channel`, never logs in either).
pub fn ensure_system_account(name: &str, comment: &str, range: (u32, u32)) -> Result<(Uid, Gid)> {
    if killer_ids(name).is_err() {
        let out = tools::run(
            USERADD,
            &[
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                comment,
                "--key",
                "SUB_UID_COUNT=0",
                "--key",
                "SUB_GID_COUNT=0",
                "--",
                name,
            ],
            Duration::from_secs(30),
        )?;
        if !out.success() {
            return Err(HelperError::Account(format!(
                "useradd {name} failed: {}",
                out.describe()
            )));
        }
    }
    let (uid, gid) = killer_ids(name)?;
    if (range.0..=range.1).contains(&uid.as_raw()) {
        return Err(HelperError::Config(format!(
            "the system account {name} has uid {uid}, inside the temporary users' range"
        )));
    }
    if !password_locked(name) {
        return Err(HelperError::Config(format!(
            "the system account {name} has a usable password: lock it (`usermod --lock {name}`)"
        )));
    }
    Ok((uid, gid))
}

/// True when `/etc/shadow` shows `name`'s password as locked or unset
/// (`!…` or `*`).
pub fn password_locked(name: &str) -> bool {
    std::fs::read_to_string("/etc/shadow")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.split(':').next() == Some(name))
                .and_then(|l| {
                    l.split(':')
                        .nth(1)
                        .map(|p| p.starts_with('!') || p.starts_with('*'))
                })
        })
        .unwrap_or(false)
}

/// Refuses anything that is not demonstrably an account codext created.
pub fn check_ours(account: &Account, uid_range: (u32, u32)) -> Result<()> {
    // The name is a valid codext name by type; the uid must be in range.
    let uid = account.uid.as_raw();
    if uid < uid_range.0 || uid > uid_range.1 {
        return Err(HelperError::Account(format!(
            "{} is not an account codext created; not touching it",
            account.name
        )));
    }
    Ok(())
}

/// Step one of a removal: every process and IPC object of the uid ends
/// (each killer pass under the killer lock at `killer_lock`).
pub fn kill(
    account: &Account,
    killer: (Uid, Gid),
    killer_lock: &Path,
    deadline: Duration,
) -> Result<()> {
    kill::kill_everything(
        KillerIds {
            target: account.uid,
            killer_uid: killer.0,
            killer_gid: killer.1,
        },
        killer_lock,
        deadline,
    )
}

/// Before `userdel -r`: the setuid and setgid bits of every file of the
/// uid in its home go (see [`sweep`]): the home's files are unlinked by
/// `userdel`, whose descriptors another process may hold.
pub fn defuse_home(account: &Account, budget: Duration) -> sweep::Sweep {
    sweep::defuse_owned(&account.home, account.uid, Instant::now() + budget)
}

/// After the kill and `userdel`, while no process of `uid` can run: its
/// kernel keyrings are cleared and invalidated (see
/// [`crate::sys::clear_keyrings_as`]). Returns how many keys the uid still
/// owns once the kernel's key collector has had `settle` to free them: a
/// key the user linked into a keyring of someone else's survives (the
/// caller quarantines the uid).
pub fn clear_keyrings(uid: Uid, deadline: Duration, settle: Duration) -> Result<u64> {
    if !crate::sys::keyrings_available() {
        // keyctl is filtered here (see `sys::keyrings_available`): the user
        // could hold no key, and `/proc/key-users` shows the host's.
        return Ok(0);
    }
    // Any gid but root's does: keyrings belong to uids. `nogroup`'s.
    crate::sys::clear_keyrings_as(uid, Gid::from_raw(65534), deadline)
        .map_err(|e| HelperError::account(format!("cannot clear the keyrings of uid {uid}"), e))?;
    // Invalidated keys are freed by the kernel's key collector, soon after.
    let end = Instant::now() + settle;
    loop {
        let left = crate::procfs::keys_of(uid);
        if left == 0 || Instant::now() >= end {
            return Ok(left);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Step two: the account record goes (`userdel -r`, run under the account
/// lock by the caller). Success is judged from the files, never from the
/// exit status alone: a `userdel` killed at its deadline may have updated
/// `/etc/passwd` and not `/etc/shadow`, which is repaired here. Returns a
/// description of any repair made.
pub fn delete_record(account: &Account, deadline: Duration) -> Result<Option<String>> {
    let mut tool = None;
    if is_ours_on_disk(account) {
        tool = Some(tools::run(
            USERDEL,
            &["--remove", "--", account.name.as_str()],
            deadline,
        )?);
    } else if passwd_file_entries()
        .iter()
        .any(|(n, _)| n == account.name.as_str())
    {
        return Err(HelperError::Account(format!(
            "{} in /etc/passwd no longer has uid {}: someone else's account now; not touching it",
            account.name, account.uid
        )));
    }
    if passwd_file_entries()
        .iter()
        .any(|(n, _)| n == account.name.as_str())
    {
        let how = tool.map(|t| t.describe()).unwrap_or_default();
        return Err(HelperError::Account(format!(
            "userdel {} left it in /etc/passwd: {how}",
            account.name
        )));
    }
    let shadow = Path::new("/etc/shadow");
    if shadow::has_line(shadow, account.name.as_str())
        && shadow::remove_line(shadow, account.name.as_str(), deadline)?
    {
        let how = tool
            .map(|t| t.describe())
            .unwrap_or_else(|| "no userdel run".into());
        return Ok(Some(format!(
            "removed the /etc/shadow line {} left behind ({how})",
            account.name
        )));
    }
    Ok(None)
}

/// Before the kill: the uid's at jobs and crontab go, so none fires while
/// the account is being removed (and none ever for the next holder).
pub fn remove_jobs(account: &Account, budget: Duration) -> sweep::Sweep {
    sweep::remove_owned(
        Path::new("/var/spool/cron"),
        account.uid,
        Instant::now() + budget,
    )
}

/// Step three: what the uid left outside the account record — its home if
/// `userdel` could not remove it, its files in every folder a user may
/// write to ([`crate::paths::SWEEP_ROOTS`]), journald's files of the uid
/// ([`logind::seal_journal_files`]) — within `budget` (the kernel
/// keyrings are cleared after `userdel`: [`clear_keyrings`]).
pub fn sweep_leftovers(uid: Uid, home: &Path, budget: Duration) -> sweep::Sweep {
    let deadline = Instant::now() + budget;
    let mut report = sweep::remove_owned_tree(home, uid, deadline);
    for dir in crate::paths::SWEEP_ROOTS {
        report.merge(sweep::remove_owned(Path::new(dir), uid, deadline));
    }
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1))
    };
    report.merge(logind::seal_journal_files(uid, left()));
    report
}

/// Every uid in `uids` that a file still belongs to — a folder directly in
/// the home base (a home), or anything in a swept folder — with how much
/// and the first few names (see [`sweep::owners_in`]).
pub fn leftovers_in_range(
    uids: std::ops::RangeInclusive<u32>,
    home_base: &Path,
    budget: Duration,
) -> std::collections::BTreeMap<u32, sweep::Found> {
    let deadline = Instant::now() + budget;
    let mut all: std::collections::BTreeMap<u32, sweep::Found> = Default::default();
    // Homes only at the top of the home base (real users' homes may be
    // large); the swept folders whole, as the sweep walks them.
    let scans = std::iter::once((home_base, Some(1))).chain(
        crate::paths::SWEEP_ROOTS
            .iter()
            .map(|r| (Path::new(*r), None)),
    );
    for (root, depth) in scans {
        for (uid, f) in sweep::owners_in(root, uids.clone(), depth, deadline) {
            let into = all.entry(uid).or_default();
            into.count += f.count;
            into.named.extend(f.named);
            into.named.truncate(10);
        }
    }
    all
}
