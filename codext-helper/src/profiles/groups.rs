//! Which supplementary groups a profile may give: only those on the
//! operator's `accounts.allowed_groups`, and never one that reaches root.
//!
//! "Reaches root" is judged twice: by name when the configuration is
//! read ([`FORBIDDEN`]: the groups Debian and the usual packages make
//! root-equivalent), and on the live host by `doctor` and before every
//! account is made ([`root_equivalent_here`]): the group that owns the
//! docker socket, any group sudoers grants something (`%group`), the group
//! owning `/etc/shadow`, a block device, `/etc` or `/usr/local`, and
//! codext's own groups.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Groups no profile may give, whatever the allow-list says.
pub const FORBIDDEN: &[(&str, &str)] = &[
    ("root", "gid 0"),
    ("sudo", "sudo's rule `%sudo ALL=(ALL:ALL) ALL` on Debian"),
    ("wheel", "sudo/su rules on other distributions"),
    ("admin", "sudo's rule on older Ubuntu"),
    ("adm", "reads every system log (/var/log), secrets included"),
    ("disk", "raw access to the disks: root's files"),
    (
        "docker",
        "the docker socket: any container, privileged, with / mounted",
    ),
    ("lxd", "the LXD socket: privileged containers"),
    ("incus-admin", "the Incus socket: privileged containers"),
    (
        "libvirt",
        "the libvirt socket: virtual machines with the host's disks",
    ),
    ("shadow", "reads /etc/shadow"),
    (
        "staff",
        "writes /usr/local, which root's PATH searches first",
    ),
    ("kmem", "reads kernel memory"),
    ("tty", "writes to every terminal"),
    ("systemd-journal", "reads every journal, secrets included"),
    ("lpadmin", "adds printers with filters that run as lp/root"),
    ("sambashare", "usershares run by smbd as root"),
];

/// Checks that `group` may be given: on `allowed`, not forbidden by name,
/// not one of codext's own (`own`), and not a profile's own group.
pub fn check_allowed(group: &str, allowed: &[String], own: &[&str]) -> Result<(), String> {
    if let Some((_, why)) = FORBIDDEN.iter().find(|(g, _)| *g == group) {
        return Err(format!(
            "group {group:?} is never given to a temporary user ({why})"
        ));
    }
    if own.contains(&group) || group.starts_with(super::GROUP_PREFIX) {
        return Err(format!(
            "group {group:?} is codext's own: never given to a temporary user"
        ));
    }
    if !allowed.iter().any(|a| a == group) {
        return Err(format!(
            "group {group:?} is not on accounts.allowed_groups (the operator's allow-list)"
        ));
    }
    Ok(())
}

/// The gid of every group on this host that reaches root, with why
/// (beyond [`FORBIDDEN`]'s names): what `doctor` fails on and what account
/// creation refuses.
pub fn root_equivalent_here(docker_socket: &Path) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = Vec::new();
    let mut add = |gid: u32, why: String| {
        if gid != 0 && !out.iter().any(|(g, _)| *g == gid) {
            out.push((gid, why));
        }
    };
    for (path, why) in [
        (docker_socket, "owns the docker socket"),
        (Path::new("/run/docker.sock"), "owns the docker socket"),
        (Path::new("/var/run/docker.sock"), "owns the docker socket"),
        (Path::new("/etc/shadow"), "owns /etc/shadow"),
        (Path::new("/etc"), "owns /etc"),
        (Path::new("/usr/local"), "owns /usr/local"),
        (Path::new("/usr/local/bin"), "owns /usr/local/bin"),
    ] {
        if let Ok(m) = std::fs::metadata(path) {
            // A group that can write (or, for the socket and shadow, read
            // at all) reaches root.
            let reaches = match why {
                "owns /etc" | "owns /usr/local" | "owns /usr/local/bin" => m.mode() & 0o020 != 0,
                _ => m.mode() & 0o060 != 0,
            };
            if reaches {
                add(m.gid(), format!("{why} ({})", path.display()));
            }
        }
    }
    if let Ok(dev) = std::fs::read_dir("/dev") {
        for e in dev.flatten() {
            if let Ok(m) = e.metadata() {
                use std::os::unix::fs::FileTypeExt;
                if m.file_type().is_block_device() && m.mode() & 0o060 != 0 {
                    add(
                        m.gid(),
                        format!("reads or writes the block device {}", e.path().display()),
                    );
                }
            }
        }
    }
    for name in sudoers_groups() {
        if let Ok(Some(g)) = nix::unistd::Group::from_name(&name) {
            add(g.gid.as_raw(), format!("sudoers grants %{name} a rule"));
        }
    }
    out
}

/// Groups named in a sudoers rule (`%group …`) of `/etc/sudoers` and
/// `/etc/sudoers.d/*` (codext's own files aside).
pub fn sudoers_groups() -> Vec<String> {
    let mut files = vec![std::path::PathBuf::from("/etc/sudoers")];
    if let Ok(d) = std::fs::read_dir("/etc/sudoers.d") {
        for e in d.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !n.starts_with(super::sudoers::FILE_PREFIX) {
                files.push(e.path());
            }
        }
    }
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for line in text.lines() {
            let line = line.trim_start();
            if let Some(rest) = line.strip_prefix('%') {
                let name: String = rest
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != ',')
                    .collect();
                if !name.is_empty() && !out.contains(&name) {
                    out.push(name);
                }
            }
        }
    }
    out
}

/// Of `groups`, those that reach root here, with why (by name or by gid).
pub fn dangerous(groups: &[String], docker_socket: &Path) -> Vec<String> {
    let here = root_equivalent_here(docker_socket);
    let mut out = Vec::new();
    for g in groups {
        if let Some((_, why)) = FORBIDDEN.iter().find(|(n, _)| n == g) {
            out.push(format!("{g} ({why})"));
            continue;
        }
        let Ok(Some(grp)) = nix::unistd::Group::from_name(g) else {
            continue;
        };
        if let Some((_, why)) = here.iter().find(|(gid, _)| *gid == grp.gid.as_raw()) {
            out.push(format!("{g} ({why})"));
        }
    }
    out
}
