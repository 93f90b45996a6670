//! Crash recovery: re-deriving the tail from the files when the head does
//! not match the active file, and the `recover` events that say what was
//! found.

use super::{
    file_name, read_nofollow, rotated_numbers, rotated_path, walk, Audit, Head, Pending, Tail,
    Walk, GENESIS,
};
use crate::error::Result;
use serde_json::{json, Value};
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;

impl Audit {
    /// Re-derives the tail from the files when the head does not match the
    /// active file; returns it and the `recover` events to write first.
    pub(super) fn recover(&self, head: Option<&Head>, now: u64) -> Result<(Tail, Vec<Pending>)> {
        let log = &self.inner.log;
        let name = file_name(log);
        let mut events = Vec::new();
        let mut event = |fields: Value| {
            if let Value::Object(m) = fields {
                events.push(Pending {
                    event: "recover".into(),
                    fields: m,
                    time: now,
                    defer: false,
                });
            }
        };
        let files = rotated_numbers(log)
            .map_err(|e| self.fail("list the rotated files", e))?
            .last()
            .copied()
            .unwrap_or(0);
        let bytes = read_nofollow(log).map_err(|e| self.fail("read", e))?;
        let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if keep < bytes.len() {
            let f = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(log)
                .map_err(|e| self.fail("open", e))?;
            f.set_len(keep as u64)
                .map_err(|e| self.fail("truncate the torn tail", e))?;
            self.sync(&f, "sync")?;
            event(
                json!({"what": "torn last line truncated (an interrupted write)",
                         "file": name, "bytes": bytes.len() - keep}),
            );
        }
        let text = String::from_utf8_lossy(&bytes[..keep]);
        let want = head.map(|h| h.seq);
        let active = walk(&text, want);
        let (found, prev_file_lines) = if active.count > 0 || active.broken.is_some() {
            (active, 0)
        } else if files > 0 {
            let p = rotated_path(log, files);
            let b = read_nofollow(&p).map_err(|e| self.fail("read", e))?;
            let w = walk(&String::from_utf8_lossy(&b), want);
            let n = w.count;
            (w, n)
        } else {
            (Walk::default(), 0)
        };
        let (log_seq, log_hash) = found.last.clone().unwrap_or((0, GENESIS.to_owned()));
        let mut next_seq = log_seq + 1;
        let mut prev = log_hash.clone();
        if let Some(broken) = &found.broken {
            // Damage is not a crash: keep writing after the head (or the
            // last good line), and leave the evidence for verify.
            event(
                json!({"what": format!("the log is damaged ({broken}); continuing after the head"),
                         "head_seq": head.map(|h| h.seq), "log_seq": log_seq}),
            );
            if let Some(h) = head {
                next_seq = next_seq.max(h.seq + 1);
                prev = h.hash.clone();
            }
        } else {
            match head {
                None if log_seq == 0 => {}
                None => event(
                    json!({"what": "the head was missing; re-derived from the log (a cut tail before this point cannot be ruled out)",
                                     "head_missing": true, "log_seq": log_seq}),
                ),
                Some(h) if h.seq == log_seq && h.hash == log_hash => {}
                Some(h)
                    if h.seq < log_seq
                        && (found.hash_at.as_deref() == Some(h.hash.as_str())
                            || found.first.as_ref() == Some(&(h.seq + 1, h.hash.clone()))) =>
                {
                    event(
                        json!({"what": "the head lagged the log (interrupted after a write); moved forward",
                                 "head_seq": h.seq, "log_seq": log_seq}),
                    )
                }
                Some(h) if h.seq > log_seq => {
                    event(
                        json!({"what": "entries the head records are missing from the log (lost in a crash, or cut)",
                                 "lost_from": log_seq + 1, "lost_to": h.seq, "head_hash": h.hash}),
                    );
                    next_seq = h.seq + 1;
                }
                Some(h) => {
                    event(
                        json!({"what": "the log does not match its head (damaged or edited); continuing after the head",
                                 "head_seq": h.seq, "head_hash": h.hash, "log_seq": log_seq}),
                    );
                    next_seq = next_seq.max(h.seq + 1);
                    prev = h.hash.clone();
                }
            }
        }
        let same_file = head.is_some_and(|h| h.files == Some(files) && h.started > 0);
        let tail = Tail {
            next_seq,
            prev,
            files,
            size: keep as u64,
            lines: text.lines().count() as u64,
            started: head.filter(|_| same_file).map_or(now, |h| h.started),
            prev_file_lines,
        };
        Ok((tail, events))
    }
}
