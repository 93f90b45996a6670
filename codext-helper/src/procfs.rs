//! What `/proc` tells the helper about a uid — its processes and its System
//! V IPC objects — and whether `/proc` can be trusted to tell all of it.
//!
//! A `/proc` mounted with `hidepid=` (1/`noaccess`, 2/`invisible`,
//! 4/`ptraceable`) hides other users' processes from a root process that
//! lacks `CAP_SYS_PTRACE` and is not in the mount's `gid=` group (proc(5)) —
//! exactly the shipped unit's capability set. `subset=pid` hides
//! `/proc/sysvipc`. In either case "`/proc` shows nothing" would not mean
//! "nothing is left", so the helper refuses to serve
//! ([`visibility_problem`]) instead of removing accounts whose processes
//! keep running.

use crate::ids::{Pid, Uid};
use crate::sys::IpcIds;

/// The options of the `/proc` mount that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcMount {
    /// `hidepid=` as a number (0 when absent or `off`).
    pub hidepid: u32,
    /// `gid=`: the group exempt from `hidepid`.
    pub gid: Option<u32>,
    /// `subset=pid`: only process folders are shown.
    pub subset_pid: bool,
}

/// Parses the `/proc` line of `/proc/self/mountinfo` (the last mount on
/// `/proc` wins, as the kernel stacks them). `None` when there is none.
pub fn parse_proc_mount(mountinfo: &str) -> Option<ProcMount> {
    let mut found = None;
    for line in mountinfo.lines() {
        // <id> <parent> <maj:min> <root> <mount point> <opts> [tags…] - <fs> <source> <super opts>
        let mut halves = line.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            continue;
        };
        if left.split(' ').nth(4) != Some("/proc") {
            continue;
        }
        let mut r = right.split(' ');
        if r.next() != Some("proc") {
            continue;
        }
        let opts = r.nth(1).unwrap_or("");
        let mut m = ProcMount::default();
        for opt in opts.split(',') {
            match opt.split_once('=') {
                Some(("hidepid", v)) => {
                    m.hidepid = match v {
                        "off" | "0" => 0,
                        "noaccess" | "1" => 1,
                        "invisible" | "2" => 2,
                        "ptraceable" | "4" => 4,
                        // Unknown: assume the worst.
                        _ => 2,
                    }
                }
                Some(("gid", v)) => m.gid = v.parse().ok(),
                Some(("subset", v)) => m.subset_pid = v == "pid",
                _ => {}
            }
        }
        found = Some(m);
    }
    found
}

/// What the helper process may see through `/proc`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Viewer {
    /// `CAP_SYS_PTRACE` is in its effective set.
    pub sys_ptrace: bool,
    /// Its effective and supplementary groups.
    pub groups: Vec<u32>,
}

impl Viewer {
    /// The calling process.
    pub fn current() -> Viewer {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let mut v = Viewer::from_status(&status);
        v.groups.push(nix::unistd::getegid().as_raw());
        v
    }

    /// The process whose `/proc/<pid>/status` text is `status`: its
    /// effective capabilities (`CapEff`) and every gid (`Gid:`, `Groups:`).
    pub fn from_status(status: &str) -> Viewer {
        const CAP_SYS_PTRACE: u32 = 19;
        let cap_eff = effective_capabilities(status);
        Viewer {
            sys_ptrace: cap_eff & (1 << CAP_SYS_PTRACE) != 0,
            groups: status
                .lines()
                .filter_map(|l| l.strip_prefix("Gid:").or_else(|| l.strip_prefix("Groups:")))
                .flat_map(|v| v.split_whitespace().filter_map(|g| g.parse().ok()))
                .collect(),
        }
    }
}

/// The effective capability set (`CapEff:`, a hex mask) of the process
/// whose `/proc/<pid>/status` text is `status`; none when unreadable.
pub fn effective_capabilities(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

/// The memory locked by the process whose `/proc/<pid>/status` text is
/// `status`, in kB (`VmLck:`); `None` when the line is missing.
pub fn locked_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Why `/proc` may hide processes or IPC objects of other users from
/// `viewer`, with what to do about it; `None` when it shows everything.
pub fn visibility_problem(mount: &ProcMount, viewer: &Viewer) -> Option<String> {
    if mount.subset_pid {
        return Some(
            "/proc is mounted with subset=pid, which hides /proc/sysvipc: codext could not \
             find the IPC objects a temporary user leaves; mount /proc without subset=pid"
                .into(),
        );
    }
    if mount.hidepid == 0 || viewer.sys_ptrace {
        return None;
    }
    if mount.gid.is_some_and(|g| viewer.groups.contains(&g)) {
        return None;
    }
    Some(match mount.gid {
        Some(g) => format!(
            "/proc is mounted hidepid={} and this process is neither in its exempt group {g} nor \
             holds CAP_SYS_PTRACE: processes of temporary users would be invisible and survive \
             their removal; run the helper in group {g} (systemd: SupplementaryGroups={g}) or \
             mount /proc without hidepid",
            mount.hidepid
        ),
        None => format!(
            "/proc is mounted hidepid={} with no gid= exemption and this process lacks \
             CAP_SYS_PTRACE: processes of temporary users would be invisible and survive their \
             removal; add gid=<group> to the /proc mount options and run the helper in that \
             group (systemd: SupplementaryGroups=), or mount /proc without hidepid",
            mount.hidepid
        ),
    })
}

/// [`visibility_problem`] for this process and the live `/proc`.
pub fn check_visibility() -> Result<(), String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let mount =
        parse_proc_mount(&info).ok_or_else(|| "no proc file system on /proc".to_string())?;
    match visibility_problem(&mount, &Viewer::current()) {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// pids of every process whose real, effective, saved or filesystem uid is
/// `uid` (zombies included: `userdel` counts them too).
pub fn processes_of(uid: Uid) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<Pid>().ok()))
        .filter(|pid| {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|ids| ids.split_whitespace().any(|id| id.parse() == Ok(uid)))
                .unwrap_or(false)
        })
        .collect()
}

/// pids of every process of `uid` (as [`processes_of`]) that is not a
/// zombie: the ones that can still run code.
pub fn live_processes_of(uid: Uid) -> Vec<Pid> {
    processes_of(uid)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .map(|s| !is_zombie(&s))
                .unwrap_or(false)
        })
        .collect()
}

/// The real, effective, saved and filesystem uids of `pid`, if it runs.
pub fn uids_of(pid: Pid) -> Option<[Uid; 4]> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    uids_in(&status)
}

/// The four uids of a `/proc/<pid>/status` text's `Uid:` line.
pub fn uids_in(status: &str) -> Option<[Uid; 4]> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let mut ids = line.split_whitespace().map(|v| v.parse::<Uid>().ok());
    Some([ids.next()??, ids.next()??, ids.next()??, ids.next()??])
}

/// True when a `/proc/<pid>/status` text is a zombie's (`State:\tZ`).
pub fn is_zombie(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .is_some_and(|s| s.trim_start().starts_with('Z'))
}

/// How many kernel keys `uid` owns, from `/proc/key-users` (`uid: usage
/// nkeys/nikeys …`); 0 when the uid has no line (no key at all).
pub fn keys_of(uid: Uid) -> u64 {
    std::fs::read_to_string("/proc/key-users")
        .map(|t| keys_in(&t, uid))
        .unwrap_or(0)
}

/// [`keys_of`] over the text of `/proc/key-users`.
pub fn keys_in(table: &str, uid: Uid) -> u64 {
    table
        .lines()
        .find_map(|l| {
            let (id, rest) = l.trim_start().split_once(':')?;
            (id.parse::<Uid>().ok()? == uid).then_some(rest)
        })
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|keys| keys.split('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The System V IPC objects whose owner or creator is `uid`.
pub fn ipc_of(uid: Uid) -> IpcIds {
    let read = |kind: &str| {
        std::fs::read_to_string(format!("/proc/sysvipc/{kind}"))
            .map(|t| ipc_ids_in(&t, uid))
            .unwrap_or_default()
    };
    IpcIds {
        shm: read("shm"),
        sem: read("sem"),
        msg: read("msg"),
    }
}

/// Ids in one `/proc/sysvipc/*` table whose `uid` or `cuid` column is
/// `uid` (columns are found by name from the header line).
pub fn ipc_ids_in(table: &str, uid: Uid) -> Vec<i32> {
    let mut lines = table.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.split_whitespace().collect();
    let at = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(id), Some(u), Some(cu)) = (
        at("shmid").or(at("semid")).or(at("msqid")),
        at("uid"),
        at("cuid"),
    ) else {
        return Vec::new();
    };
    lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let owned = [u, cu]
                .iter()
                .any(|&c| f.get(c).and_then(|v| v.parse::<Uid>().ok()) == Some(uid));
            owned.then(|| f.get(id)?.parse().ok()).flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOCK: &str =
        "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n";
    const HIDDEN: &str = "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw,hidepid=invisible,gid=4\n";

    #[test]
    fn given_stock_proc_then_nothing_hidden() {
        let m = parse_proc_mount(STOCK).unwrap();
        assert_eq!(m, ProcMount::default());
        assert_eq!(visibility_problem(&m, &Viewer::default()), None);
    }

    #[test]
    fn given_hidepid_then_only_ptrace_or_the_exempt_group_sees_everything() {
        let m = parse_proc_mount(HIDDEN).unwrap();
        assert_eq!((m.hidepid, m.gid), (2, Some(4)));
        let bare = Viewer {
            sys_ptrace: false,
            groups: vec![0],
        };
        let why = visibility_problem(&m, &bare).unwrap();
        assert!(why.contains("SupplementaryGroups=4"), "{why}");
        let in_group = Viewer {
            sys_ptrace: false,
            groups: vec![0, 4],
        };
        assert_eq!(visibility_problem(&m, &in_group), None);
        let ptrace = Viewer {
            sys_ptrace: true,
            groups: vec![0],
        };
        assert_eq!(visibility_problem(&m, &ptrace), None);
    }

    #[test]
    fn given_numeric_or_unknown_hidepid_or_subset_then_each_flagged() {
        for (opts, hidden) in [
            ("rw,hidepid=1", true),
            ("rw,hidepid=2", true),
            ("rw,hidepid=ptraceable", true),
            ("rw,hidepid=somethingnew", true),
            ("rw,hidepid=0", false),
            ("rw,hidepid=off", false),
            ("rw,subset=pid", true),
        ] {
            let line = format!("1 0 0:1 / /proc rw - proc proc {opts}\n");
            let m = parse_proc_mount(&line).unwrap();
            assert_eq!(
                visibility_problem(&m, &Viewer::default()).is_some(),
                hidden,
                "{opts}"
            );
        }
    }

    #[test]
    fn given_a_status_text_then_its_capabilities_and_every_group() {
        let v = Viewer::from_status("Gid:\t0\t0\t0\t0\nGroups:\t4 27\nCapEff:\t0000000000080000\n");
        assert!(v.sys_ptrace);
        assert_eq!(v.groups, vec![0, 0, 0, 0, 4, 27]);
        assert!(!Viewer::from_status("CapEff:\t00000000000001c1\n").sys_ptrace);
    }

    #[test]
    fn given_key_users_then_the_uids_key_count() {
        let table = "    0:     9 8/8 3/1000000 40/25000000\n59601:     3 3/3 3/200 120/20000\n";
        assert_eq!(keys_in(table, Uid::from_raw(59601)), 3);
        assert_eq!(keys_in(table, Uid::from_raw(0)), 8);
        assert_eq!(keys_in(table, Uid::from_raw(59602)), 0);
        assert_eq!(keys_in("garbage\n59601: x\n", Uid::from_raw(59601)), 0);
    }

    #[test]
    fn given_status_texts_then_the_four_uids_and_zombies() {
        let mixed = "Name:\tplanted\nState:\tS (sleeping)\nUid:\t1000\t59001\t1000\t59001\n";
        let ids = uids_in(mixed).unwrap();
        assert_eq!(ids.map(|u| u.as_raw()), [1000, 59001, 1000, 59001]);
        assert!(!is_zombie(mixed));
        assert!(is_zombie("State:\tZ (zombie)\nUid:\t1\t1\t1\t1\n"));
        assert_eq!(uids_in("Uid:\t1\t2\n"), None, "a short line");
        assert_eq!(uids_in("Uid:\t1\tx\t1\t1\n"), None, "garbage");
        assert_eq!(uids_in(""), None);
    }

    #[test]
    fn given_stacked_proc_mounts_then_the_last_one_counts() {
        let text = format!("{STOCK}{HIDDEN}");
        assert_eq!(parse_proc_mount(&text).unwrap().hidepid, 2);
        assert_eq!(parse_proc_mount("garbage\n\n - \n"), None);
    }

    #[test]
    fn given_sysvipc_tables_then_ids_of_the_owner_or_creator() {
        let shm = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n\
                   0x00000000      32769   600                 1024  100   0     0 59001 59000 59001 59000 0 0 0 4096 0\n\
                   0x00000001      32770   600                 1024  100   0     0 1000 1000 59001 59000 0 0 0 4096 0\n\
                   0x00000002      32771   600                 1024  100   0     0 1000 1000 1000 1000 0 0 0 4096 0\n";
        assert_eq!(ipc_ids_in(shm, Uid::from_raw(59001)), vec![32769, 32770]);
        let msg = "       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime\n\
                   0x1   5   644  0 0 0 0 59002 59000 59002 59000 0 0 0\n";
        assert_eq!(ipc_ids_in(msg, Uid::from_raw(59002)), vec![5]);
        assert!(ipc_ids_in("", Uid::from_raw(1)).is_empty());
        assert!(ipc_ids_in("no columns here\n1 2 3\n", Uid::from_raw(1)).is_empty());
    }
}
