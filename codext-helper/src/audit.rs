//! The append-only audit trail: one JSON object per line for every issue,
//! answer, verification, creation, removal, expiry and revoke — never a
//! secret.
//!
//! **Chain.** Each line carries `seq`, `prev` (the previous line's hash)
//! and `hash` = SHA-256 of `prev` and the line's canonical JSON without
//! `hash` (keys sorted, as serde_json writes them). The latest `seq` and
//! hash are also kept in `<state_dir>/audit.head`, outside the log, so
//! editing, deleting, reordering lines or cutting off the tail are all
//! detected by [`verify`]. The head is unkeyed: it proves the trail is
//! what this host wrote only as long as nobody with root rewrote both;
//! anchoring it elsewhere (every line also goes to the system log with its
//! `seq` and `hash`) is what makes a rewrite detectable (see
//! `docs/THREAT_MODEL.md`).
//!
//! **Rotation.** The active file rotates by size or age into
//! `<log>.1`, `<log>.2`, … (1 is the oldest; numbers only grow, nothing is
//! renamed twice). Each new active file starts with a `checkpoint` line
//! carrying the previous file's number of entries and final hash, itself a
//! link of the chain, so [`verify`] walks every file in order and names the
//! file and line where the chain breaks.
//!
//! **Group commit.** Writers queue their lines; one of them writes the
//! whole queue with one `write`, one `fdatasync` and one head update (two
//! more fsyncs), while the others wait. [`Audit::record`] returns only once
//! its line is durable, so a request that depends on a line is answered
//! after it. Appends from the daemon and the CLI are serialised with an
//! exclusive `flock` on `<state_dir>/audit.lock`.
//!
//! **Crash recovery.** The line is made durable before the head. Every
//! batch checks the active file's size against the head; when they differ
//! (a crash, a concurrent writer that died, an old head format) the tail is
//! re-derived: a torn last line is truncated, a head left behind by a crash
//! is moved forward over the valid lines after it, a head newer than the
//! log (entries lost, or cut) is recorded with the missing range, and each
//! of these is written as a `recover` event. Genuine damage (an edited or
//! removed line) is recorded too and still reported by [`verify`].
//!
//! **Strangers.** Attempts at names codext does not know and rate-limit
//! refusals are counted ([`Audit::stranger`]), not written one line each:
//! per window, one `attempts_summary` line per source for at most
//! `summary_sources` sources and one line for all the others.

pub mod event;
pub use event::AuditEvent;

use crate::config::AuditConfig;
use crate::error::{HelperError, Result};
use codext_core::time;
use nix::fcntl::{Flock, FlockArg};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

const HEAD_FILE: &str = "audit.head";
const LOCK_FILE: &str = "audit.lock";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// journald's native socket (`systemd-journald.service(8)`).
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// The classic syslog socket (`syslog(3)`).
const SYSLOG_SOCKET: &str = "/dev/log";
/// syslog facility authpriv (`syslog(3)`: LOG_AUTHPRIV = 10 << 3).
const AUTHPRIV: u8 = 10;
/// Distinct sources beyond the per-source lines that are still told apart
/// in a window (memory bound; past it the count is a lower bound).
const OTHER_SOURCES_TRACKED: usize = 4096;
/// Longest source text kept (the PAM module passes `PAM_RHOST`).
const SOURCE_MAX: usize = 64;
/// How long one copy to the system log may wait for room in its queue.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(50);

/// What a counted (not individually written) attempt was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stranger {
    /// A name codext does not know: never issued, expired or removed.
    UnknownUser,
    /// Refused by the per-source failure limit before being looked at.
    RateLimited,
}

/// The audit trail: where it and its head live, the writers' queue and the
/// strangers' counters. Clones share all of it.
#[derive(Debug, Clone)]
pub struct Audit {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    log: PathBuf,
    state_dir: PathBuf,
    cfg: AuditConfig,
    queue: Mutex<Queue>,
    written: Condvar,
    summary: Mutex<Summary>,
    system_log: Option<SystemLog>,
    fsyncs: AtomicU64,
}

#[derive(Debug, Default)]
struct Queue {
    pending: Vec<Pending>,
    /// Ticket of the next line queued.
    next: u64,
    /// Every ticket below this one has been written (or failed).
    done: u64,
    /// A writer is writing a batch.
    writing: bool,
    /// Recent failed batches: tickets `[from, to)` and the error.
    failures: VecDeque<(u64, u64, String)>,
}

#[derive(Debug)]
struct Pending {
    event: String,
    fields: Map<String, Value>,
    time: u64,
}

/// The end of the trail, where the next line goes.
#[derive(Debug, Clone)]
struct Tail {
    next_seq: u64,
    prev: String,
    /// Rotated files (`<log>.1` … `<log>.<files>`).
    files: u64,
    /// Bytes and entries in the active file.
    size: u64,
    lines: u64,
    /// When the active file was started (unix seconds).
    started: u64,
    /// Entries in the last rotated file (for its successor's checkpoint).
    prev_file_lines: u64,
}

/// `audit.head`: `seq hash files size lines started`. Older heads hold
/// only the first two fields.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    seq: u64,
    hash: String,
    files: Option<u64>,
    size: Option<u64>,
    lines: u64,
    started: u64,
}

/// What [`verify`] found in an intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Entries checked, over every file.
    pub entries: u64,
    /// Files checked (rotated ones and the active one).
    pub files: u64,
    /// Recoveries that could not rule out a loss (entries missing after a
    /// crash or a cut, a head that was gone): the chain links, but these
    /// need an operator's look.
    pub warnings: Vec<String>,
}

fn line_hash(prev: &str, body: &Map<String, Value>) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(Value::Object(body.clone()).to_string().as_bytes());
    codext_core::encoding::hex(&h.finalize())
}

fn read_head(state_dir: &Path) -> Option<Head> {
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn file_name(log: &Path) -> String {
    log.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "audit.jsonl".into())
}

/// `<log>.<n>`.
fn rotated_path(log: &Path, n: u64) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// The numbers of the rotated files present, sorted.
fn rotated_numbers(log: &Path) -> std::io::Result<Vec<u64>> {
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
fn read_nofollow(path: &Path) -> std::io::Result<Vec<u8>> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(mut f) => {
            let mut v = Vec::new();
            f.read_to_end(&mut v)?;
            Ok(v)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// One checked line: its seq, hash and body (without `hash`).
struct Line {
    seq: u64,
    hash: String,
    body: Map<String, Value>,
}

/// Parses and checks one line; `expect` is the (seq, prev) it must follow,
/// `None` for the first line of a walk that trusts its own start.
fn check_line(text: &str, expect: Option<(u64, &str)>) -> std::result::Result<Line, String> {
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
struct Walk {
    count: u64,
    /// The first line's seq and prev.
    first: Option<(u64, String)>,
    last: Option<(u64, String)>,
    /// Hash of the entry with the wanted seq, if the file has it.
    hash_at: Option<String>,
    broken: Option<String>,
}

fn walk(text: &str, want: Option<u64>) -> Walk {
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

impl Audit {
    /// The trail at `log`, its head and lock in `state_dir`, with the
    /// rotation, summary and system-log settings of `cfg`.
    pub fn new(log: &Path, state_dir: &Path, cfg: &AuditConfig) -> Audit {
        let system_log = cfg
            .system_log
            .then(|| SystemLog::open(Path::new(JOURNAL_SOCKET), Path::new(SYSLOG_SOCKET)))
            .flatten();
        Audit::build(log, state_dir, cfg, system_log)
    }

    fn build(
        log: &Path,
        state_dir: &Path,
        cfg: &AuditConfig,
        system_log: Option<SystemLog>,
    ) -> Audit {
        Audit {
            inner: Arc::new(Inner {
                log: log.to_path_buf(),
                state_dir: state_dir.to_path_buf(),
                cfg: cfg.clone(),
                queue: Mutex::new(Queue::default()),
                written: Condvar::new(),
                summary: Mutex::new(Summary::default()),
                system_log,
                fsyncs: AtomicU64::new(0),
            }),
        }
    }

    /// Appends one event and returns once it is durable. `fields` must be
    /// an object and must not hold a secret.
    pub fn event(&self, event: AuditEvent) -> Result<()> {
        let (name, fields) = event.into_parts();
        self.record(&name, fields)
    }

    /// Appends `event` with `fields` (an object); see [`Audit::event`].
    pub fn record(&self, event: &str, fields: Value) -> Result<()> {
        let fields = match fields {
            Value::Object(m) => m,
            other => {
                let mut m = Map::new();
                m.insert("detail".into(), other);
                m
            }
        };
        let mut items = self.due_summaries(time::now());
        items.push(Pending {
            event: event.to_owned(),
            fields,
            time: time::now(),
        });
        self.commit(items, false)
    }

    /// Checks the trail's end against its head and recovers from a crash
    /// (see the module docs), writing the `recover` events; writes nothing
    /// when all is consistent. Run when a process starts using the trail.
    pub fn check(&self) -> Result<()> {
        self.commit(Vec::new(), true)
    }

    /// Counts an attempt by a stranger (see [`Stranger`]) from `source`
    /// at `user`; summaries are written when the window ends.
    pub fn stranger(&self, what: Stranger, user: &str, source: &str) -> Result<()> {
        let now = time::now();
        let due = {
            let mut s = lock(&self.inner.summary);
            let due = s.take_due(now, &self.inner.cfg);
            s.count(
                now,
                what,
                user,
                source,
                self.inner.cfg.summary_sources as usize,
            );
            due
        };
        if due.is_empty() {
            Ok(())
        } else {
            self.commit(due, false)
        }
    }

    /// Writes the summaries of a window that has ended by `now` (the
    /// daemon's reaper calls this, so a quiet helper still reports).
    pub fn flush_summaries(&self, now: u64) -> Result<()> {
        let due = self.due_summaries(now);
        if due.is_empty() {
            Ok(())
        } else {
            self.commit(due, false)
        }
    }

    /// fsync/fdatasync calls made by this process's writers so far.
    pub fn fsyncs(&self) -> u64 {
        self.inner.fsyncs.load(Ordering::Relaxed)
    }

    fn due_summaries(&self, now: u64) -> Vec<Pending> {
        lock(&self.inner.summary).take_due(now, &self.inner.cfg)
    }

    /// Group commit: queue `items`, then either write the queue (the first
    /// writer to find nobody writing) or wait for the writer to finish.
    fn commit(&self, items: Vec<Pending>, force: bool) -> Result<()> {
        let inner = &self.inner;
        let mut q = lock(&inner.queue);
        let first = q.next;
        q.next += items.len() as u64;
        let end = q.next;
        q.pending.extend(items);
        let mut forced = !force;
        loop {
            if q.done >= end && forced {
                let failed = q
                    .failures
                    .iter()
                    .find(|(from, to, _)| *from < end && first < *to)
                    .map(|(_, _, e)| e.clone());
                return match failed {
                    Some(e) => Err(HelperError::System(e)),
                    None => Ok(()),
                };
            }
            if !q.writing {
                q.writing = true;
                let batch = std::mem::take(&mut q.pending);
                let from = q.done;
                let to = from + batch.len() as u64;
                drop(q);
                let result = self.write_batch(batch);
                q = lock(&inner.queue);
                q.writing = false;
                q.done = to;
                forced = true;
                if let Err(e) = result {
                    q.failures.push_back((from, to, e.to_string()));
                    if q.failures.len() > 32 {
                        q.failures.pop_front();
                    }
                    if force {
                        inner.written.notify_all();
                        return Err(e);
                    }
                }
                inner.written.notify_all();
                continue;
            }
            q = inner
                .written
                .wait(q)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn fail(&self, what: &str, e: impl Into<std::io::Error>) -> HelperError {
        HelperError::system(
            format!("audit log {}: cannot {what}", self.inner.log.display()),
            e,
        )
    }

    fn sync(&self, f: &File, what: &str) -> Result<()> {
        self.inner.fsyncs.fetch_add(1, Ordering::Relaxed);
        f.sync_data().map_err(|e| self.fail(what, e))
    }

    /// Writes one batch under the lock: recovery events if the tail needs
    /// them, a checkpoint if the file is new, the batch; then the head.
    fn write_batch(&self, batch: Vec<Pending>) -> Result<()> {
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

    fn sync_dir(&self) -> Result<()> {
        let dir = self.inner.log.parent().unwrap_or(Path::new("/"));
        let d = File::open(dir).map_err(|e| self.fail("open the folder", e))?;
        self.inner.fsyncs.fetch_add(1, Ordering::Relaxed);
        d.sync_all().map_err(|e| self.fail("sync the folder", e))
    }

    fn write_head(&self, t: &Tail) -> Result<()> {
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

    /// Re-derives the tail from the files when the head does not match the
    /// active file; returns it and the `recover` events to write first.
    fn recover(&self, head: Option<&Head>, now: u64) -> Result<(Tail, Vec<Pending>)> {
        let log = &self.inner.log;
        let name = file_name(log);
        let mut events = Vec::new();
        let mut event = |fields: Value| {
            if let Value::Object(m) = fields {
                events.push(Pending {
                    event: "recover".into(),
                    fields: m,
                    time: now,
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

/// Checks the whole chain, across every rotated file and the active one,
/// against the head. Returns what it checked, or where the chain breaks
/// (file and line) and how.
pub fn verify(log: &Path, state_dir: &Path) -> std::result::Result<Report, String> {
    let head = read_head(state_dir);
    let rotated =
        rotated_numbers(log).map_err(|e| format!("cannot list the rotated files: {e}"))?;
    let files = rotated.last().copied().unwrap_or(0);
    for (i, n) in rotated.iter().enumerate() {
        let want = i as u64 + 1;
        if *n != want {
            return Err(format!(
                "{} is missing (deleted or renamed): the files run {}",
                rotated_path(log, want).display(),
                rotated
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let mut prev = GENESIS.to_owned();
    let mut last_seq = 0u64;
    let mut entries = 0u64;
    let mut prev_file_entries = 0u64;
    let mut warnings = Vec::new();
    let order = (1..=files)
        .map(|n| (n, rotated_path(log, n)))
        .chain(std::iter::once((files + 1, log.to_path_buf())));
    for (index, path) in order {
        let active = index == files + 1;
        let bytes =
            read_nofollow(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("{}: not UTF-8 text (damaged or edited)", path.display()))?;
        let at = |n: usize| format!("{} line {n}", path.display());
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(format!(
                "{}: the last line is torn (an interrupted write; the helper truncates it when it next starts)",
                at(text.lines().count())
            ));
        }
        if text.is_empty() && !active {
            return Err(format!(
                "{} is empty (its entries were removed)",
                path.display()
            ));
        }
        let mut in_file = 0u64;
        for (i, l) in text.lines().enumerate() {
            let n = i + 1;
            let line = check_line(l, Some((last_seq + 1, prev.as_str())))
                .map_err(|e| format!("{}: {e}", at(n)))?;
            let event = line.body.get("event").and_then(Value::as_str);
            if n == 1 && index > 1 {
                if event != Some("checkpoint") {
                    return Err(format!(
                        "{}: not a checkpoint (the first line of a rotated-into file was removed)",
                        at(n)
                    ));
                }
                if line.body.get("file").and_then(Value::as_u64) != Some(index) {
                    return Err(format!(
                        "{}: the checkpoint of file {:?}, not of this one (files renamed or reordered)",
                        at(n),
                        line.body.get("file")
                    ));
                }
                if line
                    .body
                    .get("previous_file_entries")
                    .and_then(Value::as_u64)
                    != Some(prev_file_entries)
                {
                    return Err(format!(
                        "{}: the checkpoint counts {:?} entries in the previous file, which has {prev_file_entries}",
                        at(n),
                        line.body.get("previous_file_entries")
                    ));
                }
            } else if event == Some("checkpoint") {
                return Err(format!(
                    "{}: a checkpoint inside a file (files joined or lines moved)",
                    at(n)
                ));
            }
            if event == Some("recover") {
                if let (Some(from), Some(to)) = (
                    line.body.get("lost_from").and_then(Value::as_u64),
                    line.body.get("lost_to").and_then(Value::as_u64),
                ) {
                    warnings.push(format!(
                        "{}: entries {from} to {to} are missing (the head recorded them; lost in a crash, or cut) — compare with the system log's copy",
                        at(n)
                    ));
                }
                if line.body.get("head_missing").and_then(Value::as_bool) == Some(true) {
                    warnings.push(format!(
                        "{}: the head was missing when the helper started; a cut tail before this line cannot be ruled out",
                        at(n)
                    ));
                }
            }
            prev = line.hash;
            last_seq = line.seq;
            entries += 1;
            in_file += 1;
        }
        prev_file_entries = in_file;
    }
    match head {
        None if entries == 0 => {}
        None => {
            return Err(format!(
                "{entries} entries but no head file: the head was deleted"
            ))
        }
        Some(h) => {
            if h.seq < last_seq {
                return Err(format!(
                    "the head records entry {} but the log goes on to entry {last_seq}: a crash between a write and its head (the helper moves the head forward when it next starts), or lines added by hand",
                    h.seq
                ));
            }
            if h.seq != last_seq || h.hash != prev {
                return Err(format!(
                    "the log ends at entry {last_seq} but the head records entry {}: the tail was cut off or replaced",
                    h.seq
                ));
            }
            if h.files.is_some_and(|f| f != files) {
                return Err(format!(
                    "the head records {} rotated files, there are {files}: files were removed or added",
                    h.files.unwrap_or(0)
                ));
            }
        }
    }
    Ok(Report {
        entries,
        files: files + 1,
        warnings,
    })
}

/// The strangers' counters for the current window.
#[derive(Debug, Default)]
struct Summary {
    start: Option<u64>,
    sources: BTreeMap<String, Counts>,
    others: Counts,
    other_sources: HashSet<String>,
    other_saturated: bool,
}

#[derive(Debug, Default, Clone)]
struct Counts {
    unknown_user: u64,
    rate_limited: u64,
    last_user: String,
}

impl Counts {
    fn add(&mut self, what: Stranger, user: &str) {
        match what {
            Stranger::UnknownUser => self.unknown_user += 1,
            Stranger::RateLimited => self.rate_limited += 1,
        }
        self.last_user.clear();
        self.last_user.push_str(user);
    }
}

impl Summary {
    fn count(&mut self, now: u64, what: Stranger, user: &str, source: &str, cap: usize) {
        self.start.get_or_insert(now);
        let source: String = source.chars().take(SOURCE_MAX).collect();
        let user: String = user.chars().take(SOURCE_MAX).collect();
        if let Some(c) = self.sources.get_mut(&source) {
            c.add(what, &user);
        } else if self.sources.len() < cap {
            let mut c = Counts::default();
            c.add(what, &user);
            self.sources.insert(source, c);
        } else {
            self.others.add(what, &user);
            if self.other_sources.len() < OTHER_SOURCES_TRACKED {
                self.other_sources.insert(source);
            } else if !self.other_sources.contains(&source) {
                self.other_saturated = true;
            }
        }
    }

    /// The summary lines of the window, if it has ended by `now`; starts a
    /// new one.
    fn take_due(&mut self, now: u64, cfg: &AuditConfig) -> Vec<Pending> {
        let window = cfg.summary_window.as_secs().max(1);
        let Some(start) = self.start.filter(|s| now >= s + window) else {
            return Vec::new();
        };
        let old = std::mem::take(self);
        let mut out = Vec::new();
        let mut line = |source: Value, c: &Counts, extra: Option<(u64, bool)>| {
            let mut f = Map::new();
            f.insert("source".into(), source);
            f.insert("window_start".into(), time::rfc3339(start).into());
            f.insert("window_secs".into(), window.into());
            f.insert("unknown_user".into(), c.unknown_user.into());
            f.insert("rate_limited".into(), c.rate_limited.into());
            f.insert("last_user".into(), c.last_user.clone().into());
            if let Some((n, saturated)) = extra {
                f.insert("other_sources".into(), n.into());
                f.insert("other_sources_at_least".into(), saturated.into());
            }
            out.push(Pending {
                event: "attempts_summary".into(),
                fields: f,
                time: now,
            });
        };
        for (source, c) in &old.sources {
            line(source.clone().into(), c, None);
        }
        if old.others.unknown_user + old.others.rate_limited > 0 {
            line(
                Value::Null,
                &old.others,
                Some((old.other_sources.len() as u64, old.other_saturated)),
            );
        }
        out
    }
}

/// The copy of each audit line sent to the system log: journald's native
/// protocol (structured fields `CODEXT_EVENT=`, `CODEXT_USER=`, …,
/// `CODEXT_SEQ=`, `CODEXT_HASH=`), else an RFC 3164 line to `/dev/log`,
/// facility authpriv. Datagrams, non-blocking: a stuck or absent logger
/// drops copies (counted), never stalls the helper.
#[derive(Debug)]
struct SystemLog {
    sock: UnixDatagram,
    journal: PathBuf,
    syslog: PathBuf,
    dropped: AtomicU64,
}

/// A journald field name from a JSON key: `CODEXT_` and the key in upper
/// case, anything but letters and digits as `_`.
fn field_name(key: &str) -> String {
    let mut s = String::from("CODEXT_");
    s.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    s
}

fn field_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn severity(event: &str) -> u8 {
    match event {
        "recover" => 4,          // warning
        "attempts_summary" => 5, // notice
        _ => 6,                  // info
    }
}

impl SystemLog {
    fn open(journal: &Path, syslog: &Path) -> Option<SystemLog> {
        let sock = UnixDatagram::unbound().ok()?;
        // A logger that reads slowly costs at most this per batch: after
        // one timeout the rest of the batch's copies are dropped.
        sock.set_write_timeout(Some(SEND_TIMEOUT)).ok()?;
        Some(SystemLog {
            sock,
            journal: journal.to_path_buf(),
            syslog: syslog.to_path_buf(),
            dropped: AtomicU64::new(0),
        })
    }

    /// `journald`'s native format (`systemd.journal-fields(7)`, "Native
    /// protocol"): `KEY=value\n`, or `KEY\n<u64 LE length>value\n` for a
    /// value holding a newline.
    fn journal_payload(body: &Map<String, Value>, event: &str, message: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |k: &str, v: &str| {
            if v.contains('\n') {
                out.extend_from_slice(k.as_bytes());
                out.push(b'\n');
                out.extend_from_slice(&(v.len() as u64).to_le_bytes());
                out.extend_from_slice(v.as_bytes());
                out.push(b'\n');
            } else {
                out.extend_from_slice(format!("{k}={v}\n").as_bytes());
            }
        };
        put("MESSAGE", message);
        put("PRIORITY", &severity(event).to_string());
        put("SYSLOG_FACILITY", &AUTHPRIV.to_string());
        put("SYSLOG_IDENTIFIER", "codext-helper");
        for (k, v) in body {
            put(&field_name(k), &field_text(v));
        }
        out
    }

    /// Sends one line's copy; false when the logger is there but did not
    /// take it in time. An absent logger is not an error (nothing listens).
    fn send(&self, line: &str) -> bool {
        let Ok(Value::Object(body)) = serde_json::from_str::<Value>(line) else {
            return true;
        };
        let event = body.get("event").map(field_text).unwrap_or_default();
        let user = body.get("user").map(field_text).unwrap_or_default();
        let seq = body.get("seq").map(field_text).unwrap_or_default();
        let message = format!("codext audit #{seq} {event} {user}");
        let native = SystemLog::journal_payload(&body, &event, message.trim_end());
        let timed_out = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        };
        match self.sock.send_to(&native, &self.journal) {
            Ok(_) => return true,
            Err(e) if timed_out(&e) => return false,
            Err(_) => {}
        }
        // No journald: classic syslog, the fields as KEY="json string".
        let mut text = format!(
            "<{}>codext-helper[{}]: {}",
            AUTHPRIV * 8 + severity(&event),
            std::process::id(),
            message.trim_end()
        );
        for (k, v) in &body {
            text.push(' ');
            text.push_str(&field_name(k));
            text.push('=');
            text.push_str(&Value::String(field_text(v)).to_string());
        }
        !matches!(self.sock.send_to(text.as_bytes(), &self.syslog), Err(e) if timed_out(&e))
    }
}

#[cfg(test)]
mod tests;
