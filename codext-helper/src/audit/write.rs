//! Writing one batch under the lock: the fast path from the head, rotation
//! by size or age, the checkpoint that starts each new file, the lines,
//! the head, and the system-log copies.

use super::{
    file_name, line_hash, read_head, rotated_numbers, rotated_path, Audit, Pending, Tail, GENESIS,
    HEAD_FILE, LOCK_FILE,
};
use crate::error::Result;
use codext_core::time;
use nix::fcntl::{Flock, FlockArg};
use serde_json::{Map, Value};
use std::fs::{File, OpenOptions};
use std::io::Write;
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
            });
        }
        lines.extend(items);
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
        self.write_head(&tail)?;
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
