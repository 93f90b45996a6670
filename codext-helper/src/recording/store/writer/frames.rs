//! The frames a record's tail holds, read back at its seal (older segment
//! first, one frame in memory at a time) and encoded as record lines.

use super::stream_index;
use crate::recording::format;
use codext_record::proto::{self, Stream, ToHelper};
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

/// The raw frames of a tail, older segment first, read one at a time
/// (a torn last frame ends it).
pub(super) struct Frames {
    files: Vec<std::io::BufReader<File>>,
    buf: Vec<u8>,
}

impl Frames {
    /// Opens the segments in the order of their sequence numbers.
    pub(super) fn open(paths: &[PathBuf]) -> Frames {
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
    pub(super) fn next(&mut self) -> Option<&[u8]> {
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
pub(super) struct Piece {
    pub(super) t: u64,
    pub(super) line: Option<String>,
    pub(super) len: u64,
    pub(super) counted: Option<(Stream, u64)>,
}

/// The events of a tail frame as record lines, a data frame cut in pieces
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
