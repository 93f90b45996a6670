//! The record store, `<state_dir>/recordings` (root's, 0700): one file per
//! channel, written by the daemon only.
//!
//! * While a channel runs its record is `<id>.part`: the header and every
//!   event up to half of `output_bytes` (encoded). Past that the events go,
//!   as raw protocol frames, into two segment files `<id>.tail0` and
//!   `<id>.tail1` of a quarter of `output_bytes` each, used in turn (the
//!   older is emptied when the newer fills), so the newest events are
//!   always kept whatever the channel's length, on bounded disk.
//! * At the channel's end ([`Writer::seal`]) the part of the segments that
//!   fits the other half of `output_bytes` is appended after a marker
//!   saying how many bytes were dropped in between, then the trailer; the
//!   file is synced and renamed `<id>.rec`, and its SHA-256 (computed as
//!   it was written) is returned for the audit trail.
//! * A part left by a helper that stopped is sealed the same way when the
//!   next one starts, marked `truncated`.
//! * Every open record reserves the most disk it can take
//!   ([`crate::config::Recording::reservation`]); before one begins, the
//!   oldest sealed records expire (each an audit line) until the sealed
//!   ones and the reservations fit `store_bytes`, so the store never
//!   exceeds it. If they cannot fit, the channel is refused (or runs
//!   unrecorded, when the operator chose to fail open).

use super::format::{self, Bytes, End, Meta};
use crate::audit::AuditEvent;
use crate::config::Recording;
use codext_record::proto::{self, Exit, Stream, ToHelper};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A sealed record's file name ends so.
pub const SEALED: &str = ".rec";
const PART: &str = ".part";
const SEGMENTS: [&str; 2] = [".tail0", ".tail1"];

/// Writes audit lines for the store.
pub type Log = Box<dyn Fn(AuditEvent) + Send + Sync>;

/// What sealing a record produced, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The record's id.
    pub id: String,
    /// Whose.
    pub user: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
    /// `0`, `3`, `signal 9`.
    pub exit: Option<String>,
    /// Why it is incomplete, if it is.
    pub truncated: Option<String>,
}

impl Sealed {
    /// The audit event for it.
    pub fn event(&self) -> AuditEvent {
        AuditEvent::Record {
            id: self.id.clone(),
            user: self.user.clone(),
            sha256: self.sha256.clone(),
            bytes: self.bytes,
            exit: self.exit.clone(),
            truncated: self.truncated.is_some(),
            reason: self.truncated.clone(),
        }
    }
}

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

/// A record id is `<10 hex>.<n>`; nothing else is ever a file name here.
pub fn valid_id(id: &str) -> bool {
    let Some((session, n)) = id.split_once('.') else {
        return false;
    };
    valid_session(session) && !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit())
}

/// A session id is 10 lowercase hex digits.
pub fn valid_session(s: &str) -> bool {
    s.len() == 10
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The session id of the PAM session `pid` of `user`, opened at `opened`.
pub fn session_id(user: &str, pid: u32, opened: u64) -> String {
    let d = Sha256::digest(format!("codext-session\0{user}\0{pid}\0{opened}").as_bytes());
    d.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

fn now() -> u64 {
    codext_core::time::now()
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("cannot {what} {}: {e}", path.display())
}

/// Opens `path` for writing, new, 0600, never following a link.
fn create(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_err("create", path, e))
}

fn sync_dir(dir: &Path) {
    let _ = File::open(dir).and_then(|d| d.sync_all());
}

/// The user named in a record's header (read from its first line).
pub fn user_of(path: &Path) -> Option<String> {
    let mut first = Vec::new();
    let f = File::open(path).ok()?;
    let mut r = f.take(512 << 10);
    r.read_to_end(&mut first).ok()?;
    let line = first.split(|b| *b == b'\n').next()?;
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    v["codext"]["user"].as_str().map(str::to_owned)
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
        if !m.is_dir() || m.uid() != 0 {
            return Err(format!("{} is not a folder of root's", dir.display()));
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
                Ok(w) => match w.seal(
                    None,
                    Some("the helper stopped while the channel was recorded".into()),
                ) {
                    Ok(sealed) => (self.log)(sealed.event()),
                    Err(e) => crate::log::error!("recording: sealing {}: {e}", part.display()),
                },
                Err(e) => crate::log::error!("recording: {}: {e}", part.display()),
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
        let result = w.seal(exit, truncated);
        let mut inner = self.lock();
        inner.open = inner.open.saturating_sub(1);
        if let Ok(s) = &result {
            inner.sealed.push(Kept {
                id: s.id.clone(),
                bytes: s.bytes,
                mtime: i64::try_from(now()).unwrap_or(i64::MAX),
            });
        }
        drop(inner);
        if let Ok(s) = &result {
            (self.log)(s.event());
        }
        result
    }
}

/// The last part of a long record, kept in two segment files used in turn.
#[derive(Debug)]
struct Tail {
    files: [File; 2],
    paths: [PathBuf; 2],
    cur: usize,
    cur_len: u64,
    seq: u64,
}

/// One record being written.
#[derive(Debug)]
pub struct Writer {
    /// The record's id.
    pub id: String,
    dir: PathBuf,
    part_path: PathBuf,
    part: BufWriter<File>,
    hasher: Sha256,
    written: u64,
    /// Bytes of events written into the part (its header excluded).
    head_events: u64,
    head_budget: u64,
    tail_budget: u64,
    seg_limit: u64,
    tail: Option<Tail>,
    carry: [Vec<u8>; 3],
    /// Relayed (none: unknown, for a recovered part).
    seen: Option<Bytes>,
    kept: Bytes,
    input_cap: u64,
    sftp: bool,
    sftp_ops: u64,
    t0: u64,
    last_t: u64,
    /// The time of the last event in the part.
    head_last_t: u64,
    user: String,
    frame: Vec<u8>,
}

fn stream_index(s: Stream) -> usize {
    match s {
        Stream::In => 0,
        Stream::Out => 1,
        Stream::Err => 2,
    }
}

/// The raw frames of a tail, older segment first, read one at a time
/// (a torn last frame ends it).
struct Frames {
    files: Vec<std::io::BufReader<File>>,
    buf: Vec<u8>,
}

impl Frames {
    /// Opens the segments in the order of their sequence numbers.
    fn open(paths: &[PathBuf]) -> Frames {
        let mut segs: Vec<(u64, std::io::BufReader<File>)> = paths
            .iter()
            .filter_map(|p| {
                let mut r = std::io::BufReader::with_capacity(64 << 10, File::open(p).ok()?);
                let mut seq = [0u8; 8];
                r.read_exact(&mut seq).ok()?;
                Some((u64::from_be_bytes(seq), r))
            })
            .collect();
        segs.sort_by_key(|(seq, _)| *seq);
        Frames {
            files: segs.into_iter().map(|(_, r)| r).rev().collect(),
            buf: Vec::with_capacity(proto::MAX_FRAME),
        }
    }

    /// The next frame's body.
    fn next(&mut self) -> Option<&[u8]> {
        loop {
            let r = self.files.last_mut()?;
            let mut len = [0u8; 4];
            let ok = r.read_exact(&mut len).is_ok() && {
                let n = u32::from_be_bytes(len) as usize;
                n > 0 && n <= proto::MAX_FRAME && {
                    self.buf.resize(n, 0);
                    r.read_exact(&mut self.buf).is_ok()
                }
            };
            if ok {
                return Some(&self.buf);
            }
            self.files.pop();
        }
    }
}

/// One event of a tail frame, encoded: its time, its line (or only its
/// length, when sizing), and the bytes of a stream it keeps.
#[derive(Debug)]
struct Piece {
    t: u64,
    line: Option<String>,
    len: u64,
    counted: Option<(Stream, u64)>,
}

/// The events of a tail frame as record lines, a data frame cut in pieces
/// of `piece` bytes as the part's events are; with `sizing`, only their
/// lengths are computed (nothing is built).
fn encode_frame(
    carry: &mut [Vec<u8>; 3],
    body: &[u8],
    piece: usize,
    sizing: bool,
    out: &mut Vec<Piece>,
) {
    out.clear();
    let Ok(msg) = ToHelper::decode(body) else {
        return;
    };
    fn built(t: u64, line: String, counted: Option<(Stream, u64)>) -> Piece {
        Piece {
            t,
            len: line.len() as u64,
            line: Some(line),
            counted,
        }
    }
    match msg {
        ToHelper::Data {
            stream,
            t_us,
            bytes,
        } => {
            for chunk in bytes.chunks(piece.max(1)) {
                let text = format::decode_lossy(&mut carry[stream_index(stream)], chunk);
                let counted = Some((stream, chunk.len() as u64));
                if sizing {
                    out.push(Piece {
                        t: t_us,
                        line: None,
                        len: format::event_line_len(t_us, stream.code(), &text),
                        counted,
                    });
                } else {
                    out.push(built(
                        t_us,
                        format::event_line(t_us, stream.code(), &text),
                        counted,
                    ));
                }
            }
        }
        ToHelper::Resize { t_us, cols, rows } => out.push(built(
            t_us,
            format::event_line(t_us, "r", &format!("{cols}x{rows}")),
            None,
        )),
        ToHelper::Sftp {
            t_us,
            op,
            path,
            path2,
            detail,
        } => out.push(built(
            t_us,
            format::sftp_line(t_us, op, path, path2, detail),
            None,
        )),
        _ => {}
    }
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    fn create(
        dir: &Path,
        id: &str,
        meta: Meta,
        cfg: &Recording,
        cols: u16,
        rows: u16,
        term: &str,
        shell: &str,
    ) -> Result<Writer, String> {
        let part_path = dir.join(format!("{id}{PART}"));
        let file = create(&part_path)?;
        let mut w = Writer::with_file(
            dir,
            id,
            part_path,
            file,
            cfg,
            meta.kind == "sftp",
            meta.user.clone(),
        );
        w.seen = Some(Bytes::default());
        let header = format::header_line(&meta, cols, rows, term, shell);
        // Written through at once (a helper that dies leaves a part that
        // says what it was; the next one seals it); synced when sealed.
        w.write_part(header.as_bytes())?;
        Ok(w)
    }

    fn with_file(
        dir: &Path,
        id: &str,
        part_path: PathBuf,
        file: File,
        cfg: &Recording,
        sftp: bool,
        user: String,
    ) -> Writer {
        Writer {
            id: id.to_owned(),
            dir: dir.to_path_buf(),
            part_path,
            part: BufWriter::with_capacity(64 << 10, file),
            hasher: Sha256::new(),
            written: 0,
            head_events: 0,
            head_budget: cfg.output_bytes / 2,
            tail_budget: cfg.output_bytes - cfg.output_bytes / 2,
            seg_limit: (cfg.output_bytes / 4).max(1),
            tail: None,
            carry: [Vec::new(), Vec::new(), Vec::new()],
            seen: None,
            kept: Bytes::default(),
            input_cap: cfg.input_bytes,
            sftp,
            sftp_ops: 0,
            t0: 0,
            last_t: 0,
            head_last_t: 0,
            user,
            frame: Vec::with_capacity(proto::MAX_FRAME),
        }
    }

    /// Takes over a part a stopped helper left (to seal it).
    fn recover(dir: &Path, part: &Path, cfg: &Recording) -> Result<Writer, String> {
        let name = part
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let id = name.trim_end_matches(PART).to_owned();
        if !valid_id(&id) {
            return Err("not a record's part".into());
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(part)
            .map_err(|e| io_err("open", part, e))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)
            .map_err(|e| io_err("read", part, e))?;
        // A torn last line was never complete: cut it.
        let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        text.truncate(keep);
        file.set_len(keep as u64)
            .map_err(|e| io_err("truncate", part, e))?;
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| io_err("seek", part, e))?;
        let first = text.split(|b| *b == b'\n').next().unwrap_or(&[]);
        let header: serde_json::Value = serde_json::from_slice(first).unwrap_or_default();
        let user = header["codext"]["user"].as_str().unwrap_or("").to_owned();
        let sftp = header["codext"]["kind"] == "sftp";
        let mut w = Writer::with_file(dir, &id, part.to_path_buf(), file, cfg, sftp, user);
        w.hasher.update(&text);
        w.written = keep as u64;
        // The last event's time, so the marker and trailer keep order.
        if let Some(t) = text.split(|b| *b == b'\n').rev().find_map(|l| {
            serde_json::from_slice::<serde_json::Value>(l)
                .ok()?
                .get(0)?
                .as_f64()
        }) {
            w.last_t = (t * 1e6) as u64;
            w.head_last_t = w.last_t;
        }
        let segs: Vec<PathBuf> = SEGMENTS
            .iter()
            .map(|s| dir.join(format!("{id}{s}")))
            .collect();
        if segs.iter().any(|p| p.exists()) {
            let mut files = Vec::new();
            for p in &segs {
                files.push(
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .mode(0o600)
                        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                        .open(p)
                        .map_err(|e| io_err("open", p, e))?,
                );
            }
            let mut it = files.into_iter();
            if let (Some(a), Some(b)) = (it.next(), it.next()) {
                w.tail = Some(Tail {
                    files: [a, b],
                    paths: [segs[0].clone(), segs[1].clone()],
                    cur: 0,
                    cur_len: 0,
                    seq: 0,
                });
            }
        }
        Ok(w)
    }

    fn write_part(&mut self, bytes: &[u8]) -> Result<(), String> {
        // Written through at once: a helper that dies keeps what it had
        // (the next one seals the part), only the page cache in between.
        self.part
            .write_all(bytes)
            .and_then(|()| self.part.flush())
            .map_err(|e| io_err("write", &self.part_path, e))?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Rebases a recorder time onto the record's start; never backwards.
    fn time(&mut self, t_us: u64) -> u64 {
        let t = t_us.saturating_sub(self.t0).max(self.last_t);
        self.last_t = t;
        t
    }

    /// Sets the recorder time the record starts at.
    pub fn set_start(&mut self, t_us: u64) {
        self.t0 = t_us;
    }

    /// Writes one event: into the part while the first half lasts, else
    /// (as the raw frame `msg`) into the tail segments.
    fn put(
        &mut self,
        line: Option<String>,
        msg: &ToHelper<'_>,
        counted: Option<(Stream, u64)>,
    ) -> Result<(), String> {
        if self.tail.is_none() {
            if let Some(line) = &line {
                if self.head_events + line.len() as u64 <= self.head_budget {
                    self.write_part(line.as_bytes())?;
                    self.head_events += line.len() as u64;
                    self.head_last_t = self.last_t;
                    if let Some((s, n)) = counted {
                        *self.kept.of(s) += n;
                    }
                    return Ok(());
                }
            }
            self.start_tail()?;
        }
        // The raw frame, length first: a data frame's header then its
        // bytes as they are (one vectored write, no copy); any other
        // encoded whole.
        let data = match msg {
            ToHelper::Data {
                stream,
                t_us,
                bytes,
            } => {
                self.frame.clear();
                self.frame
                    .extend_from_slice(&ToHelper::data_header(*stream, *t_us, bytes.len()));
                Some(*bytes)
            }
            _ => {
                msg.encode_framed(&mut self.frame);
                None
            }
        };
        let Some(tail) = self.tail.as_mut() else {
            return Ok(());
        };
        if tail.cur_len >= self.seg_limit {
            tail.cur ^= 1;
            tail.seq += 1;
            let f = &mut tail.files[tail.cur];
            f.set_len(0)
                .and_then(|()| f.rewind())
                .and_then(|()| f.write_all(&tail.seq.to_be_bytes()))
                .map_err(|e| io_err("reuse", &tail.paths[tail.cur], e))?;
            tail.cur_len = 0;
        }
        let f = &mut tail.files[tail.cur];
        let bytes = data.unwrap_or(&[]);
        proto::write_all_vectored(
            f,
            &mut [
                std::io::IoSlice::new(&self.frame),
                std::io::IoSlice::new(bytes),
            ],
        )
        .map_err(|e| io_err("write", &tail.paths[tail.cur], e))?;
        tail.cur_len += (self.frame.len() + bytes.len()) as u64;
        Ok(())
    }

    fn start_tail(&mut self) -> Result<(), String> {
        let paths = SEGMENTS.map(|s| self.dir.join(format!("{}{s}", self.id)));
        let mut a = create(&paths[0])?;
        let b = create(&paths[1])?;
        a.write_all(&0u64.to_be_bytes())
            .map_err(|e| io_err("write", &paths[0], e))?;
        self.tail = Some(Tail {
            files: [a, b],
            paths,
            cur: 0,
            cur_len: 0,
            seq: 0,
        });
        Ok(())
    }

    /// Bytes relayed on `stream` that the recorder did not send (the
    /// record would not keep them): counted as seen, and so as dropped.
    pub fn count(&mut self, stream: Stream, bytes: u64) {
        if let Some(seen) = self.seen.as_mut() {
            *seen.of(stream) += bytes;
        }
    }

    /// Bytes relayed on `stream`.
    pub fn data(&mut self, stream: Stream, t_us: u64, bytes: &[u8]) -> Result<(), String> {
        let before = self.seen.as_ref().map_or(0, |s| match stream {
            Stream::In => s.input,
            Stream::Out => s.out,
            Stream::Err => s.err,
        });
        if let Some(seen) = self.seen.as_mut() {
            *seen.of(stream) += bytes.len() as u64;
        }
        // sftp's own traffic is the file data: its operations are what is
        // recorded (and counted here); its standard error is kept.
        if self.sftp && stream != Stream::Err {
            return Ok(());
        }
        let bytes = if stream == Stream::In {
            let room = self.input_cap.saturating_sub(before);
            &bytes[..bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX))]
        } else {
            bytes
        };
        // Events of small pieces, so the first and the last parts keep
        // whole events however the reads fell. Past the first half the
        // frame goes whole into the tail (one write), and is cut in the
        // same pieces when the record is sealed.
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.tail.is_some() {
                return self.data_event(stream, t_us, rest);
            }
            let (chunk, after) = rest.split_at(rest.len().min(self.piece()));
            self.data_event(stream, t_us, chunk)?;
            rest = after;
        }
        Ok(())
    }

    /// Bytes of data per event: an eighth of the first half, 256 to 4096.
    fn piece(&self) -> usize {
        usize::try_from(self.head_budget / 8)
            .unwrap_or(usize::MAX)
            .clamp(256, 4096)
    }

    fn data_event(&mut self, stream: Stream, t_us: u64, bytes: &[u8]) -> Result<(), String> {
        let t = self.time(t_us);
        let msg = ToHelper::Data {
            stream,
            t_us: t,
            bytes,
        };
        let line = if self.tail.is_none() {
            let text = format::decode_lossy(&mut self.carry[stream_index(stream)], bytes);
            Some(format::event_line(t, stream.code(), &text))
        } else {
            None
        };
        self.put(line, &msg, Some((stream, bytes.len() as u64)))
    }

    /// The terminal was resized.
    pub fn resize(&mut self, t_us: u64, cols: u16, rows: u16) -> Result<(), String> {
        let t = self.time(t_us);
        let line = format::event_line(t, "r", &format!("{cols}x{rows}"));
        self.put(
            Some(line),
            &ToHelper::Resize {
                t_us: t,
                cols,
                rows,
            },
            None,
        )
    }

    /// An sftp operation.
    pub fn sftp(
        &mut self,
        t_us: u64,
        op: &str,
        path: &[u8],
        path2: &[u8],
        detail: &str,
    ) -> Result<(), String> {
        let t = self.time(t_us);
        self.sftp_ops += 1;
        let line = format::sftp_line(t, op, path, path2, detail);
        let msg = ToHelper::Sftp {
            t_us: t,
            op,
            path,
            path2,
            detail,
        };
        self.put(Some(line), &msg, None)
    }

    /// Appends the kept tail: the frames of both segments (older first)
    /// encoded, only the newest that fit the second half of the budget,
    /// after a marker saying how much was dropped. Two passes over the
    /// segments (sizes, then lines), one frame in memory at a time.
    fn write_tail(&mut self) -> Result<Option<Bytes>, String> {
        let Some(tail) = self.tail.take() else {
            return Ok(self.seen.map(|s| Bytes {
                input: s.input.saturating_sub(self.kept.input),
                out: s.out.saturating_sub(self.kept.out),
                err: s.err.saturating_sub(self.kept.err),
            }));
        };
        let Tail { files, paths, .. } = tail;
        for mut f in files {
            let _ = f.flush();
        }
        let piece = self.piece();
        let mut pieces = Vec::new();
        // Pass 1: each line's size and what it keeps.
        let mut carry = [Vec::new(), Vec::new(), Vec::new()];
        let mut sizes: Vec<(u64, Option<(Stream, u64)>)> = Vec::new();
        let mut frames = Frames::open(&paths);
        while let Some(body) = frames.next() {
            encode_frame(&mut carry, body, piece, true, &mut pieces);
            sizes.extend(pieces.iter().map(|p| (p.len, p.counted)));
        }
        let mut total = 0u64;
        let mut first = sizes.len();
        let mut kept = self.kept;
        for (i, (n, counted)) in sizes.iter().enumerate().rev() {
            if total + n > self.tail_budget {
                break;
            }
            total += n;
            first = i;
            if let Some((s, b)) = counted {
                *kept.of(*s) += b;
            }
        }
        let dropped = self.seen.map(|s| Bytes {
            input: s.input.saturating_sub(kept.input),
            out: s.out.saturating_sub(kept.out),
            err: s.err.saturating_sub(kept.err),
        });
        // Pass 2: the marker, then the lines from `first`.
        let mut carry = [Vec::new(), Vec::new(), Vec::new()];
        let mut frames = Frames::open(&paths);
        let mut i = 0usize;
        let mut marked = false;
        while let Some(body) = frames.next() {
            let n = {
                // Only the frames that reach the kept lines are built.
                let sizing = i + 64 * 1024 / piece.max(1) < first;
                encode_frame(&mut carry, body, piece, sizing, &mut pieces);
                pieces.len()
            };
            for p in pieces.drain(..n) {
                let index = i;
                i += 1;
                if index < first {
                    continue;
                }
                if !marked {
                    marked = true;
                    self.write_marker(p.t.max(self.last_t_head()), dropped)?;
                }
                if let Some(line) = &p.line {
                    self.write_part(line.as_bytes())?;
                }
                self.last_t = self.last_t.max(p.t);
            }
        }
        if !marked {
            self.write_marker(self.last_t, dropped)?;
        }
        for p in &paths {
            let _ = std::fs::remove_file(p);
        }
        Ok(dropped)
    }

    /// The time of the last event written to the part.
    fn last_t_head(&self) -> u64 {
        self.head_last_t
    }

    fn write_marker(&mut self, t: u64, dropped: Option<Bytes>) -> Result<(), String> {
        let note = match dropped {
            Some(d) => {
                let n = if self.sftp { d.err } else { d.total() };
                if n == 0 {
                    return Ok(());
                }
                format!(
                    "codext: {n} bytes dropped here (over the {} bytes kept per channel: the first and last parts are kept)",
                    self.head_budget + self.tail_budget
                )
            }
            None => "codext: bytes may have been dropped here (the helper stopped before it counted them)".into(),
        };
        self.write_part(format::event_line(t, "m", &note).as_bytes())
    }

    /// Ends the record: the kept tail after a marker of what was dropped,
    /// the trailer, sync, rename to `<id>.rec`.
    pub fn seal(mut self, exit: Option<Exit>, truncated: Option<String>) -> Result<Sealed, String> {
        let dropped = self.write_tail()?;
        let exit_json = exit.map(|e| match e {
            Exit::Code(c) => serde_json::json!({ "code": c }),
            Exit::Signal(s) => serde_json::json!({ "signal": s }),
        });
        let end = End {
            ended: now(),
            duration: self.last_t as f64 / 1e6,
            exit: exit_json.clone(),
            truncated: truncated.is_some(),
            reason: truncated.clone(),
            bytes: self.seen,
            dropped,
            sftp_ops: self.sftp_ops,
        };
        self.write_part(format::trailer_line(&end).as_bytes())?;
        self.part
            .flush()
            .map_err(|e| io_err("write", &self.part_path, e))?;
        self.part
            .get_ref()
            .sync_all()
            .map_err(|e| io_err("sync", &self.part_path, e))?;
        let sealed_path = self.dir.join(format!("{}{SEALED}", self.id));
        std::fs::rename(&self.part_path, &sealed_path)
            .map_err(|e| io_err("rename", &self.part_path, e))?;
        sync_dir(&self.dir);
        let sha256 = self
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Sealed {
            id: self.id,
            user: self.user,
            sha256,
            bytes: self.written,
            exit: exit_json.map(|v| format::exit_text(Some(&v))),
            truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn cfg(output: u64) -> Recording {
        Recording {
            output_bytes: output,
            input_bytes: 1000,
            store_bytes: Recording {
                output_bytes: output,
                ..Recording::default()
            }
            .reservation()
                * 4,
            ..Recording::default()
        }
    }

    fn meta(session: &str, kind: &str) -> Meta {
        Meta {
            format: 1,
            id: String::new(),
            session: session.into(),
            user: "user-00112233aabb".into(),
            uid: 59000,
            kind: kind.into(),
            tty: false,
            command: Some("cat big".into()),
            command_cut: false,
            ssh_connection: String::new(),
            session_pid: 1,
            session_opened: 1,
            recorder_pid: 2,
            continues: None,
            input_recorded: false,
            started: 1,
            output_bytes: 0,
            input_bytes: 0,
        }
    }

    fn store(dir: &Path, c: &Recording) -> (RecordStore, Arc<Mutex<Vec<AuditEvent>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let e = Arc::clone(&events);
        let s = RecordStore::open(dir, c, Box::new(move |ev| e.lock().unwrap().push(ev))).unwrap();
        (s, events)
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("codext-rec-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn given_output_over_the_cap_then_the_first_and_last_parts_are_kept_and_the_drop_is_said() {
        let dir = tmp("cap");
        let c = cfg(64 << 10);
        let (s, events) = store(&dir, &c);
        let mut w = s
            .begin(meta("0123456789", "command"), 0, 0, "", "/bin/bash")
            .unwrap();
        let mut t = 0;
        for i in 0..6000u32 {
            t += 1000;
            w.data(Stream::Out, t, format!("line {i:05}\n").as_bytes())
                .unwrap();
        }
        let sealed = s.finish(w, Some(Exit::Code(3)), None).unwrap();
        let text = std::fs::read_to_string(dir.join(format!("{}.rec", sealed.id))).unwrap();
        assert!(
            text.contains("line 00000") && text.contains("line 05999"),
            "both ends kept"
        );
        assert!(!text.contains("line 03000"), "the middle dropped");
        let p = format::parse(&text).unwrap();
        let marker = p.events.iter().find(|e| e.code == "m").expect("a marker");
        assert!(
            marker.data.contains("bytes dropped here"),
            "{}",
            marker.data
        );
        let end = p.end.unwrap();
        let dropped = end.dropped.unwrap().out;
        assert_eq!(end.bytes.unwrap().out, 6000 * 11);
        assert!(dropped > 0 && marker.data.contains(&dropped.to_string()));
        // Times never go back.
        assert!(p.events.windows(2).all(|w| w[0].t <= w[1].t));
        // The file is small: the budget and a few lines of slack.
        assert!(text.len() < (64 << 10) + 4096, "{}", text.len());
        let digest: String = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sealed.sha256, digest);
        assert!(matches!(
            events.lock().unwrap().last(),
            Some(AuditEvent::Record { .. })
        ));
        assert!(!dir.join(format!("{}.tail0", sealed.id)).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn given_a_full_store_then_the_oldest_records_expire_first_each_with_an_audit_line() {
        let dir = tmp("full");
        let c = cfg(64 << 10);
        let (s, events) = store(&dir, &c);
        let mut ids = Vec::new();
        for _ in 0..80 {
            let mut w = s
                .begin(meta("aaaaaaaaaa", "command"), 0, 0, "", "/bin/bash")
                .unwrap();
            for t in 0..200u64 {
                w.data(Stream::Out, t, &[b'x'; 300]).unwrap();
            }
            ids.push(s.finish(w, Some(Exit::Code(0)), None).unwrap().id);
            let size: u64 = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .map(|e| e.metadata().unwrap().len())
                .sum();
            assert!(size <= c.store_bytes, "{size} > {}", c.store_bytes);
        }
        let expired: Vec<String> = events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                AuditEvent::RecordExpire {
                    id,
                    reason: "size",
                    user,
                    ..
                } => {
                    assert_eq!(user.as_deref(), Some("user-00112233aabb"));
                    Some(id.clone())
                }
                _ => None,
            })
            .collect();
        assert!(!expired.is_empty());
        assert_eq!(expired, ids[..expired.len()].to_vec(), "oldest first");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn given_a_part_left_by_a_stopped_helper_then_the_next_one_seals_it_truncated() {
        let dir = tmp("recover");
        let c = cfg(64 << 10);
        let (s, _) = store(&dir, &c);
        let mut w = s
            .begin(meta("bbbbbbbbbb", "command"), 0, 0, "", "/bin/bash")
            .unwrap();
        for t in 0..3000u64 {
            w.data(Stream::Out, t, b"0123456789abcdef\n").unwrap();
        }
        w.part.flush().unwrap();
        let id = w.id.clone();
        // The helper "stops": the writer is dropped unsealed, a torn line appended.
        drop(w);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(format!("{id}.part")))
            .unwrap();
        f.write_all(b"[1.0,\"o\",\"torn").unwrap();
        let (_s2, events) = store(&dir, &c);
        let text = std::fs::read_to_string(dir.join(format!("{id}.rec"))).unwrap();
        let p = format::parse(&text).unwrap();
        let end = p.end.unwrap();
        assert!(end.truncated && end.reason.unwrap().contains("helper stopped"));
        assert!(!text.contains("torn"));
        assert!(p.events.iter().any(|e| e.code == "m"));
        match events.lock().unwrap().last() {
            Some(AuditEvent::Record {
                truncated: true,
                sha256,
                ..
            }) => {
                let digest: String = Sha256::digest(text.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(*sha256, digest);
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn given_stdin_over_its_cap_and_sftp_data_then_only_what_is_kept_is_written() {
        let dir = tmp("stdin");
        let c = cfg(64 << 10);
        let (s, _) = store(&dir, &c);
        let mut w = s
            .begin(meta("cccccccccc", "command"), 0, 0, "", "/bin/bash")
            .unwrap();
        w.data(Stream::In, 1, &[b'a'; 800]).unwrap();
        w.data(Stream::In, 2, &[b'b'; 800]).unwrap();
        let sealed = s.finish(w, Some(Exit::Code(0)), None).unwrap();
        let p = format::parse(
            &std::fs::read_to_string(dir.join(format!("{}.rec", sealed.id))).unwrap(),
        )
        .unwrap();
        let kept: usize = p
            .events
            .iter()
            .filter(|e| e.code == "i")
            .map(|e| e.data.len())
            .sum();
        assert_eq!(kept, 1000);
        assert_eq!(p.end.unwrap().dropped.unwrap().input, 600);
        let mut w = s
            .begin(meta("cccccccccc", "sftp"), 0, 0, "", "/bin/bash")
            .unwrap();
        w.data(Stream::In, 1, &[7; 5000]).unwrap();
        w.sftp(2, "open", b"/x", b"", "write").unwrap();
        let sealed = s.finish(w, Some(Exit::Code(0)), None).unwrap();
        assert!(sealed.id.ends_with(".2"));
        let p = format::parse(
            &std::fs::read_to_string(dir.join(format!("{}.rec", sealed.id))).unwrap(),
        )
        .unwrap();
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.events[0].code, "x");
        assert_eq!(p.end.unwrap().bytes.unwrap().input, 5000);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
