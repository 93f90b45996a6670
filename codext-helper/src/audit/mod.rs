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
//! `summary_sources` sources and one line for all the others. Refused
//! attempts at names codext knows that change nothing (a pending name's
//! `not armed`, an active one's `token already used`, a wrong proof, a
//! channel's refused request) are counted too ([`Audit::refused`]): one
//! `refusals_summary` line per request, name and result for at most
//! `summary_sources` of them, one more for the rest.

mod chain;
pub mod event;
mod recover;
mod summary;
mod system_log;
mod verify;
mod write;

pub use event::AuditEvent;
#[cfg(test)]
use verify::{check_snapshot, Snapshot, Stop};
pub use verify::{kept_lines, verify, Report};

use chain::{
    check_line, file_name, line_hash, read_head, read_if_present, read_nofollow, rotated_numbers,
    rotated_path, walk, Head, Tail, Walk,
};
use summary::Summary;
use system_log::SystemLog;

use crate::config::AuditConfig;
use crate::error::{HelperError, Result};
use codext_core::time;
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::fs::File;
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

/// A refused attempt at a name (or key) codext knows, which changed
/// nothing: counted in the window's `refusals_summary` lines
/// ([`Audit::refused`]) instead of written one line each, because whoever
/// learnt a name (names are public in the channel) can repeat it from as
/// many sources as they have.
#[derive(Debug, Clone, Copy)]
pub struct Counted<'a> {
    /// The request: `verify` (a password), `answer`, or what a channel or
    /// the PAM module asked that was refused before reaching a user.
    pub request: &'a str,
    /// The user it named, if any.
    pub user: Option<&'a str>,
    /// The key fingerprint it named (a channel's puzzle request), if any.
    pub key: Option<&'a str>,
    /// Why it was refused (never a secret).
    pub result: &'a str,
    /// Where it came from: the source address, or the channel's name.
    pub source: &'a str,
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
    /// Lines of failed batches that are written late rather than lost
    /// (see [`Audit::record`]), oldest first, at most [`BACKLOG_MAX`].
    backlog: Vec<Pending>,
    /// Lines that did not fit in the backlog: written as one `lost` line.
    overflow: u64,
}

/// How many lines wait for a trail that cannot be written (a full file
/// system) before further ones are only counted.
const BACKLOG_MAX: usize = 4096;

#[derive(Debug, Clone)]
struct Pending {
    event: String,
    fields: Map<String, Value>,
    time: u64,
    /// Written later if its batch fails, instead of lost.
    defer: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
    ///
    /// A line that cannot be written now (a full or read-only file system)
    /// is kept (up to [`BACKLOG_MAX`], then counted) and written, with its
    /// own time and `"delayed": true`, before the next line that can be:
    /// a removal or a sealed session record that happened while the trail
    /// was full is recorded late, not lost. The error is still returned.
    pub fn record(&self, event: &str, fields: Value) -> Result<()> {
        self.record_with(event, fields, true)
    }

    /// As [`Audit::record`], but a line that cannot be written now is
    /// dropped: for what happens only if its line is durable (a login).
    pub fn record_durable(&self, event: &str, fields: Value) -> Result<()> {
        self.record_with(event, fields, false)
    }

    /// Writes the lines kept from failed batches, if any (the reaper calls
    /// it, so they go in once there is room even when nothing else
    /// happens).
    pub fn flush(&self) -> Result<()> {
        {
            let q = lock(&self.inner.queue);
            if q.backlog.is_empty() && q.overflow == 0 {
                return Ok(());
            }
        }
        self.commit(Vec::new(), true)
    }

    fn record_with(&self, event: &str, fields: Value, defer: bool) -> Result<()> {
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
            defer,
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

    /// Counts a refused attempt at a known name (see [`Counted`]);
    /// summaries are written when the window ends.
    pub fn refused(&self, c: Counted<'_>) -> Result<()> {
        let now = time::now();
        let due = {
            let mut s = lock(&self.inner.summary);
            let due = s.take_due(now, &self.inner.cfg);
            s.count_refusal(now, &c, self.inner.cfg.summary_sources as usize);
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
                let fresh = std::mem::take(&mut q.pending);
                let from = q.done;
                let to = from + fresh.len() as u64;
                let mut batch = std::mem::take(&mut q.backlog);
                if q.overflow > 0 {
                    let mut f = Map::new();
                    f.insert("lines".into(), q.overflow.into());
                    f.insert(
                        "reason".into(),
                        "the trail could not be written and its backlog was full".into(),
                    );
                    batch.push(Pending {
                        event: "lost".into(),
                        fields: f,
                        time: time::now(),
                        defer: false,
                    });
                }
                let overflow = std::mem::take(&mut q.overflow);
                batch.extend(fresh);
                drop(q);
                let kept: Vec<Pending> = batch.iter().filter(|p| p.defer).cloned().collect();
                let result = self.write_batch(batch);
                q = lock(&inner.queue);
                q.writing = false;
                q.done = to;
                forced = true;
                if result.is_err() {
                    q.overflow += overflow;
                    for mut p in kept {
                        if q.backlog.len() < BACKLOG_MAX {
                            p.fields.insert("delayed".into(), true.into());
                            q.backlog.push(p);
                        } else {
                            q.overflow += 1;
                        }
                    }
                }
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
}

#[cfg(test)]
mod tests;
