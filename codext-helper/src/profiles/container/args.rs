//! The docker command lines: how a grant's container is created
//! ([`run_args`]) and how a session enters it ([`exec_args`]).

use super::names::{files_of, name_of, LABEL_USER};
use crate::profiles::{Container, Network};

/// /tmp inside, MiB.
pub(super) const TMP_MB: u64 = 64;

/// `docker create …` arguments (after `docker`) for `user`'s container
/// (`docker start` runs it).
pub fn run_args(
    c: &Container,
    user: &str,
    uid: u32,
    gid: u32,
    groups: &[u32],
    profile: &str,
) -> Vec<String> {
    let files = files_of(user);
    let mut a: Vec<String> = vec![
        "create".into(),
        "--name".into(),
        name_of(user),
        "--hostname".into(),
        "codext".into(),
        "--label".into(),
        format!("{LABEL_USER}={user}"),
        "--label".into(),
        format!("codext.uid={uid}"),
        "--label".into(),
        format!("codext.profile={profile}"),
        "--user".into(),
        format!("{uid}:{gid}"),
    ];
    for g in groups {
        a.push("--group-add".into());
        a.push(g.to_string());
    }
    let ws = c.workspace.to_string_lossy().into_owned();
    a.extend(
        [
            "--init",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--ipc",
            "private",
            "--log-driver",
            "none",
            "--restart",
            "no",
            "--pull",
            "never",
        ]
        .map(String::from),
    );
    a.push("--network".into());
    a.push(
        match c.network {
            Network::None => "none",
            Network::Host => "host",
        }
        .into(),
    );
    a.push("--pids-limit".into());
    a.push(c.pids.to_string());
    a.push("--memory".into());
    a.push(format!("{}m", c.memory_mb));
    a.push("--memory-swap".into());
    a.push(format!("{}m", c.memory_mb));
    a.push("--cpus".into());
    a.push(format!("{}", c.cpus));
    a.push("--tmpfs".into());
    a.push(format!("/tmp:rw,nosuid,nodev,size={TMP_MB}m,mode=1777"));
    a.push("--tmpfs".into());
    a.push(format!(
        "{ws}:rw,nosuid,nodev,size={}m,uid={uid},gid={gid},mode=0700",
        c.disk_mb
    ));
    a.push("--workdir".into());
    a.push(ws.clone());
    a.push("--env".into());
    a.push(format!("HOME={ws}"));
    for d in &c.devices {
        a.push("--device".into());
        a.push(d.to_string_lossy().into_owned());
    }
    for m in &c.mounts {
        a.push("--mount".into());
        a.push(format!(
            "type=bind,source={},target={}{}",
            m.source.display(),
            m.target.display(),
            if m.read_only { ",readonly" } else { "" }
        ));
    }
    for f in ["passwd", "group"] {
        a.push("--mount".into());
        a.push(format!(
            "type=bind,source={},target=/etc/{f},readonly",
            files.join(f).display()
        ));
    }
    // The image, and after it only the command: nothing the user chose.
    a.push("--".into());
    a.push(c.image.clone());
    a.extend(c.command.iter().cloned());
    a
}

/// What a session asks the container to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session<'a> {
    /// A terminal (`docker exec -t`).
    pub tty: bool,
    /// The command (`None`: a login shell).
    pub command: Option<&'a str>,
    /// `TERM` (checked: `[A-Za-z0-9._+-]`).
    pub term: &'a str,
}

/// `docker exec …` arguments (after `docker`) for a session of `user`.
pub fn exec_args(c: &Container, user: &str, uid: u32, gid: u32, s: &Session<'_>) -> Vec<String> {
    let ws = c.workspace.to_string_lossy().into_owned();
    let mut a: Vec<String> = vec!["exec".into(), "--interactive".into()];
    if s.tty {
        a.push("--tty".into());
    }
    a.extend([
        "--user".into(),
        format!("{uid}:{gid}"),
        "--workdir".into(),
        ws.clone(),
        "--env".into(),
        format!("HOME={ws}"),
        "--env".into(),
        format!("USER={user}"),
        "--env".into(),
        format!("LOGNAME={user}"),
        "--env".into(),
        "LANG=C.UTF-8".into(),
    ]);
    let term_ok = !s.term.is_empty()
        && s.term.len() <= 64
        && s.term
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if term_ok {
        a.push("--env".into());
        a.push(format!("TERM={}", s.term));
    }
    a.push(name_of(user));
    let shell = c.shell.to_string_lossy().into_owned();
    match s.command {
        None => {
            a.push(shell);
            a.push("-l".into());
        }
        Some(cmd) => {
            a.push(shell);
            a.push("-c".into());
            a.push(cmd.to_owned());
        }
    }
    a
}
