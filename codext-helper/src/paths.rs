//! The one list of every place on the host that creating and removing a
//! temporary account writes to.
//!
//! The shipped unit runs the helper with `ProtectSystem=strict`, so every
//! one of these must be in its `ReadWritePaths=` (a test compares the unit
//! with this list, both ways), and no sandboxing setting may give the helper
//! a private copy of any of them: teardown would then clean a copy and leave
//! the real leftovers for the next holder of the uid.

/// One writable place and why the helper writes there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WritablePath {
    /// Absolute path.
    pub path: &'static str,
    /// Why account creation or removal writes there.
    pub why: &'static str,
    /// May be missing when the unit's mount namespace is set up (the unit
    /// then prefixes it with `-`): absent on some hosts, or made by the
    /// unit's `ExecStartPre=+` (on every boot, `/run` starts empty).
    pub optional: bool,
}

const fn p(path: &'static str, why: &'static str, optional: bool) -> WritablePath {
    WritablePath {
        path,
        why,
        optional,
    }
}

/// Every path account creation and removal touch.
pub const ACCOUNT_PATHS: &[WritablePath] = &[
    p(
        "/etc",
        "useradd/userdel/groupadd rewrite passwd, shadow, group, gshadow, subuid, subgid; the server key lives in /etc/codext",
        false,
    ),
    p("/home", "useradd -m makes the home, userdel -r removes it", false),
    p("/tmp", "a removed user's files are swept", false),
    p("/var/tmp", "a removed user's files are swept", false),
    p("/dev/shm", "a removed user's POSIX shared memory is swept", false),
    p("/dev/mqueue", "a removed user's POSIX message queues are swept", true),
    p("/run/lock", "a removed user's lock files are swept", true),
    p("/var/spool/cron", "a removed user's crontab is removed", true),
    p(
        "/var/spool/cron/atjobs",
        "a removed user's at jobs are removed (atd runs a job as the uid owning it)",
        true,
    ),
    p("/var/mail", "useradd creates and userdel -r removes the mail spool", false),
    p("/var/log", "lastlog/faillog entries, and the audit trail in /var/log/codext", false),
    p("/var/lib/codext", "the helper's state (pending users, uid cursor, setup manifest)", false),
    p("/run/codext", "the daemon's socket", false),
    p("/run/userdb", "armed users announced to nss-systemd", true),
    p(
        "/run/codext-channel",
        "the channel socket the unprivileged codext-channel process connects to",
        true,
    ),
    p("/run/codext-keys", "grant keys for reconnects within a grant", true),
    p(
        "/var/lib/systemd/linger",
        "a removed user's linger flag, when logind did not remove it (accounts::logind)",
        true,
    ),
    p(
        "/run/log/journal",
        "a removed user's volatile journal files are sealed (accounts::logind); the persistent ones are under /var/log",
        true,
    ),
    p(
        "/run/codext-record",
        "the recording socket every channel's recorder streams to (records go to /var/lib/codext)",
        true,
    ),
];

/// The folders every user may write to, swept for a removed uid's files
/// (and its home, which `userdel -r` removes). `/var/spool/cron` holds at
/// jobs (atd runs a job as the uid owning its file: the next holder of the
/// uid) and crontabs; it is swept before the kill as well as after.
pub const SWEEP_ROOTS: &[&str] = &[
    "/var/spool/cron",
    "/tmp",
    "/var/tmp",
    "/dev/shm",
    "/dev/mqueue",
    "/run/lock",
    "/var/mail",
];

#[cfg(test)]
mod tests {
    #[test]
    fn given_the_sweep_roots_then_each_is_an_account_path() {
        for root in super::SWEEP_ROOTS {
            assert!(
                super::ACCOUNT_PATHS.iter().any(|w| w.path == *root),
                "{root} is swept but the unit may not write there"
            );
        }
    }

    use super::*;

    fn unit() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../systemd/codext-helper.service"
        ))
        .unwrap()
    }

    /// Every value of `key=` in the unit, split on white space.
    fn values(unit: &str, key: &str) -> Vec<String> {
        unit.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| {
                l.trim()
                    .strip_prefix(key)?
                    .strip_prefix('=')
                    .map(str::to_owned)
            })
            .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn given_the_unit_then_read_write_paths_are_exactly_the_account_paths() {
        let unit = unit();
        assert_eq!(values(&unit, "ProtectSystem"), ["strict"]);
        let mut in_unit: Vec<String> = values(&unit, "ReadWritePaths");
        let mut want: Vec<String> = ACCOUNT_PATHS
            .iter()
            .map(|w| format!("{}{}", if w.optional { "-" } else { "" }, w.path))
            .collect();
        in_unit.sort();
        want.sort();
        assert_eq!(
            in_unit, want,
            "ReadWritePaths= and paths::ACCOUNT_PATHS differ"
        );
        for key in [
            "ReadOnlyPaths",
            "InaccessiblePaths",
            "TemporaryFileSystem",
            "BindReadOnlyPaths",
        ] {
            assert!(
                values(&unit, key).is_empty(),
                "{key}= would hide an account path"
            );
        }
    }

    /// systemd sets up the mount namespace for `ExecStartPre=+` commands
    /// too: a folder one of them makes must not be required by
    /// `ReadWritePaths=` (226/NAMESPACE on every boot of a stock Debian 12,
    /// the systemd tier boots the packaged unit).
    #[test]
    fn given_the_unit_then_every_folder_its_start_commands_make_is_optional_in_read_write_paths() {
        let unit = unit();
        let rw = values(&unit, "ReadWritePaths");
        let made: Vec<String> = unit
            .lines()
            .filter_map(|l| l.trim().strip_prefix("ExecStartPre="))
            .filter(|cmd| cmd.contains("mkdir"))
            .filter_map(|cmd| cmd.split_whitespace().last().map(str::to_owned))
            .collect();
        assert!(!made.is_empty());
        for dir in made {
            assert!(
                rw.contains(&format!("-{dir}")),
                "{dir} is made by ExecStartPre= but ReadWritePaths= requires it"
            );
            assert!(
                ACCOUNT_PATHS.iter().any(|w| w.path == dir && w.optional),
                "{dir}"
            );
        }
    }

    /// Debian 13's systemd 257 drops `CAP_SETUID` from a service whose unit
    /// sets `User=`, even `User=root` (252 keeps it): the killer and the
    /// keyring child could not take the temporary user's uid.
    #[test]
    fn given_the_unit_then_it_sets_no_user_and_keeps_setuid_and_setgid() {
        let unit = unit();
        assert!(values(&unit, "User").is_empty(), "User= is set");
        assert!(values(&unit, "DynamicUser").is_empty());
        let caps = values(&unit, "CapabilityBoundingSet");
        for cap in ["CAP_SETUID", "CAP_SETGID", "CAP_KILL"] {
            assert!(caps.contains(&cap.to_owned()), "{cap} missing: {caps:?}");
        }
    }

    #[test]
    fn given_the_unit_then_the_calls_teardown_makes_are_allowed() {
        let unit = unit();
        assert!(
            values(&unit, "RestrictAddressFamilies").contains(&"AF_UNIX".to_owned()),
            "loginctl, systemctl and journalctl need AF_UNIX"
        );
        let filter = values(&unit, "SystemCallFilter");
        assert!(
            filter.iter().all(|v| !v.starts_with('~')),
            "a deny list: {filter:?}"
        );
        assert!(
            filter.contains(&"@system-service".to_owned()),
            "@system-service holds @keyring, @setuid, @chown, @ipc, @signal: {filter:?}"
        );
        assert_eq!(values(&unit, "SystemCallErrorNumber"), ["EPERM"]);
    }

    #[test]
    fn given_the_unit_then_no_setting_that_breaks_teardown_is_on() {
        // Each gives the helper a private or partial view of something
        // teardown must clean or see for real; with it, removal would
        // succeed on a copy and leave the real leftovers behind.
        let forbidden: &[(&str, &[&str], &str)] = &[
            (
                "PrivateTmp",
                &["no", "false"],
                "/tmp and /var/tmp would be private copies: leftovers stay",
            ),
            (
                "PrivateDevices",
                &["no", "false"],
                "/dev/shm and /dev/mqueue would be private copies",
            ),
            (
                "ProtectHome",
                &["no", "false"],
                "useradd -m and userdel -r need the real /home",
            ),
            (
                "ProtectProc",
                &["default"],
                "hidden processes would survive the kill",
            ),
            (
                "ProcSubset",
                &["all"],
                "the helper reads /proc/<pid> of every process",
            ),
            (
                "PrivateIPC",
                &["no", "false"],
                "the users' SysV IPC would be out of reach",
            ),
            (
                "PrivateUsers",
                &["no", "false"],
                "uids would be remapped: useradd/kill act on the wrong ids",
            ),
            ("DynamicUser", &["no", "false"], "it must be root"),
        ];
        let unit = unit();
        for (key, allowed, why) in forbidden {
            for v in values(&unit, key) {
                assert!(
                    allowed.contains(&v.as_str()),
                    "{key}={v} is forbidden: {why}"
                );
            }
        }
    }

    #[test]
    fn given_the_unit_then_it_notifies_and_makes_its_folders_0700() {
        let unit = unit();
        assert_eq!(values(&unit, "Type"), ["notify"]);
        for (key, mode) in [
            ("RuntimeDirectory", "RuntimeDirectoryMode"),
            ("StateDirectory", "StateDirectoryMode"),
            ("LogsDirectory", "LogsDirectoryMode"),
        ] {
            assert_eq!(values(&unit, key), ["codext"], "{key}");
            assert_eq!(values(&unit, mode), ["0700"], "{mode}");
        }
        for key in ["After", "Wants", "Requires"] {
            assert!(
                !values(&unit, key)
                    .iter()
                    .any(|v| v == "network-online.target"),
                "{key}=network-online.target: sshd would wait for the network through the helper"
            );
        }
    }

    #[test]
    fn given_the_list_then_every_path_is_absolute_unique_and_explained() {
        let mut seen = std::collections::BTreeSet::new();
        for w in ACCOUNT_PATHS {
            assert!(
                w.path.starts_with('/') && !w.path.ends_with('/'),
                "{}",
                w.path
            );
            assert!(seen.insert(w.path), "{} twice", w.path);
            assert!(!w.why.is_empty());
        }
    }
}
