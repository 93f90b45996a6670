//! `doctor`'s checks of the profiles: one line each, `None`
//! for ok, `Some(true)` fail, `Some(false)` warn (as the recording's).
//!
//! * `profiles.sshd` — the profiles' sshd drop-in is what `helper.toml`
//!   implies (a `Match Group` block forcing the gate per gated profile);
//! * `profiles.gate` — with a gated profile, the gate (the recorder) is
//!   installed root's, setgid to its group, 2711, whether recording is on
//!   or not;
//! * `profiles.groups` — every group a profile names exists, none reaches
//!   root on this host, and no `user-*` not live is still a member of any;
//! * `profiles.sudo` — with sudo rules: sudo reads `/etc/sudoers.d`,
//!   `visudo` is there; no codext drop-in of a user that is not live, each
//!   root's and 0440;
//! * `profiles.docker` — with a container profile: the CLI, the daemon, each
//!   image present, no container of a user that is not live, and no
//!   temporary user in the group owning the docker socket.

use super::{groups, sudoers, Body, Kind};
use crate::config::Config;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// One line: check, fail (None: ok), detail, advice.
pub type Line = (&'static str, Option<bool>, String, String);

/// Every check.
pub fn doctor(cfg: &Config, live: &[String]) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    let rerun =
        "run `codext-helper setup` (it writes the drop-in and makes the groups), then reload sshd";
    // sshd
    let want = super::sshd::drop_in(&cfg.profiles, &cfg.recording.recorder);
    let gated: Vec<String> = cfg.profiles.gated().map(|p| p.name.to_string()).collect();
    match std::fs::read_to_string(super::sshd::DROP_IN) {
        Ok(have) if have == want => out.push((
            "profiles.sshd",
            None,
            if gated.is_empty() {
                "no profile needs the gate".into()
            } else {
                format!(
                    "{} forces the gate for {}",
                    super::sshd::DROP_IN,
                    gated.join(", ")
                )
            },
            String::new(),
        )),
        Err(_) if gated.is_empty() => out.push((
            "profiles.sshd",
            None,
            "no profile needs the gate".into(),
            String::new(),
        )),
        Ok(_) => out.push((
            "profiles.sshd",
            Some(true),
            format!(
                "{} is not what helper.toml's profiles imply ({})",
                super::sshd::DROP_IN,
                if gated.is_empty() {
                    "none".into()
                } else {
                    gated.join(", ")
                }
            ),
            rerun.into(),
        )),
        Err(e) => out.push((
            "profiles.sshd",
            Some(true),
            format!(
                "{}: {e}: sshd would not force the gate for {}",
                super::sshd::DROP_IN,
                gated.join(", ")
            ),
            rerun.into(),
        )),
    }
    if !gated.is_empty() {
        out.push(gate_check(cfg));
    }
    // groups
    let mut missing = Vec::new();
    let mut named: Vec<String> = Vec::new();
    for p in cfg.profiles.iter() {
        for g in p.account_groups() {
            if nix::unistd::Group::from_name(&g).ok().flatten().is_none() {
                missing.push(g.clone());
            }
            if !g.starts_with(super::GROUP_PREFIX) && !named.contains(&g) {
                named.push(g);
            }
        }
    }
    let bad = groups::dangerous(&named, &cfg.containers.socket());
    let stale: Vec<String> = stale_members(live);
    if !missing.is_empty() {
        out.push((
            "profiles.groups",
            Some(true),
            format!(
                "groups the profiles name do not exist: {}",
                missing.join(", ")
            ),
            "run `codext-helper setup` for the profiles' own groups; create the others (groupadd)"
                .into(),
        ));
    } else if !bad.is_empty() {
        out.push((
            "profiles.groups",
            Some(true),
            format!(
                "profiles give groups that reach root here: {}",
                bad.join("; ")
            ),
            "take them off the profiles and accounts.allowed_groups".into(),
        ));
    } else if !stale.is_empty() {
        out.push((
            "profiles.groups",
            Some(true),
            format!(
                "users no grant stands behind are still group members: {}",
                stale.join(", ")
            ),
            "gpasswd --delete USER GROUP (codext-helper removes them with the account)".into(),
        ));
    } else {
        out.push((
            "profiles.groups",
            None,
            if named.is_empty() {
                "no profile gives a group".into()
            } else {
                format!(
                    "profiles give {} (none reaches root here)",
                    named.join(", ")
                )
            },
            String::new(),
        ));
    }
    // sudo
    let with_sudo: Vec<String> = cfg
        .profiles
        .iter()
        .filter(|p| !p.sudo.is_empty())
        .map(|p| p.name.to_string())
        .collect();
    let present = sudoers::present();
    let strays: Vec<String> = present
        .iter()
        .filter(|(u, _)| !live.contains(u))
        .map(|(u, _)| u.clone())
        .collect();
    let loose: Vec<String> = present
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(u, _)| u.clone())
        .collect();
    let includes = std::fs::read_to_string("/etc/sudoers")
        .map(|t| {
            t.lines().any(|l| {
                let l = l.trim();
                l == "@includedir /etc/sudoers.d" || l == "#includedir /etc/sudoers.d"
            })
        })
        .unwrap_or(false);
    if !strays.is_empty() {
        out.push((
            "profiles.sudo",
            Some(true),
            format!(
                "sudo rules of users no grant stands behind: {}",
                strays.join(", ")
            ),
            format!(
                "remove {}/codext-USER (the helper's start removes them too)",
                sudoers::DIR
            ),
        ));
    } else if !loose.is_empty() {
        out.push((
            "profiles.sudo",
            Some(true),
            format!("codext sudo drop-ins not root's 0440: {}", loose.join(", ")),
            "chown root: and chmod 0440 them".into(),
        ));
    } else if with_sudo.is_empty() {
        out.push((
            "profiles.sudo",
            None,
            "no profile has sudo rules".into(),
            String::new(),
        ));
    } else if !includes || !Path::new(sudoers::VISUDO).exists() {
        out.push((
            "profiles.sudo",
            Some(true),
            format!(
                "profiles {} have sudo rules, but sudo is not installed or /etc/sudoers does not include /etc/sudoers.d",
                with_sudo.join(", ")
            ),
            "apt-get install sudo (Debian's /etc/sudoers includes the folder)".into(),
        ));
    } else {
        out.push((
            "profiles.sudo",
            None,
            format!(
                "profiles {} have sudo rules; one drop-in per live grant, none left behind",
                with_sudo.join(", ")
            ),
            String::new(),
        ));
    }
    // docker
    if cfg.profiles.any_container() {
        out.push(docker_check(cfg, live));
    }
    out
}

/// `user-*` names listed in `/etc/group` or `/etc/gshadow` that are not
/// live grants.
fn stale_members(live: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for file in ["/etc/group", "/etc/gshadow"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines() {
            let members = line.split(':').nth(3).unwrap_or("");
            for m in members.split(',') {
                if codext_wire::UserName::parse(m).is_ok()
                    && !live.iter().any(|l| l == m)
                    && !out.iter().any(|o| o == m)
                {
                    out.push(m.to_owned());
                }
            }
        }
    }
    out
}

fn gate_check(cfg: &Config) -> Line {
    let r = &cfg.recording;
    let gid = nix::unistd::Group::from_name(&r.group)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw());
    match std::fs::metadata(&r.recorder) {
        Ok(m) if m.uid() == 0 && Some(m.gid()) == gid && m.mode() & 0o7777 == 0o2711 => (
            "profiles.gate",
            None,
            format!(
                "the gate {} is root's, setgid {}, 2711",
                r.recorder.display(),
                r.group
            ),
            String::new(),
        ),
        Ok(m) => (
            "profiles.gate",
            Some(true),
            format!(
                "the gate {} is uid {} gid {} mode {:o}, not root:{} 2711",
                r.recorder.display(),
                m.uid(),
                m.gid(),
                m.mode() & 0o7777,
                r.group
            ),
            "run `codext-helper setup` (or `init`)".into(),
        ),
        Err(e) => (
            "profiles.gate",
            Some(true),
            format!("the gate {}: {e}", r.recorder.display()),
            "install the codext package (the recorder is also the profiles' gate)".into(),
        ),
    }
}

fn docker_check(cfg: &Config, live: &[String]) -> Line {
    let docker = cfg.containers.cli();
    if !docker.program.exists() {
        return (
            "profiles.docker",
            Some(true),
            format!(
                "{} is missing: container profiles cannot start",
                docker.program.display()
            ),
            "apt-get install docker.io (or set containers.docker)".into(),
        );
    }
    let found = match docker.containers_of(None) {
        Ok(f) => f,
        Err(e) => {
            return (
                "profiles.docker",
                Some(true),
                format!("docker at {}: {e}", docker.host),
                "start dockerd, or set containers.docker_host".into(),
            )
        }
    };
    let strays: Vec<String> = found
        .iter()
        .filter(|(_, u)| !live.contains(u))
        .map(|(n, _)| n.clone())
        .collect();
    if !strays.is_empty() {
        return (
            "profiles.docker",
            Some(true),
            format!(
                "containers of users no grant stands behind: {}",
                strays.join(", ")
            ),
            "docker rm --force --volumes NAME (the helper's start removes them too)".into(),
        );
    }
    let mut missing = Vec::new();
    for p in cfg.profiles.iter() {
        if let Body::Container(c) = &p.body {
            let out = crate::accounts::tools::run_with(
                &docker.program.to_string_lossy(),
                &["image", "inspect", "--format", "{{.Id}}", &c.image],
                &docker.env(),
                docker.deadline,
            );
            if !out.is_ok_and(|o| o.success()) {
                missing.push(format!("{} ({})", c.image, p.name));
            }
        }
    }
    if !missing.is_empty() {
        return (
            "profiles.docker",
            Some(true),
            format!("images not present (never pulled): {}", missing.join(", ")),
            "docker pull (or load) them, by the digest the profile names".into(),
        );
    }
    // Nobody of codext's in the socket's group.
    let sock = cfg.containers.socket();
    if let Ok(m) = std::fs::metadata(&sock) {
        if let Ok(Some(g)) = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(m.gid())) {
            let ours: Vec<&String> = g
                .mem
                .iter()
                .filter(|u| codext_wire::UserName::parse(u).is_ok())
                .collect();
            if !ours.is_empty() {
                return (
                    "profiles.docker",
                    Some(true),
                    format!(
                        "temporary users are in {}, which owns {}: {:?}",
                        g.name,
                        sock.display(),
                        ours
                    ),
                    format!("gpasswd --delete USER {}", g.name),
                );
            }
        }
    }
    let n = cfg
        .profiles
        .iter()
        .filter(|p| p.kind() == Kind::Container)
        .count();
    (
        "profiles.docker",
        None,
        format!(
            "docker answers at {}; the images of {n} container profile(s) are present; {} container(s) of live grants",
            docker.host,
            found.len()
        ),
        String::new(),
    )
}
