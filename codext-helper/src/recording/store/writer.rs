//! One record being written: the part (its header), the first frames as
//! they came (the head segment), the newest ones (two tail segments used
//! in turn); sealing it, which encodes the frames into the part, is in
//! [`seal`], reading frames back in [`frames`].
//!
//! While the channel runs the helper only appends the recorder's frames
//! as they are: encoding them (lossy UTF-8, JSON escaping, the SHA-256 of
//! the text) waits for the seal, after the channel ended, so it does not
//! compete with the channel for the CPU while the agent waits on it.

mod frames;
mod seal;

use super::{create, io_err, valid_id, HEAD, PART, SEGMENTS};
use crate::config::Recording;
use crate::recording::format::{self, Bytes, Meta};
use codext_record::proto::{self, Stream, ToHelper};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The last part of a long record, kept in two segment files used in turn.
#[derive(Debug)]
struct Tail {
    files: [File; 2],
    paths: [PathBuf; 2],
    cur: usize,
    cur_len: u64,
    seq: u64,
}

/// The first frames of a record, as they came, until `head_budget` bytes.
#[derive(Debug)]
struct Head {
    file: File,
    path: PathBuf,
    len: u64,
}

/// One record being written.
#[derive(Debug)]
pub struct Writer {
    /// The record's id.
    pub id: String,
    dir: PathBuf,
    part_path: PathBuf,
    pub(super) part: BufWriter<File>,
    hasher: Sha256,
    written: u64,
    /// Bytes of events written into the part (its header excluded).
    head_events: u64,
    head: Option<Head>,
    head_budget: u64,
    tail_budget: u64,
    seg_limit: u64,
    tail: Option<Tail>,
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

/// Opens a segment a stopped helper left, to read and append.
fn reopen(p: &Path) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(p)
        .map_err(|e| io_err("open", p, e))
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn create(
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
        w.flush_part()?;
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
            head: None,
            head_budget: cfg.output_bytes / 2,
            tail_budget: cfg.output_bytes - cfg.output_bytes / 2,
            seg_limit: (cfg.output_bytes / 4).max(1),
            tail: None,
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
    pub(super) fn recover(dir: &Path, part: &Path, cfg: &Recording) -> Result<Writer, String> {
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
        // A torn last line was never complete: cut it. With a head
        // segment, every line after the header comes from a seal that was
        // cut short (while a channel runs only the header is in the part):
        // they go too, and the seal starts again from the segments.
        let head = dir.join(format!("{id}{HEAD}"));
        let keep = if head.exists() {
            text.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1)
        } else {
            text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
        };
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
        w.head_events = (keep as u64).saturating_sub(first.len() as u64 + 1);
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
        if head.exists() {
            let file = reopen(&head)?;
            let len = file.metadata().map_err(|e| io_err("stat", &head, e))?.len();
            w.head = Some(Head {
                file,
                path: head,
                len,
            });
        }
        let segs: Vec<PathBuf> = SEGMENTS
            .iter()
            .map(|s| dir.join(format!("{id}{s}")))
            .collect();
        if segs.iter().any(|p| p.exists()) {
            let mut files = Vec::new();
            for p in &segs {
                files.push(reopen(p)?);
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

    /// Appends to the part (buffered: [`Writer::flush_part`] writes it
    /// through).
    fn write_part(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.part
            .write_all(bytes)
            .map_err(|e| io_err("write", &self.part_path, e))?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes the part through (a helper that dies leaves a part that says
    /// what it was; the next one seals it).
    fn flush_part(&mut self) -> Result<(), String> {
        self.part
            .flush()
            .map_err(|e| io_err("write", &self.part_path, e))
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

    /// Appends one frame as it came: to the head segment while the first
    /// half lasts, else to the tail segments. Each is written through at
    /// once: a helper that dies keeps what it had read (the next one seals
    /// it), only the page cache in between.
    fn put(&mut self, msg: &ToHelper<'_>) -> Result<(), String> {
        // Length first: a data frame's header then its bytes as they are
        // (one vectored write, no copy); any other encoded whole.
        let data = match msg {
            ToHelper::Data {
                stream,
                t_us,
                bytes,
            } => {
                self.frame.clear();
                self.frame
                    .extend_from_slice(&ToHelper::data_header(*stream, *t_us, bytes.len()));
                *bytes
            }
            _ => {
                msg.encode_framed(&mut self.frame);
                &[]
            }
        };
        let n = (self.frame.len() + data.len()) as u64;
        fn slices<'a>(frame: &'a [u8], data: &'a [u8]) -> [std::io::IoSlice<'a>; 2] {
            [std::io::IoSlice::new(frame), std::io::IoSlice::new(data)]
        }
        if self.tail.is_none() && self.head.as_ref().is_none_or(|h| h.len < self.head_budget) {
            if self.head.is_none() {
                let path = self.dir.join(format!("{}{HEAD}", self.id));
                let file = create(&path)?;
                self.head = Some(Head { file, path, len: 0 });
            }
            if let Some(head) = self.head.as_mut() {
                proto::write_all_vectored(&mut head.file, &mut slices(&self.frame, data))
                    .map_err(|e| io_err("write", &head.path, e))?;
                head.len += n;
            }
            return Ok(());
        }
        if self.tail.is_none() {
            self.start_tail()?;
        }
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
        proto::write_all_vectored(f, &mut slices(&self.frame, data))
            .map_err(|e| io_err("write", &tail.paths[tail.cur], e))?;
        tail.cur_len += n;
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
        if bytes.is_empty() {
            return Ok(());
        }
        // The frame goes whole (one write); the seal cuts it in events of
        // small pieces, so the first and the last parts keep whole events
        // however the reads fell.
        let t = self.time(t_us);
        self.put(&ToHelper::Data {
            stream,
            t_us: t,
            bytes,
        })
    }

    /// Bytes of data per event: an eighth of the first half, 256 to 4096.
    fn piece(&self) -> usize {
        usize::try_from(self.head_budget / 8)
            .unwrap_or(usize::MAX)
            .clamp(256, 4096)
    }

    /// The terminal was resized.
    pub fn resize(&mut self, t_us: u64, cols: u16, rows: u16) -> Result<(), String> {
        let t = self.time(t_us);
        self.put(&ToHelper::Resize {
            t_us: t,
            cols,
            rows,
        })
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
        self.put(&ToHelper::Sftp {
            t_us: t,
            op,
            path,
            path2,
            detail,
        })
    }
}
