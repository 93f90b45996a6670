//! The chain's format and the files it lives in: the head, the line
//! hash, the rotated files' names, and the walk that checks one file's
//! lines in order.

use super::HEAD_FILE;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The end of the trail, where the next line goes.
#[derive(Debug, Clone)]
pub(super) struct Tail {
    pub(super) next_seq: u64,
    pub(super) prev: String,
    /// Rotated files (`<log>.1` … `<log>.<files>`).
    pub(super) files: u64,
    /// Bytes and entries in the active file.
    pub(super) size: u64,
    pub(super) lines: u64,
    /// When the active file was started (unix seconds).
    pub(super) started: u64,
    /// Entries in the last rotated file (for its successor's checkpoint).
    pub(super) prev_file_lines: u64,
}

/// `audit.head`: `seq hash files size lines started`. Older heads hold
/// only the first two fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) seq: u64,
    pub(super) hash: String,
    pub(super) files: Option<u64>,
    pub(super) size: Option<u64>,
    pub(super) lines: u64,
    pub(super) started: u64,
}

pub(super) fn line_hash(prev: &str, body: &Map<String, Value>) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(Value::Object(body.clone()).to_string().as_bytes());
    codext_core::encoding::hex(&h.finalize())
}

pub(super) fn read_head(state_dir: &Path) -> Option<Head> {
    let text = std::fs::read_to_string(state_dir.join(HEAD_FILE)).ok()?;
    let mut it = text.split_whitespace();
    let seq = it.next()?.parse().ok()?;
    let hash = it.next()?.to_owned();
    let mut num = || it.next().and_then(|v| v.parse::<u64>().ok());
    let (files, size, lines, started) = (num(), num(), num(), num());
    Some(Head {
        seq,
        hash,
        files,
        size,
        lines: lines.unwrap_or(0),
        started: started.unwrap_or(0),
    })
}

pub(super) fn file_name(log: &Path) -> String {
    log.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "audit.jsonl".into())
}

/// `<log>.<n>`.
pub(super) fn rotated_path(log: &Path, n: u64) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// The numbers of the rotated files present, sorted.
pub(super) fn rotated_numbers(log: &Path) -> std::io::Result<Vec<u64>> {
    let name = format!("{}.", file_name(log));
    let dir = log.parent().unwrap_or(Path::new("/"));
    let mut v: Vec<u64> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().into_string().ok()?;
                let rest = n.strip_prefix(&name)?;
                if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                rest.parse().ok().filter(|n| *n > 0)
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    v.sort_unstable();
    Ok(v)
}

/// Reads a whole file without following a symlink; a missing file is
/// empty.
pub(super) fn read_nofollow(path: &Path) -> std::io::Result<Vec<u8>> {
    read_if_present(path).map(Option::unwrap_or_default)
}

/// Reads a whole file without following a symlink; `None` if it is gone.
pub(super) fn read_if_present(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(mut f) => {
            let mut v = Vec::new();
            f.read_to_end(&mut v)?;
            Ok(Some(v))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// One checked line: its seq, hash and body (without `hash`).
pub(super) struct Line {
    pub(super) seq: u64,
    pub(super) hash: String,
    pub(super) body: Map<String, Value>,
}

/// Parses and checks one line; `expect` is the (seq, prev) it must follow,
/// `None` for the first line of a walk that trusts its own start.
pub(super) fn check_line(
    text: &str,
    expect: Option<(u64, &str)>,
) -> std::result::Result<Line, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(mut body) = value else {
        return Err("not an object".into());
    };
    let Some(Value::String(hash)) = body.remove("hash") else {
        return Err("no hash".into());
    };
    let Some(seq) = body.get("seq").and_then(Value::as_u64) else {
        return Err("no sequence number".into());
    };
    let Some(prev) = body.get("prev").and_then(Value::as_str) else {
        return Err("no link to the previous line".into());
    };
    if let Some((want_seq, want_prev)) = expect {
        // A recovery that found entries missing continues after them, and
        // says so: the one gap the chain allows, and verify reports it.
        let gap_ok = body.get("event").and_then(Value::as_str) == Some("recover")
            && body.get("lost_from").and_then(Value::as_u64) == Some(want_seq)
            && body.get("lost_to").and_then(Value::as_u64) == seq.checked_sub(1);
        if seq != want_seq && !gap_ok {
            return Err(format!(
                "sequence number {seq}, expected {want_seq} (a line was removed or moved)"
            ));
        }
        if prev != want_prev {
            return Err(
                "does not follow the previous line (a line was removed, inserted or moved)".into(),
            );
        }
    }
    if line_hash(prev, &body) != hash {
        return Err("content does not match its hash (the line was edited)".into());
    }
    Ok(Line { seq, hash, body })
}

/// The chain inside one file's text (which ends with a newline or is
/// empty), for recovery.
#[derive(Debug, Default)]
pub(super) struct Walk {
    pub(super) count: u64,
    /// The first line's seq and prev.
    pub(super) first: Option<(u64, String)>,
    pub(super) last: Option<(u64, String)>,
    /// Hash of the entry with the wanted seq, if the file has it.
    pub(super) hash_at: Option<String>,
    pub(super) broken: Option<String>,
}

pub(super) fn walk(text: &str, want: Option<u64>) -> Walk {
    let mut w = Walk::default();
    for (i, l) in text.lines().enumerate() {
        let expect = w.last.as_ref().map(|(s, h)| (s + 1, h.as_str()));
        match check_line(l, expect) {
            Ok(line) => {
                if Some(line.seq) == want {
                    w.hash_at = Some(line.hash.clone());
                }
                if w.first.is_none() {
                    let prev = line.body.get("prev").and_then(Value::as_str);
                    w.first = Some((line.seq, prev.unwrap_or_default().to_owned()));
                }
                w.count += 1;
                w.last = Some((line.seq, line.hash));
            }
            Err(e) => {
                w.broken = Some(format!("line {}: {e}", i + 1));
                break;
            }
        }
    }
    w
}
