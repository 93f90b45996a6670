//! What the operator runs: `codext-helper sessions list [--user U]
//! [--since T] [--json]`, `sessions show ID`, `sessions play ID [--speed
//! N]`, `sessions export ID --html FILE`.
//!
//! An ID is a session (10 hex digits: one SSH connection, one PAM
//! session, all its channels) or one channel (`<session>.<n>`). Every
//! text from a record is escaped ([`super::filter::escape`]) in `list` and
//! `show`; `play` writes terminal output through
//! [`super::filter::Sanitizer`]; `export` builds [`super::html::page`].

use super::filter::{clip, escape, Sanitizer, RESET};
use super::format::{self, End, Meta, Parsed};
use super::store::{valid_id, valid_session, SEALED};
use crate::config::Config;
use crate::error::{HelperError, Result};
use codext_core::time::rfc3339;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PART: &str = ".part";

/// One channel as `list` sees it: header and trailer only.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The header's `codext` object.
    pub meta: Meta,
    /// The trailer (none: still being recorded).
    pub end: Option<End>,
    /// Size of the file.
    pub size: u64,
    /// Its path.
    pub path: PathBuf,
}

fn read_summary(path: &Path) -> Option<Summary> {
    let mut f = std::fs::File::open(path).ok()?;
    let size = f.metadata().ok()?.len();
    let mut head = Vec::new();
    (&mut f).take(512 << 10).read_to_end(&mut head).ok()?;
    let first = head.split(|b| *b == b'\n').next()?;
    let header: serde_json::Value = serde_json::from_slice(first).ok()?;
    let meta: Meta = serde_json::from_value(header["codext"].clone()).ok()?;
    let from = size.saturating_sub(64 << 10);
    f.seek(std::io::SeekFrom::Start(from)).ok()?;
    let mut tail = Vec::new();
    f.take(64 << 10).read_to_end(&mut tail).ok()?;
    let end = tail
        .split(|b| *b == b'\n')
        .rev()
        .find(|l| !l.is_empty())
        .and_then(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .and_then(|v| serde_json::from_value(v.get("codext_end")?.clone()).ok());
    Some(Summary {
        meta,
        end,
        size,
        path: path.to_path_buf(),
    })
}

/// Every channel in the store, sealed and being recorded, oldest first
/// (none when there is no store yet; refused when it cannot be read).
pub fn all(cfg: &Config) -> Result<Vec<Summary>> {
    let dir = cfg.recordings_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(HelperError::system(
                format!("cannot read the records in {} (run as root)", dir.display()),
                e,
            ))
        }
    };
    let mut out: Vec<Summary> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name
                .strip_suffix(SEALED)
                .or_else(|| name.strip_suffix(PART))?;
            valid_id(id).then(|| read_summary(&e.path())).flatten()
        })
        .collect();
    out.sort_by(|a, b| {
        (a.meta.started, &a.meta.session, channel_no(&a.meta.id)).cmp(&(
            b.meta.started,
            &b.meta.session,
            channel_no(&b.meta.id),
        ))
    });
    Ok(out)
}

fn channel_no(id: &str) -> u32 {
    id.rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The channels an ID names, in order (refused if none).
fn select(cfg: &Config, id: &str) -> Result<Vec<Summary>> {
    if !valid_session(id) && !valid_id(id) {
        return Err(HelperError::Input(format!(
            "{:?} is not a session id (10 hex digits) or a channel id (<session>.<n>)",
            escape(id)
        )));
    }
    let mut chosen: Vec<Summary> = all(cfg)?
        .into_iter()
        .filter(|s| s.meta.id == id || s.meta.session == id)
        .collect();
    chosen.sort_by_key(|s| channel_no(&s.meta.id));
    if chosen.is_empty() {
        return Err(HelperError::Input(format!(
            "no recorded session or channel {id}"
        )));
    }
    Ok(chosen)
}

fn parse_file(path: &Path) -> Result<Parsed> {
    let text = std::fs::read(path)
        .map_err(|e| HelperError::system(format!("cannot read {}", path.display()), e))?;
    format::parse(&String::from_utf8_lossy(&text))
        .map_err(|e| HelperError::System(format!("{}: {e}", path.display())))
}

/// `--since`: an RFC 3339 time, or a duration back from now (`2h`).
pub fn parse_since(s: &str, now: u64) -> std::result::Result<u64, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now.saturating_sub(d.as_secs()));
    }
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| {
            format!("{s:?} is neither a time (2026-01-31T12:00:00Z) nor a duration (2h): {e}")
        })
        .and_then(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .map_err(|e| e.to_string())
        })
}

fn exit_of(s: &Summary) -> String {
    match &s.end {
        Some(e) => format::exit_text(e.exit.as_ref()),
        None => "running".into(),
    }
}

fn channel_json(s: &Summary) -> serde_json::Value {
    let m = &s.meta;
    serde_json::json!({
        "id": m.id,
        "kind": m.kind,
        "command": m.command,
        "command_cut": m.command_cut,
        "tty": m.tty,
        "started": rfc3339(m.started),
        "started_unix": m.started,
        "continues": m.continues,
        "recording": s.end.is_none(),
        "ended": s.end.as_ref().map(|e| rfc3339(e.ended)),
        "duration": s.end.as_ref().map(|e| e.duration),
        "exit": s.end.as_ref().and_then(|e| e.exit.clone()),
        "truncated": s.end.as_ref().map(|e| e.truncated),
        "reason": s.end.as_ref().and_then(|e| e.reason.clone()),
        "bytes": s.end.as_ref().and_then(|e| e.bytes),
        "dropped": s.end.as_ref().and_then(|e| e.dropped),
        "sftp_ops": s.end.as_ref().map(|e| e.sftp_ops),
        "size": s.size,
    })
}

/// `sessions list`.
pub fn list(cfg: &Config, user: Option<&str>, since: Option<u64>, json: bool) -> Result<String> {
    let chosen: Vec<Summary> = all(cfg)?
        .into_iter()
        .filter(|s| user.is_none_or(|u| s.meta.user == u))
        .filter(|s| since.is_none_or(|t| s.end.as_ref().map_or(u64::MAX, |e| e.ended) >= t))
        .collect();
    // Sessions in the order of their first channel.
    let mut sessions: Vec<(String, Vec<&Summary>)> = Vec::new();
    for s in &chosen {
        match sessions.iter_mut().find(|(id, _)| *id == s.meta.session) {
            Some((_, v)) => v.push(s),
            None => sessions.push((s.meta.session.clone(), vec![s])),
        }
    }
    if json {
        let list: Vec<serde_json::Value> = sessions
            .iter()
            .map(|(id, chans)| {
                let m = &chans[0].meta;
                serde_json::json!({
                    "session": id,
                    "user": m.user,
                    "uid": m.uid,
                    "ssh_connection": m.ssh_connection,
                    "session_pid": m.session_pid,
                    "opened": rfc3339(m.session_opened),
                    "channels": chans.iter().map(|c| channel_json(c)).collect::<Vec<_>>(),
                })
            })
            .collect();
        return Ok(serde_json::to_string_pretty(&list).unwrap_or_default() + "\n");
    }
    if sessions.is_empty() {
        return Ok("no recorded sessions\n".into());
    }
    let mut out = format!(
        "{:<12} {:<18} {:<21} {:>8}  {}\n",
        "SESSION", "USER", "OPENED", "CHANNELS", "FROM"
    );
    for (id, chans) in &sessions {
        let m = &chans[0].meta;
        let from = m.ssh_connection.split_whitespace().next().unwrap_or("");
        out.push_str(&format!(
            "{:<12} {:<18} {:<21} {:>8}  {}\n",
            id,
            escape(&m.user),
            rfc3339(m.session_opened),
            chans.len(),
            escape(from)
        ));
        for c in chans {
            let cmd = c
                .meta
                .command
                .as_deref()
                .map_or_else(|| "(login shell)".to_owned(), |c| clip(&escape(c), 60));
            let trunc = if c.end.as_ref().is_some_and(|e| e.truncated) {
                " TRUNCATED"
            } else {
                ""
            };
            out.push_str(&format!(
                "  {:<14} {:<8} exit {:<10} {:>10} B  {cmd}{trunc}\n",
                c.meta.id,
                escape(&c.meta.kind),
                exit_of(c),
                c.end
                    .as_ref()
                    .and_then(|e| e.bytes)
                    .map_or(0, |b| b.total()),
            ));
        }
    }
    Ok(out)
}

fn sha256_file(path: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// `sessions show`.
pub fn show(cfg: &Config, id: &str, json: bool) -> Result<String> {
    let chosen = select(cfg, id)?;
    let mut channels = Vec::new();
    for s in &chosen {
        let p = parse_file(&s.path)?;
        let ops: Vec<String> = p
            .events
            .iter()
            .filter(|e| e.code == "x")
            .map(|e| format::op_text(e.op.as_ref()))
            .collect();
        let markers: Vec<String> = p
            .events
            .iter()
            .filter(|e| e.code == "m")
            .map(|e| e.data.clone())
            .collect();
        channels.push((s, p, ops, markers, sha256_file(&s.path)));
    }
    if json {
        let list: Vec<serde_json::Value> = channels
            .iter()
            .map(|(s, _, ops, markers, sha)| {
                let mut v = channel_json(s);
                v["user"] = serde_json::Value::from(s.meta.user.clone());
                v["session"] = serde_json::Value::from(s.meta.session.clone());
                v["sftp"] = serde_json::Value::from(ops.clone());
                v["notes"] = serde_json::Value::from(markers.clone());
                v["sha256"] = serde_json::Value::from(sha.clone());
                v
            })
            .collect();
        return Ok(serde_json::to_string_pretty(&list).unwrap_or_default() + "\n");
    }
    let m = &chosen[0].meta;
    let mut out = format!(
        "session {} of {} (uid {}), from {}, sshd pid {}, opened {}\n",
        m.session,
        escape(&m.user),
        m.uid,
        escape(&m.ssh_connection),
        m.session_pid,
        rfc3339(m.session_opened)
    );
    for (s, p, ops, markers, sha) in &channels {
        let m = &s.meta;
        out.push_str(&format!(
            "\nchannel {}: {}{}\n",
            m.id,
            escape(&m.kind),
            if m.tty {
                format!(" (terminal {}x{})", p.width, p.height)
            } else {
                String::new()
            }
        ));
        out.push_str(&format!(
            "  command:   {}{}\n",
            m.command
                .as_deref()
                .map_or_else(|| "(login shell)".to_owned(), escape),
            if m.command_cut { " (cut)" } else { "" }
        ));
        if let Some(c) = &m.continues {
            out.push_str(&format!(
                "  continues: {} (the helper restarted)\n",
                escape(c)
            ));
        }
        out.push_str(&format!("  started:   {}\n", rfc3339(m.started)));
        match &s.end {
            None => out.push_str("  ended:     (still being recorded)\n"),
            Some(e) => {
                out.push_str(&format!(
                    "  ended:     {} ({:.1} s)\n  exit:      {}\n",
                    rfc3339(e.ended),
                    e.duration,
                    format::exit_text(e.exit.as_ref())
                ));
                if let Some(b) = e.bytes {
                    let d = e.dropped.unwrap_or_default();
                    out.push_str(&format!(
                        "  bytes:     out {} err {} in {} (dropped: out {} err {} in {})\n",
                        b.out, b.err, b.input, d.out, d.err, d.input
                    ));
                }
                out.push_str(&format!(
                    "  truncated: {}\n",
                    match (&e.truncated, &e.reason) {
                        (true, Some(r)) => format!("yes: {}", escape(r)),
                        (true, None) => "yes".into(),
                        _ => "no".into(),
                    }
                ));
            }
        }
        for n in markers {
            out.push_str(&format!("  note:      {}\n", escape(n)));
        }
        for op in ops {
            out.push_str(&format!("  sftp:      {}\n", escape(op)));
        }
        out.push_str(&format!(
            "  record:    {} ({} bytes, sha256 {})\n",
            s.path.display(),
            s.size,
            sha.as_deref().unwrap_or("?")
        ));
    }
    Ok(out)
}

/// `sessions play`: the channels' output, in order, at `speed` times the
/// recorded pace (pauses capped at `idle` seconds), through the terminal
/// filter; `sleep` waits (tests pass one that does not).
pub fn play(
    cfg: &Config,
    id: &str,
    speed: f64,
    idle: f64,
    out: &mut impl Write,
    mut sleep: impl FnMut(Duration),
) -> Result<()> {
    let speed = if speed.is_finite() && speed > 0.0 {
        speed
    } else {
        1.0
    };
    let chosen = select(cfg, id)?;
    let io = |e: std::io::Error| HelperError::system("cannot write the replay", e);
    for s in &chosen {
        let p = parse_file(&s.path)?;
        let banner = format!(
            "\r\n--- {} {}: {} ---\r\n",
            escape(&p.meta.id),
            escape(&p.meta.kind),
            escape(p.meta.command.as_deref().unwrap_or("(login shell)"))
        );
        out.write_all(banner.as_bytes()).map_err(io)?;
        let mut filter = Sanitizer::new();
        let mut last = 0.0f64;
        for e in &p.events {
            if !matches!(e.code.as_str(), "o" | "e") {
                continue;
            }
            let pause = ((e.t - last).max(0.0)).min(idle) / speed;
            last = e.t;
            if pause > 0.0005 {
                out.flush().map_err(io)?;
                sleep(Duration::from_secs_f64(pause));
            }
            let mut text = String::new();
            filter.push(&e.data, &mut text);
            out.write_all(text.as_bytes()).map_err(io)?;
        }
        out.write_all(RESET.as_bytes()).map_err(io)?;
        out.flush().map_err(io)?;
    }
    Ok(())
}

/// `sessions export --html`: writes the page to `file` (created 0600: it
/// holds what the record holds).
pub fn export(cfg: &Config, id: &str, file: &Path) -> Result<usize> {
    use std::os::unix::fs::OpenOptionsExt;
    let chosen = select(cfg, id)?;
    let parsed: Vec<Parsed> = chosen
        .iter()
        .map(|s| parse_file(&s.path))
        .collect::<Result<_>>()?;
    let m = &chosen[0].meta;
    let title = if valid_session(id) {
        format!("codext session {} of {}", m.session, m.user)
    } else {
        format!("codext channel {} of {}", m.id, m.user)
    };
    let page = super::html::page(&title, &parsed).map_err(HelperError::System)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| HelperError::system(format!("cannot write {}", file.display()), e))?;
    f.write_all(page.as_bytes())
        .map_err(|e| HelperError::system(format!("cannot write {}", file.display()), e))?;
    Ok(parsed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_since_as_a_duration_or_a_time_then_both_are_read() {
        assert_eq!(parse_since("2h", 10_000), Ok(10_000 - 7200));
        assert_eq!(parse_since("2026-01-01T00:00:00Z", 0), Ok(1_767_225_600));
        assert!(parse_since("yesterday", 0).is_err());
    }
}
