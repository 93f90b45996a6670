//! The frames a record's head and tail segments hold, read back at its
//! seal (the head first, then the older tail segment; one frame in memory
//! at a time) and encoded as record lines.

use super::stream_index;
use crate::recording::format;
use codext_record::proto::{self, Stream, ToHelper};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The raw frames of a record, in order, read one at a time (a torn last
/// frame ends its file).
pub(super) struct Frames {
    /// Last to read first.
    files: Vec<BufReader<File>>,
    buf: Vec<u8>,
    /// Where in the file being read the frame last returned starts, and
    /// where the next one does.
    at: u64,
    next_at: u64,
}

impl Frames {
    /// The head segment's frames from the frame at `from` (none: no head),
    /// then the tail segments' in the order of their sequence numbers.
    pub(super) fn open(head: Option<(&Path, u64)>, tails: &[PathBuf]) -> Frames {
        let mut segs: Vec<(u64, BufReader<File>)> = tails
            .iter()
            .filter_map(|p| {
                let mut r = BufReader::with_capacity(64 << 10, File::open(p).ok()?);
                let mut seq = [0u8; 8];
                r.read_exact(&mut seq).ok()?;
                Some((u64::from_be_bytes(seq), r))
            })
            .collect();
        segs.sort_by_key(|(seq, _)| *seq);
        let mut files: Vec<BufReader<File>> = segs.into_iter().map(|(_, r)| r).rev().collect();
        let mut next_at = 0;
        if let Some((path, from)) = head {
            if let Ok(mut f) = File::open(path) {
                if f.seek(SeekFrom::Start(from)).is_ok() {
                    files.push(BufReader::with_capacity(64 << 10, f));
                    next_at = from;
                }
            }
        }
        Frames {
            files,
            buf: Vec::with_capacity(proto::MAX_FRAME),
            at: 0,
            next_at,
        }
    }

    /// The next frame's body.
    pub(super) fn next(&mut self) -> Option<&[u8]> {
        loop {
            let r = self.files.last_mut()?;
            let mut len = [0u8; 4];
            let mut n = 0;
            let ok = r.read_exact(&mut len).is_ok() && {
                n = u32::from_be_bytes(len) as usize;
                n > 0 && n <= proto::MAX_FRAME && {
                    self.buf.resize(n, 0);
                    r.read_exact(&mut self.buf).is_ok()
                }
            };
            if ok {
                self.at = self.next_at;
                self.next_at += 4 + n as u64;
                return Some(&self.buf);
            }
            self.files.pop();
            self.next_at = 0;
        }
    }

    /// Where in its file the frame last returned starts (meaningful for
    /// the head segment, the first file read).
    pub(super) fn offset(&self) -> u64 {
        self.at
    }
}

/// One event of a frame, encoded: its time, its line (or only its
/// length, when sizing), and the bytes of a stream it keeps.
#[derive(Debug)]
pub(super) struct Piece {
    pub(super) t: u64,
    pub(super) line: Option<String>,
    pub(super) len: u64,
    pub(super) counted: Option<(Stream, u64)>,
}

/// The events of a frame as record lines, a data frame cut in pieces
/// of `piece` bytes as the part's events are; with `sizing`, only their
/// lengths are computed (nothing is built).
pub(super) fn encode_frame(
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
