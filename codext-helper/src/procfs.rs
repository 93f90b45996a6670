//! Whether `/proc` may hide processes from the helper.
//!
//! With `hidepid=` (1/`noaccess`, 2/`invisible`, 4/`ptraceable`) the kernel
//! hides other users' processes from anyone who is neither in the mount's
//! `gid=` group nor holds `CAP_SYS_PTRACE` — root included (proc(5)). The
//! shipped unit gives the helper no `CAP_SYS_PTRACE`, so on such a mount the
//! helper could see no process of a temporary user and take "nothing left"
//! for the truth. (`subset=pid` leaves every process folder visible and hides
//! only the rest of `/proc`, which teardown does not read.) Pure functions over `/proc/<pid>/mountinfo` text, shared by
//! `doctor` and `serve`.

/// The options of a `proc` mount that matter here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcOptions {
    /// `hidepid=` as written (`0`, `off`, `1`, `noaccess`, `2`, `invisible`,
    /// `4`, `ptraceable`), if present.
    pub hidepid: Option<String>,
    /// `gid=`: members of this group see every process.
    pub gid: Option<u32>,
    /// `subset=` (e.g. `pid`), if present.
    pub subset: Option<String>,
}

/// Options of the `proc` file system mounted on `/proc` (the last such line
/// wins: a later mount on the same point hides the earlier ones). `None`
/// when `/proc` is not a proc mount in this text.
pub fn proc_options(mountinfo: &str) -> Option<ProcOptions> {
    let mut found = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point options [optional…] - fstype source super-options
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.get(4) != Some(&"/proc") || fields.get(sep + 1) != Some(&"proc") {
            continue;
        }
        let mut o = ProcOptions::default();
        let opts = [fields.get(5), fields.get(sep + 3)];
        for opt in opts.into_iter().flatten().flat_map(|s| s.split(',')) {
            if let Some(v) = opt.strip_prefix("hidepid=") {
                o.hidepid = Some(v.to_owned());
            } else if let Some(v) = opt.strip_prefix("gid=") {
                o.gid = v.parse().ok();
            } else if let Some(v) = opt.strip_prefix("subset=") {
                o.subset = Some(v.to_owned());
            }
        }
        found = Some(o);
    }
    found
}

/// Why processes of other users may be invisible to a process with these
/// capabilities and groups on the `/proc` described by `mountinfo`; `None`
/// when it sees them all.
pub fn hidden_processes_possible(
    mountinfo: &str,
    has_cap_sys_ptrace: bool,
    groups: &[u32],
) -> Option<String> {
    let Some(o) = proc_options(mountinfo) else {
        return Some("/proc is not a proc mount".into());
    };
    let hiding = o
        .hidepid
        .as_deref()
        .is_some_and(|h| !matches!(h, "0" | "off"));
    if hiding && !has_cap_sys_ptrace && !o.gid.is_some_and(|g| groups.contains(&g)) {
        let exempt = match o.gid {
            Some(g) => format!("the helper is not in its gid={g} group"),
            None => "it has no gid= group".into(),
        };
        return Some(format!(
            "/proc is mounted hidepid={}: without CAP_SYS_PTRACE the helper cannot see other users' processes ({exempt})",
            o.hidepid.unwrap_or_default()
        ));
    }
    None
}

/// `CapEff` of a `/proc/<pid>/status` text holds `CAP_SYS_PTRACE` (19).
pub fn status_has_cap_sys_ptrace(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 19) != 0)
}

/// Every gid (`Gid:` and `Groups:`) of a `/proc/<pid>/status` text.
pub fn status_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .filter_map(|l| l.strip_prefix("Gid:").or_else(|| l.strip_prefix("Groups:")))
        .flat_map(|v| v.split_whitespace().filter_map(|g| g.parse().ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "22 1 0:5 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n\
                         23 22 0:20 / /proc/sys/fs/binfmt_misc rw,relatime shared:13 - autofs systemd-1 rw\n";
    const HIDDEN: &str = "22 1 0:5 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw,hidepid=invisible,gid=4\n";

    #[test]
    fn given_a_plain_proc_then_nothing_is_hidden() {
        assert_eq!(hidden_processes_possible(PLAIN, false, &[0]), None);
        assert_eq!(proc_options(PLAIN), Some(ProcOptions::default()));
    }

    #[test]
    fn given_hidepid_without_ptrace_or_group_then_processes_may_be_hidden() {
        let why = hidden_processes_possible(HIDDEN, false, &[0]).unwrap();
        assert!(
            why.contains("hidepid=invisible") && why.contains("gid=4"),
            "{why}"
        );
    }

    #[test]
    fn given_hidepid_with_ptrace_or_the_exempt_group_then_nothing_is_hidden() {
        assert_eq!(hidden_processes_possible(HIDDEN, true, &[0]), None);
        assert_eq!(hidden_processes_possible(HIDDEN, false, &[0, 4]), None);
    }

    #[test]
    fn given_numeric_and_off_values_then_each_is_read_as_meant() {
        let two = HIDDEN.replace("hidepid=invisible,gid=4", "hidepid=2");
        assert!(hidden_processes_possible(&two, false, &[0]).is_some());
        let off = HIDDEN.replace("hidepid=invisible,gid=4", "hidepid=0");
        assert_eq!(hidden_processes_possible(&off, false, &[0]), None);
    }

    #[test]
    fn given_a_later_mount_on_proc_then_it_wins() {
        let stacked = format!("{PLAIN}{HIDDEN}");
        assert!(hidden_processes_possible(&stacked, false, &[0]).is_some());
        let other = format!("{HIDDEN}{PLAIN}");
        assert_eq!(hidden_processes_possible(&other, false, &[0]), None);
    }

    #[test]
    fn given_subset_pid_then_it_is_read_and_hides_no_process() {
        let subset = PLAIN.replace("- proc proc rw", "- proc proc rw,subset=pid");
        assert_eq!(
            proc_options(&subset).unwrap().subset.as_deref(),
            Some("pid")
        );
        assert_eq!(hidden_processes_possible(&subset, false, &[0]), None);
    }

    #[test]
    fn given_no_proc_mount_then_that_is_the_reason() {
        assert!(hidden_processes_possible("", true, &[])
            .unwrap()
            .contains("not a proc"));
    }

    #[test]
    fn given_status_text_then_caps_and_groups_are_read() {
        let s = "Name:\tx\nGid:\t0\t0\t0\t0\nGroups:\t4 27\nCapEff:\t0000000000080000\n";
        assert!(status_has_cap_sys_ptrace(s));
        assert!(!status_has_cap_sys_ptrace("CapEff:\t00000000000000ff\n"));
        assert_eq!(status_groups(s), vec![0, 0, 0, 0, 4, 27]);
    }
}
