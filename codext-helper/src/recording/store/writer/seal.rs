//! Sealing a record: its first frames encoded, then the newest that fit
//! after a marker saying how much was dropped, then the trailer; the file
//! synced and renamed, and its SHA-256 returned for the audit trail.

use super::frames::{encode_frame, Frames};
use super::Writer;
use crate::recording::format::{self, Bytes, End};
use crate::recording::store::{hold, io_err, now, sync_dir, Sealed, SEALED};
use codext_record::proto::{Exit, Stream};
use nix::fcntl::FlockArg;
use sha2::Digest;
use std::io::Write;
use std::path::PathBuf;

impl Writer {
    /// Encodes the frames into the part: the first ones (from the head
    /// segment) while their events fit the first half of the budget; then,
    /// after a marker saying how much was dropped, the newest that fit the
    /// second half, chosen among the rest (the head's remainder and the
    /// tail segments). Passes over the segments (first half, sizes, lines),
    /// one frame in memory at a time.
    ///
    /// Returns what was dropped, and the segments, to remove once the
    /// record is sealed (not before: a helper that stops mid-seal leaves
    /// them, and the next one encodes the record again from them).
    fn write_kept(&mut self) -> Result<(Option<Bytes>, Vec<PathBuf>), String> {
        let head = self.head.take();
        let tail = self.tail.take();
        if head.is_none() && tail.is_none() {
            let dropped = self.seen.map(|s| Bytes {
                input: s.input.saturating_sub(self.kept.input),
                out: s.out.saturating_sub(self.kept.out),
                err: s.err.saturating_sub(self.kept.err),
            });
            return Ok((dropped, Vec::new()));
        }
        let head_path = head.map(|h| h.path);
        let tail_paths: Vec<PathBuf> = tail.map(|t| t.paths.to_vec()).unwrap_or_default();
        let piece = self.piece();
        let mut pieces = Vec::new();
        // Pass 0: the first half. Where it stops (a frame's offset in the
        // head segment and how many of its pieces went in), the rest
        // begins; none: the whole head went in.
        let mut rest: Option<(u64, usize)> = None;
        if let Some(path) = &head_path {
            let mut carry = [Vec::new(), Vec::new(), Vec::new()];
            let mut frames = Frames::open(Some((path, 0)), &[]);
            'head: while let Some(body) = frames.next() {
                encode_frame(&mut carry, body, piece, false, &mut pieces);
                for (k, p) in pieces.drain(..).enumerate() {
                    let line = p.line.unwrap_or_default();
                    if self.head_events + line.len() as u64 > self.head_budget {
                        rest = Some((frames.offset(), k));
                        break 'head;
                    }
                    self.write_part(line.as_bytes())?;
                    self.head_events += line.len() as u64;
                    self.head_last_t = self.head_last_t.max(p.t);
                    self.last_t = self.last_t.max(p.t);
                    if let Some((s, n)) = p.counted {
                        *self.kept.of(s) += n;
                    }
                }
            }
        }
        // The rest: the head's remainder, then the tail segments.
        let (from, skip) = match (&head_path, rest) {
            (Some(path), Some((at, k))) => (Some((path.as_path(), at)), k),
            _ => (None, 0),
        };
        // Pass 1: each line's size and what it keeps.
        let mut carry = [Vec::new(), Vec::new(), Vec::new()];
        let mut sizes: Vec<(u64, Option<(Stream, u64)>)> = Vec::new();
        let mut frames = Frames::open(from, &tail_paths);
        let mut skipping = skip;
        while let Some(body) = frames.next() {
            encode_frame(&mut carry, body, piece, true, &mut pieces);
            let already = skipping.min(pieces.len());
            skipping -= already;
            sizes.extend(pieces.iter().skip(already).map(|p| (p.len, p.counted)));
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
        let mut frames = Frames::open(from, &tail_paths);
        let mut skipping = skip;
        let mut i = 0usize;
        let mut marked = false;
        while let Some(body) = frames.next() {
            let n = {
                // Only the frames that reach the kept lines are built.
                let sizing = i + 64 * 1024 / piece.max(1) < first;
                encode_frame(&mut carry, body, piece, sizing, &mut pieces);
                pieces.len()
            };
            let already = skipping.min(n);
            skipping -= already;
            for p in pieces.drain(..n).skip(already) {
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
        Ok((dropped, head_path.into_iter().chain(tail_paths).collect()))
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
    /// the trailer, sync; then, holding the store's lock shared
    /// ([`crate::recording::store::hold`]), the rename to `<id>.rec` and
    /// `publish` (the audit line), so `audit verify` sees the record either
    /// being written or sealed and in the trail, never one without the other.
    pub fn seal(
        mut self,
        exit: Option<Exit>,
        truncated: Option<String>,
        publish: impl FnOnce(&Sealed),
    ) -> Result<Sealed, String> {
        let (dropped, segments) = self.write_kept()?;
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
        let sealed = Sealed {
            id: self.id.clone(),
            user: self.user.clone(),
            sha256: self
                .hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            bytes: self.written,
            exit: exit_json.map(|v| format::exit_text(Some(&v))),
            truncated,
        };
        let sealed_path = self.dir.join(format!("{}{SEALED}", self.id));
        {
            let _held = hold(&self.dir, FlockArg::LockShared);
            std::fs::rename(&self.part_path, &sealed_path)
                .map_err(|e| io_err("rename", &self.part_path, e))?;
            sync_dir(&self.dir);
            publish(&sealed);
        }
        for p in &segments {
            let _ = std::fs::remove_file(p);
        }
        Ok(sealed)
    }
}
