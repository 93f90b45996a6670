//! The docker CLI as the helper runs it: listing, starting and removing
//! a grant's container.

use super::account::{merged, prepare_files, read_capped, Account};
use super::names::{files_of, name_of, LABEL_USER};
use crate::error::{HelperError, Result};
use std::path::PathBuf;
use std::time::Duration;

/// The docker CLI as the helper runs it.
#[derive(Debug, Clone)]
pub struct Docker {
    /// `containers.docker`.
    pub program: PathBuf,
    /// `containers.docker_host`.
    pub host: String,
    /// How long one call may take.
    pub deadline: Duration,
}

impl Docker {
    /// The environment every docker call gets (and nothing else).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ("DOCKER_HOST", self.host.clone()),
            // Nothing of root's ~/.docker (credentials, plugins) is read.
            ("DOCKER_CONFIG", "/run/codext/docker".into()),
            ("LC_ALL", "C".into()),
        ]
    }

    fn run(&self, args: &[String]) -> Result<crate::accounts::tools::ToolRun> {
        let program = self.program.to_string_lossy().into_owned();
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::accounts::tools::run_with(&program, &a, &self.env(), self.deadline)
    }

    /// Names of the containers labelled as `user`'s (any state).
    pub fn containers_of(&self, user: Option<&str>) -> Result<Vec<(String, String)>> {
        let filter = match user {
            Some(u) => format!("label={LABEL_USER}={u}"),
            None => format!("label={LABEL_USER}"),
        };
        let out = self.run(&[
            "ps".into(),
            "--all".into(),
            "--no-trunc".into(),
            "--filter".into(),
            filter,
            "--format".into(),
            format!("{{{{.Names}}}} {{{{.Label \"{LABEL_USER}\"}}}}"),
        ])?;
        if !out.success() {
            return Err(HelperError::Account(format!(
                "docker ps failed: {}",
                out.describe()
            )));
        }
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| {
                let (n, u) = l.trim().split_once(' ')?;
                Some((n.to_owned(), u.to_owned()))
            })
            .collect())
    }

    /// True when `user`'s container runs.
    pub fn running(&self, user: &str) -> Result<bool> {
        let out = self.run(&[
            "inspect".into(),
            "--type".into(),
            "container".into(),
            "--format".into(),
            "{{.State.Running}}".into(),
            name_of(user),
        ])?;
        Ok(out.success() && out.stdout.trim() == "true")
    }

    /// Starts `user`'s container (any stopped one of that name goes
    /// first): `docker create` with `args` ([`run_args`]), its account
    /// files made from the image's own `/etc/passwd` and `/etc/group` (read
    /// out of the created container, never run) and the grant's line,
    /// then `docker start`.
    pub fn start(&self, args: &[String], user: &str, account: &Account) -> Result<()> {
        let name = name_of(user);
        self.remove(&name)?;
        let files = files_of(user);
        prepare_files(&files)?;
        let fail = |what: &str, out: &crate::accounts::tools::ToolRun| {
            HelperError::Account(format!(
                "docker {what} for {user} failed: {}",
                out.describe()
            ))
        };
        let out = self.run(args)?;
        if !out.success() {
            return Err(fail("create", &out));
        }
        for (f, line) in [
            ("passwd", account.passwd_line()),
            ("group", account.group_line()),
        ] {
            let image_copy = files.join(format!("{f}.image"));
            let out = self.run(&[
                "cp".into(),
                format!("{name}:/etc/{f}"),
                image_copy.to_string_lossy().into_owned(),
            ])?;
            // An image without the file gets only the grant's line.
            let theirs = if out.success() {
                read_capped(&image_copy)?
            } else {
                String::new()
            };
            let _ = std::fs::remove_file(&image_copy);
            let text = merged(&theirs, &line, account);
            // Written into the very file the mount names (its inode).
            std::fs::write(files.join(f), text).map_err(|e| {
                HelperError::account(format!("cannot write {}", files.join(f).display()), e)
            })?;
        }
        let out = self.run(&["start".into(), name])?;
        if !out.success() {
            return Err(fail("start", &out));
        }
        Ok(())
    }

    /// `docker rm --force --volumes NAME`: stopped (its processes killed)
    /// and removed with its anonymous volumes. A container that is not
    /// there is fine.
    pub fn remove(&self, name: &str) -> Result<()> {
        let out = self.run(&[
            "rm".into(),
            "--force".into(),
            "--volumes".into(),
            name.to_owned(),
        ])?;
        if out.success() || out.stderr.contains("No such container") {
            Ok(())
        } else {
            Err(HelperError::Account(format!(
                "docker rm {name} failed: {}",
                out.describe()
            )))
        }
    }
}
