//! The DigitalOcean token's scopes, as far as they can be known: no
//! endpoint reports them, so `codext-channel --check` makes the channel's
//! read calls and lists the write scopes it needs. The root helper links no
//! HTTP code: the check runs as the channel user, the token on its standard
//! input (never on a command line or in an environment), with a deadline.

use super::report::Report;
use crate::config::Config;
use crate::sys::{self, Waited};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use zeroize::Zeroizing;

/// How long the probe may take (two API calls, each retried a little).
const DEADLINE: Duration = Duration::from_secs(30);

/// `codext-channel`: beside this executable (a build tree, the package's
/// `/usr/sbin`), else in the usual system folders.
pub(super) fn channel_binary() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("codext-channel")));
    beside
        .into_iter()
        .chain(
            ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
                .iter()
                .map(|d| Path::new(d).join("codext-channel")),
        )
        .find(|p| p.is_file())
}

/// Adds one `digitalocean.scope.<scope>` line per probe to `r`.
pub(super) fn check(r: &mut Report, cfg: &Config, token: &Zeroizing<String>) {
    let d = &cfg.digitalocean;
    let Some(binary) = channel_binary() else {
        r.warn(
            "digitalocean.scopes",
            "codext-channel is not installed: the token's scopes were not probed",
            "install codext-channel (it is in the codext package)",
        );
        return;
    };
    let Ok((uid, gid)) = crate::accounts::killer_ids(&d.channel_user) else {
        // The channel-user check above already failed with its advice.
        return;
    };
    let lines = match probe(&binary, cfg, uid.as_raw(), gid.as_raw(), token) {
        Ok(lines) => lines,
        Err(why) => {
            r.fail(
                "digitalocean.scopes",
                format!("{} --check: {why}", binary.display()),
                "run it by hand as the channel user to see why",
            );
            return;
        }
    };
    for v in lines {
        let scope = v["scope"].as_str().unwrap_or("?");
        let name = format!("digitalocean.scope.{scope}");
        let detail = format!(
            "{}: {}",
            v["call"].as_str().unwrap_or(""),
            v["detail"].as_str().unwrap_or("")
        );
        let grant = format!(
            "give the token the {scope} scope (cloud.digitalocean.com → API → the token → scopes)"
        );
        match v["result"].as_str() {
            Some("ok") => r.ok(&name, detail),
            Some("refused") => r.fail(&name, detail, grant),
            Some("not probed") => r.ok(&name, detail),
            _ => r.warn(
                &name,
                detail,
                "check the API URL and the network, then run doctor again",
            ),
        }
    }
}

/// Runs the check as `uid`:`gid` and returns its JSON lines.
fn probe(
    binary: &Path,
    cfg: &Config,
    uid: u32,
    gid: u32,
    token: &Zeroizing<String>,
) -> Result<Vec<serde_json::Value>, String> {
    let d = &cfg.digitalocean;
    let mut child = Command::new(binary)
        .args(["--check", "--token-stdin", "--api-url", &d.api_url])
        .args(["--metadata-url", &d.metadata_url])
        .args(["--droplet", &d.droplet_id.to_string()])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .uid(uid)
        .gid(gid)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let pid = crate::ids::Pid::from_raw(child.id());
    if let Some(mut stdin) = child.stdin.take() {
        // A child that exits early closes the pipe: its stderr says why.
        let _ = stdin.write_all(token.as_bytes());
    }
    // Both pipes drained on threads: a child that hangs holding them open
    // must not outlast the deadline below (its death closes them).
    let drain = |pipe: Option<Box<dyn Read + Send>>, max: u64| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(p) = pipe {
                let _ = p.take(max).read_to_string(&mut text);
            }
            text
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        1 << 16,
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        4096,
    );
    let status = sys::wait_pid(pid, DEADLINE).map_err(|e| e.to_string())?;
    drop(child);
    let text = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    match status {
        Waited::Exited(0) => {}
        Waited::KilledAtDeadline => {
            return Err(format!("no answer within {} s", DEADLINE.as_secs()))
        }
        other => return Err(format!("{other:?}: {}", err.trim())),
    }
    text.lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("unexpected output {l:?}: {e}")))
        .collect()
}
