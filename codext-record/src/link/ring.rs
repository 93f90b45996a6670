//! Data held back past the first part: the newest `cap` bytes of the
//! channel, and which stream and time each piece of it came with.
//!
//! A small piece is copied into one buffer, allocated once (when a channel
//! first gets there) and used in turn. A large one (a bulk read) is not
//! copied at all: the ring keeps a share of the relay's read buffer, which
//! comes back to the relay ([`Ring::spare`]) once the ring has dropped it.
//! So a 50 MB `cat` costs the ring no copy of the 46 MB it drops.

use codext_record::proto::Stream;
use std::collections::VecDeque;
use std::sync::Arc;

/// A relay's read buffer, shared with the ring; the piece is
/// `buf[start..end]`.
pub type Shared = Arc<Vec<u8>>;

/// Where a held piece's bytes are.
#[derive(Debug)]
enum Place {
    /// In the ring's own buffer, after the pieces before it.
    Inline,
    /// In a relay's read buffer, from this offset.
    Shared(Shared, usize),
}

#[derive(Debug)]
struct Piece {
    stream: Stream,
    t_us: u64,
    len: usize,
    place: Place,
}

/// The newest bytes past the first part.
#[derive(Debug, Default)]
pub struct Ring {
    /// The copied pieces' buffer (`cap` bytes once used).
    buf: Vec<u8>,
    /// Where the oldest copied byte is.
    start: usize,
    /// Copied bytes held.
    inline: usize,
    /// Bytes held, copied or shared (at most `cap`).
    held: usize,
    /// Oldest first.
    pieces: VecDeque<Piece>,
    /// Read buffers the ring let go of, for the relay to read into again.
    spare: Vec<Vec<u8>>,
}

pub fn index(s: Stream) -> usize {
    match s {
        Stream::In => 0,
        Stream::Out => 1,
        Stream::Err => 2,
    }
}

impl Ring {
    /// Holds a copy of `data`, dropping the oldest bytes past `cap`
    /// (counted per stream in `dropped`).
    pub fn push(
        &mut self,
        cap: usize,
        stream: Stream,
        t_us: u64,
        data: &[u8],
        dropped: &mut [u64; 3],
    ) {
        if cap == 0 {
            dropped[index(stream)] += data.len() as u64;
            return;
        }
        if self.buf.len() != cap {
            // The first piece (or a new cap after a resume): start afresh.
            for p in self.pieces.drain(..) {
                dropped[index(p.stream)] += p.len as u64;
            }
            self.buf = vec![0; cap];
            self.start = 0;
            self.inline = 0;
            self.held = 0;
        }
        // Only the newest `cap` bytes of `data` can stay.
        let skip = data.len().saturating_sub(cap);
        dropped[index(stream)] += skip as u64;
        let data = &data[skip..];
        self.make_room(cap, data.len(), dropped);
        // Copy in after the copied pieces, wrapping at the end.
        let at = (self.start + self.inline) % cap;
        let first = data.len().min(cap - at);
        self.buf[at..at + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
        self.inline += data.len();
        self.held += data.len();
        self.pieces.push_back(Piece {
            stream,
            t_us,
            len: data.len(),
            place: Place::Inline,
        });
    }

    /// Holds `buf[start..end]` without copying it (the ring keeps a share
    /// of the buffer), dropping the oldest bytes past `cap`.
    #[allow(clippy::too_many_arguments)]
    pub fn push_shared(
        &mut self,
        cap: usize,
        stream: Stream,
        t_us: u64,
        buf: &Shared,
        start: usize,
        end: usize,
        dropped: &mut [u64; 3],
    ) {
        let end = end.min(buf.len());
        let start = start.min(end);
        if cap == 0 || self.buf.len() != cap {
            // The copied pieces' buffer is made on the first push.
            return self.push(cap, stream, t_us, &buf[start..end], dropped);
        }
        let skip = (end - start).saturating_sub(cap);
        dropped[index(stream)] += skip as u64;
        let start = start + skip;
        let len = end - start;
        self.make_room(cap, len, dropped);
        self.held += len;
        self.pieces.push_back(Piece {
            stream,
            t_us,
            len,
            place: Place::Shared(Arc::clone(buf), start),
        });
    }

    /// Drops the oldest bytes until `len` more fit in `cap`.
    fn make_room(&mut self, cap: usize, len: usize, dropped: &mut [u64; 3]) {
        while self.held + len > cap {
            let over = self.held + len - cap;
            let Some(front) = self.pieces.front_mut() else {
                break;
            };
            let cut = over.min(front.len);
            dropped[index(front.stream)] += cut as u64;
            front.len -= cut;
            self.held -= cut;
            match &mut front.place {
                Place::Inline => {
                    self.start = (self.start + cut) % cap;
                    self.inline -= cut;
                }
                Place::Shared(_, at) => *at += cut,
            }
            if front.len == 0 {
                if let Some(p) = self.pieces.pop_front() {
                    self.recycle(p);
                }
            }
        }
    }

    /// Keeps a read buffer the ring no longer holds for the relay, if no
    /// one else holds it either: as many as the ring's capacity takes (a
    /// flush empties the ring; the reads that fill it again get them back
    /// instead of fresh memory, which the kernel would fault in and clear).
    fn recycle(&mut self, piece: Piece) {
        if let Place::Shared(buf, _) = piece.place {
            let room = self.buf.len() / buf.len().max(1) + 2;
            if self.spare.len() < room {
                if let Ok(v) = Arc::try_unwrap(buf) {
                    self.spare.push(v);
                }
            }
        }
    }

    /// A read buffer the ring let go of, if any.
    pub fn spare(&mut self) -> Option<Vec<u8>> {
        self.spare.pop()
    }

    /// Hands every held piece to `each` (stream, time, its bytes as one or
    /// two slices: a copied piece may wrap), oldest first, and empties the
    /// ring; stops at the first error.
    pub fn drain<E>(
        &mut self,
        mut each: impl FnMut(Stream, u64, &[u8], &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut result = Ok(());
        while let Some(p) = self.pieces.pop_front() {
            if result.is_ok() {
                result = match &p.place {
                    Place::Inline => {
                        let cap = self.buf.len();
                        let at = self.start;
                        let first = p.len.min(cap - at);
                        each(
                            p.stream,
                            p.t_us,
                            &self.buf[at..at + first],
                            &self.buf[..p.len - first],
                        )
                    }
                    Place::Shared(buf, at) => each(p.stream, p.t_us, &buf[*at..*at + p.len], &[]),
                };
            }
            if let Place::Inline = p.place {
                self.start = (self.start + p.len) % self.buf.len().max(1);
                self.inline -= p.len;
            }
            self.held -= p.len;
            self.recycle(p);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(ring: &mut Ring) -> Vec<String> {
        let mut got = Vec::new();
        ring.drain(|s, t, a, b| {
            got.push(format!(
                "{} {t} {}{}",
                s.code(),
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b)
            ));
            Ok::<(), ()>(())
        })
        .unwrap();
        got
    }

    #[test]
    fn given_the_ring_full_then_the_oldest_bytes_go_and_pieces_wrap_around() {
        let mut ring = Ring::default();
        let mut dropped = [0u64; 3];
        ring.push(8, Stream::Out, 1, b"abcde", &mut dropped);
        ring.push(8, Stream::Err, 2, b"fghij", &mut dropped);
        assert_eq!(dropped, [0, 2, 0]);
        assert_eq!(drained(&mut ring), vec!["o 1 cde", "e 2 fghij"]);
        // One push larger than the ring keeps its end.
        ring.push(8, Stream::In, 3, b"0123456789", &mut dropped);
        assert_eq!(dropped, [2, 2, 0]);
        assert_eq!(drained(&mut ring), vec!["i 3 23456789"]);
        assert!(drained(&mut ring).is_empty());
    }

    #[test]
    fn given_shared_and_copied_pieces_then_the_newest_cap_bytes_stay_in_order_and_shared_buffers_come_back(
    ) {
        let mut ring = Ring::default();
        let mut dropped = [0u64; 3];
        ring.push(8, Stream::Out, 1, b"ab", &mut dropped);
        let big: Shared = Arc::new(b"xxCDEFGyy".to_vec());
        // Its bytes 2..7 ("CDEFG"), not copied.
        ring.push_shared(8, Stream::Out, 2, &big, 2, 7, &mut dropped);
        ring.push(8, Stream::Err, 3, b"hij", &mut dropped);
        // 2 + 5 + 3 = 10 over a cap of 8: "ab" goes.
        assert_eq!(dropped, [0, 2, 0]);
        assert_eq!(
            drained(&mut ring),
            vec!["o 2 CDEFG", "e 3 hij"],
            "oldest first, each with its own time"
        );
        drop(big);
        // A shared piece cut at its front, then the whole buffer dropped:
        // it comes back for reuse once nobody else holds it.
        let big: Shared = Arc::new(b"0123456789".to_vec());
        ring.push_shared(8, Stream::Out, 4, &big, 0, 10, &mut dropped);
        assert_eq!(
            dropped,
            [0, 4, 0],
            "a piece larger than the ring keeps its end"
        );
        drop(big);
        ring.push(8, Stream::Out, 5, b"ABCDEFGH", &mut dropped);
        assert_eq!(dropped, [0, 12, 0]);
        assert_eq!(ring.spare().as_deref(), Some(&b"0123456789"[..]));
        assert_eq!(drained(&mut ring), vec!["o 5 ABCDEFGH"]);
    }

    #[test]
    fn given_a_shared_buffer_still_held_by_the_relay_then_the_ring_does_not_hand_it_out() {
        let mut ring = Ring::default();
        let mut dropped = [0u64; 3];
        ring.push(4, Stream::Out, 1, b"a", &mut dropped);
        let big: Shared = Arc::new(b"wxyz".to_vec());
        ring.push_shared(4, Stream::Out, 2, &big, 0, 4, &mut dropped);
        ring.push(4, Stream::Out, 3, b"1234", &mut dropped);
        assert!(ring.spare().is_none(), "the relay still writes from it");
        assert_eq!(Arc::strong_count(&big), 1);
    }
}
