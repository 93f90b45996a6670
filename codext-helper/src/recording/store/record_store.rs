//! The store itself: the records on disk (sealed, and parts a stopped
//! helper left, sealed when it starts), the disk budget every open record
//! reserves, expiry of the oldest, and the channels' records begun and
//! finished.

use super::writer::Writer;
use super::{io_err, now, user_of, valid_id, Log, Sealed, HEAD, PART, SEALED, SEGMENTS};
use crate::audit::AuditEvent;
use crate::config::Recording;
use crate::recording::format::Meta;
use codext_record::proto::Exit;
use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Debug, Clone)]
struct Kept {
    id: String,
    bytes: u64,
    mtime: i64,
}

#[derive(Debug, Default)]
struct Inner {
    /// Sealed records, oldest first.
    sealed: Vec<Kept>,
    /// Records being written.
    open: usize,
    /// Highest channel number used per session.
    next: HashMap<String, u32>,
}

/// The store.
pub struct RecordStore {
    dir: PathBuf,
    cfg: Recording,
    inner: Mutex<Inner>,
    log: Log,
}

impl std::fmt::Debug for RecordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl RecordStore {
    /// Opens (creating) the store named by `cfg` and seals what a stopped
    /// helper left; `log` writes audit lines.
    pub fn open(dir: &Path, cfg: &Recording, log: Log) -> Result<RecordStore, String> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_err("create", dir, e))?;
        let m = std::fs::symlink_metadata(dir).map_err(|e| io_err("inspect", dir, e))?;
        // The helper's own (root's, as it runs; the unit tests run as
        // anyone): a folder another user owns could be written behind it.
        let me = nix::unistd::geteuid().as_raw();
        if !m.is_dir() || m.uid() != me {
            return Err(format!(
                "{} is not a folder of {}",
                dir.display(),
                if me == 0 {
                    "root's".to_owned()
                } else {
                    format!("uid {me}")
                }
            ));
        }
        if m.mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io_err("chmod", dir, e))?;
        }
        let store = RecordStore {
            dir: dir.to_path_buf(),
            cfg: cfg.clone(),
            inner: Mutex::new(Inner::default()),
            log,
        };
        store.recover();
        store.rescan();
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lists the sealed records and the channel numbers used.
    fn rescan(&self) {
        let mut sealed = Vec::new();
        let mut next: HashMap<String, u32> = HashMap::new();
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.split_once('.').map(|(s, rest)| {
                let n = rest.split('.').next().unwrap_or("");
                format!("{s}.{n}")
            }) else {
                continue;
            };
            if !valid_id(&id) {
                continue;
            }
            if let Some((s, n)) = id.split_once('.') {
                let n: u32 = n.parse().unwrap_or(0);
                let slot = next.entry(s.to_owned()).or_insert(0);
                *slot = (*slot).max(n);
            }
            if name.ends_with(SEALED) {
                if let Ok(m) = e.metadata() {
                    sealed.push(Kept {
                        id,
                        bytes: m.len(),
                        mtime: m.mtime(),
                    });
                }
            }
        }
        sealed.sort_by(|a, b| (a.mtime, &a.id).cmp(&(b.mtime, &b.id)));
        let mut inner = self.lock();
        inner.sealed = sealed;
        inner.next = next;
    }

    /// Seals every part a stopped helper left (truncated), logging each.
    fn recover(&self) {
        let parts: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(PART))
            .collect();
        for part in parts {
            match Writer::recover(&self.dir, &part, &self.cfg) {
                Ok(w) => {
                    let sealed = w.seal(
                        None,
                        Some("the helper stopped while the channel was recorded".into()),
                        |sealed| (self.log)(sealed.event()),
                    );
                    if let Err(e) = sealed {
                        crate::log::error!("recording: sealing {}: {e}", part.display());
                    }
                }
                Err(e) => crate::log::error!("recording: {}: {e}", part.display()),
            }
        }
        // Segments whose record was sealed (renamed) before they could be
        // removed.
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = std::iter::once(HEAD)
                .chain(SEGMENTS)
                .find_map(|suffix| name.strip_suffix(suffix))
            else {
                continue;
            };
            if valid_id(id) && !self.dir.join(format!("{id}{PART}")).exists() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Bytes the store holds and reserves now.
    fn used(&self, inner: &Inner, extra_open: usize) -> u64 {
        let sealed: u64 = inner.sealed.iter().map(|k| k.bytes).sum();
        let reserved = self
            .cfg
            .reservation()
            .saturating_mul((inner.open + extra_open) as u64);
        sealed.saturating_add(reserved)
    }

    fn expire(&self, k: &Kept, reason: &'static str) {
        let path = self.dir.join(format!("{}{SEALED}", k.id));
        (self.log)(AuditEvent::RecordExpire {
            id: k.id.clone(),
            user: user_of(&path),
            reason,
            bytes: k.bytes,
        });
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                crate::log::error!("recording: cannot remove {}: {e}", path.display());
            }
        }
    }

    /// Expires records older than `max_age`; returns how many.
    pub fn expire_old(&self) -> usize {
        let limit = i64::try_from(now().saturating_sub(self.cfg.max_age.as_secs())).unwrap_or(0);
        let old: Vec<Kept> = {
            let mut inner = self.lock();
            let (old, keep): (Vec<Kept>, Vec<Kept>) =
                inner.sealed.drain(..).partition(|k| k.mtime < limit);
            inner.sealed = keep;
            old
        };
        for k in &old {
            self.expire(k, "age");
        }
        old.len()
    }

    /// Starts the record of a channel of `session`: makes room, picks the
    /// id, writes the header. `Err` says why it cannot be stored.
    pub fn begin(
        &self,
        mut meta: Meta,
        cols: u16,
        rows: u16,
        term: &str,
        shell: &str,
    ) -> Result<Writer, String> {
        let mut expired = Vec::new();
        let id = {
            let mut inner = self.lock();
            while self.used(&inner, 1) > self.cfg.store_bytes {
                if inner.sealed.is_empty() {
                    return Err(format!(
                        "the record store is full: {} channels are being recorded, each reserving {} bytes of recording.store_bytes = {}",
                        inner.open,
                        self.cfg.reservation(),
                        self.cfg.store_bytes
                    ));
                }
                expired.push(inner.sealed.remove(0));
            }
            let n = inner.next.entry(meta.session.clone()).or_insert(0);
            *n += 1;
            let id = format!("{}.{n}", meta.session);
            inner.open += 1;
            id
        };
        for k in &expired {
            self.expire(k, "size");
        }
        meta.id = id.clone();
        match Writer::create(&self.dir, &id, meta, &self.cfg, cols, rows, term, shell) {
            Ok(w) => Ok(w),
            Err(e) => {
                self.lock().open -= 1;
                Err(e)
            }
        }
    }

    /// Seals `w` (see [`Writer::seal`]) and logs it.
    pub fn finish(
        &self,
        w: Writer,
        exit: Option<Exit>,
        truncated: Option<String>,
    ) -> Result<Sealed, String> {
        // The record's reservation becomes its size in one step, so a
        // record begun meanwhile never counts both (and expires one more).
        let mut published = false;
        let result = w.seal(exit, truncated, |s| {
            let mut inner = self.lock();
            inner.open = inner.open.saturating_sub(1);
            published = true;
            inner.sealed.push(Kept {
                id: s.id.clone(),
                bytes: s.bytes,
                mtime: i64::try_from(now()).unwrap_or(i64::MAX),
            });
            // Logged under the lock: two channels sealed at once appear in
            // the audit trail in the order they expire (oldest first).
            (self.log)(s.event());
        });
        if !published {
            let mut inner = self.lock();
            inner.open = inner.open.saturating_sub(1);
        }
        result
    }
}
