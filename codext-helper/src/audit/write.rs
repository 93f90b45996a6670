//! Writing one batch under the lock: the fast path from the head, rotation
//! by size or age, the checkpoint that starts each new file, the lines,
//! the head, and the system-log copies.

use super::{
    check_line, file_name, line_hash, read_head, rotated_numbers, rotated_path, Audit, Pending,
    Tail, GENESIS, HEAD_FILE, LOCK_FILE,
};
use crate::error::Result;
use codext_core::time;
use nix::fcntl::{Flock, FlockArg};
use serde_json::{Map, Value};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::Ordering;

impl Audit {
    /// Writes one batch under the lock: recovery events if the tail needs
    /// them, a checkpoint if the file is new, the batch; then the head.
    pub(super) fn write_batch(&self, batch: Vec<Pending>) -> Result<()> {
        let inner = &self.inner;
        let log = &inner.log;
        for dir in [log.parent(), Some(inner.state_dir.as_path())]
            .into_iter()
            .flatten()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| self.fail("create folder", e))?;
        }
        let lock_file = OpenOptions::new()
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(inner.state_dir.join(LOCK_FILE))
            .map_err(|e| self.fail("open the lock", e))?;
        let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, e)| self.fail("lock", e))?;
        let now = time::now();
        let head = read_head(&inner.state_dir);
        let active_len = match std::fs::symlink_metadata(log) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(self.fail("stat", e)),
        };
        let fast = head.as_ref().and_then(|h| match (h.files, h.size) {
            (Some(files), Some(size)) if size == active_len && (size > 0 || files == 0) => {
                Some(Tail {
                    next_seq: h.seq + 1,
                    prev: h.hash.clone(),
                    files,
                    size,
                    lines: h.lines,
                    started: if h.started == 0 { now } else { h.started },
                    prev_file_lines: 0,
                })
            }
            _ => None,
        });
        let (mut tail, mut items, head_stale) = match fast {
            Some(t) => (t, Vec::new(), false),
            None if head.is_none()
                && active_len == 0
                && rotated_numbers(log)
                    .map_err(|e| self.fail("list the rotated files", e))?
                    .is_empty() =>
            {
                (
                    Tail {
                        next_seq: 1,
                        prev: GENESIS.to_owned(),
                        files: 0,
                        size: 0,
                        lines: 0,
                        started: now,
                        prev_file_lines: 0,
                    },
                    Vec::new(),
                    false,
                )
            }
            None => {
                let (t, ev) = self.recover(head.as_ref(), now)?;
                (t, ev, true)
            }
        };
        items.extend(batch);
        if items.is_empty() {
            if head_stale {
                self.write_head(&tail)?;
            }
            return Ok(());
        }
        let cfg = &inner.cfg;
        let mut rotated = false;
        if tail.size > 0
            && (tail.size >= cfg.rotate_bytes
                || now.saturating_sub(tail.started) >= cfg.rotate_age.as_secs())
        {
            // Never over an existing file: if the head's count is stale
            // (someone put files there), take the next free number and let
            // verify report the mismatch.
            let listed = rotated_numbers(log)
                .map_err(|e| self.fail("list the rotated files", e))?
                .last()
                .copied()
                .unwrap_or(0);
            let number = tail.files.max(listed) + 1;
            let to = rotated_path(log, number);
            nix::fcntl::renameat2(
                None,
                log.as_path(),
                None,
                to.as_path(),
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            )
            .map_err(|e| self.fail(&format!("rotate into {}", to.display()), e))?;
            self.sync_dir()?;
            tail.files = number;
            tail.prev_file_lines = tail.lines;
            tail.size = 0;
            tail.lines = 0;
            tail.started = now;
            rotated = true;
        }
        let mut lines = Vec::new();
        if tail.size == 0 && tail.files > 0 {
            let mut f = Map::new();
            f.insert("file".into(), (tail.files + 1).into());
            f.insert(
                "previous_file".into(),
                file_name(&rotated_path(log, tail.files)).into(),
            );
            f.insert("previous_file_entries".into(), tail.prev_file_lines.into());
            f.insert("previous_hash".into(), tail.prev.clone().into());
            lines.push(Pending {
                event: "checkpoint".into(),
                fields: f,
                time: now,
                defer: false,
            });
        }
        lines.extend(items);
        self.append(&mut tail, lines)?;
        if rotated {
            self.retain(&mut tail, now)?;
        }
        Ok(())
    }

    /// Appends `lines` to the active file at `tail` (one write, one
    /// fdatasync), then the head, then the system-log copies.
    fn append(&self, tail: &mut Tail, lines: Vec<Pending>) -> Result<()> {
        let inner = &self.inner;
        let log = &inner.log;
        let mut text = String::new();
        let mut bodies = Vec::with_capacity(lines.len());
        for p in lines {
            let mut body = p.fields;
            // A recovery that found entries missing continues after them.
            let seq = match body.get("lost_to").and_then(Value::as_u64) {
                Some(to) if p.event == "recover" => to + 1,
                _ => tail.next_seq,
            };
            body.insert("seq".into(), seq.into());
            body.insert("time".into(), time::rfc3339(p.time).into());
            body.insert("event".into(), p.event.into());
            body.insert("prev".into(), tail.prev.clone().into());
            let hash = line_hash(&tail.prev, &body);
            body.insert("hash".into(), hash.clone().into());
            let line = Value::Object(body).to_string();
            text.push_str(&line);
            text.push('\n');
            tail.next_seq = seq + 1;
            tail.prev = hash;
            tail.lines += 1;
            bodies.push(line);
        }
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(log)
            .map_err(|e| self.fail("open", e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| self.fail("write", e))?;
        self.sync(&file, "sync")?;
        if tail.size == 0 {
            // A new file: its name must be durable too.
            self.sync_dir()?;
        }
        tail.size += text.len() as u64;
        self.write_head(tail)?;
        if let Some(sys) = &inner.system_log {
            let mut stuck = false;
            for line in &bodies {
                if stuck || !sys.send(line) {
                    stuck = true;
                    sys.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            if stuck {
                crate::log::warn!(
                    "the system log is not keeping up; {} audit line copies dropped so far (the trail has them all)",
                    sys.dropped.load(Ordering::Relaxed)
                );
            }
        }
        Ok(())
    }

    /// The retention, run after a rotation: the oldest rotated files go
    /// while more than `retain_files` are kept, or while the oldest was
    /// last written more than `retain_age` ago — never the newest rotated
    /// file, and never one whose successor does not start with a sound
    /// checkpoint (that checkpoint is what vouches for it once it is gone).
    /// Each deletion is first written as a `retention` line (the file's
    /// number, entries, last sequence number and last hash, from its
    /// successor's checkpoint), made durable, and only then is the file
    /// removed: `verify` then checks the kept files from the first kept
    /// one's checkpoint, which that line vouches for. A crash between the
    /// two leaves a recorded file that is still there; the next rotation
    /// records and removes it again.
    fn retain(&self, tail: &mut Tail, now: u64) -> Result<()> {
        let log = &self.inner.log;
        let cfg = &self.inner.cfg;
        let numbers = rotated_numbers(log).map_err(|e| self.fail("list the rotated files", e))?;
        let Some((&newest, older)) = numbers.split_last() else {
            return Ok(());
        };
        let mut lines = Vec::new();
        let mut doomed = Vec::new();
        for (i, &n) in older.iter().enumerate() {
            let kept_if_stopped = numbers.len() - i;
            let path = rotated_path(log, n);
            let old = std::fs::symlink_metadata(&path)
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .is_some_and(|t| now.saturating_sub(t.as_secs()) > cfg.retain_age.as_secs());
            let reason = if kept_if_stopped as u64 > cfg.retain_files {
                "count"
            } else if old {
                "age"
            } else {
                break;
            };
            let next = if n + 1 == newest || older.get(i + 1) == Some(&(n + 1)) {
                rotated_path(log, n + 1)
            } else {
                // A gap after it: nothing vouches for it; keep it for verify
                // to report.
                break;
            };
            let Some(cp) = first_line(&next).and_then(|l| check_line(&l, None).ok()) else {
                break;
            };
            let body = &cp.body;
            if body.get("event").and_then(Value::as_str) != Some("checkpoint")
                || body.get("file").and_then(Value::as_u64) != Some(n + 1)
            {
                break;
            }
            let mut f = Map::new();
            f.insert("file".into(), n.into());
            f.insert("deleted_file".into(), file_name(&path).into());
            f.insert(
                "entries".into(),
                body.get("previous_file_entries")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            f.insert("last_seq".into(), cp.seq.saturating_sub(1).into());
            f.insert(
                "last_hash".into(),
                body.get("prev").cloned().unwrap_or(Value::Null),
            );
            f.insert("reason".into(), reason.into());
            f.insert("retain_files".into(), cfg.retain_files.into());
            f.insert("retain_age_secs".into(), cfg.retain_age.as_secs().into());
            lines.push(Pending {
                event: "retention".into(),
                fields: f,
                time: now,
                defer: false,
            });
            doomed.push(path);
        }
        if doomed.is_empty() {
            return Ok(());
        }
        self.append(tail, lines)?;
        for path in &doomed {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.fail(&format!("remove {}", path.display()), e)),
            }
        }
        self.sync_dir()
    }

    pub(super) fn sync_dir(&self) -> Result<()> {
        let dir = self.inner.log.parent().unwrap_or(Path::new("/"));
        let d = File::open(dir).map_err(|e| self.fail("open the folder", e))?;
        self.inner.fsyncs.fetch_add(1, Ordering::Relaxed);
        d.sync_all().map_err(|e| self.fail("sync the folder", e))
    }

    pub(super) fn write_head(&self, t: &Tail) -> Result<()> {
        // write_atomic: the file and its folder are synced.
        self.inner.fsyncs.fetch_add(2, Ordering::Relaxed);
        crate::store::write_atomic(
            &self.inner.state_dir,
            HEAD_FILE,
            format!(
                "{} {} {} {} {} {}\n",
                t.next_seq - 1,
                t.prev,
                t.files,
                t.size,
                t.lines,
                t.started
            )
            .as_bytes(),
            0o600,
        )
    }
}

/// The first line of `path` (without following a symlink), if it has one.
fn first_line(path: &Path) -> Option<String> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let mut line = String::new();
    std::io::BufReader::new(f)
        .take(64 * 1024)
        .read_line(&mut line)
        .ok()?;
    line.strip_suffix('\n').map(str::to_owned)
}
