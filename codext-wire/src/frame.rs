//! Length-prefixed frames: a 4-byte big-endian length, then that many bytes.
//!
//! The length is checked against [`MAX_FRAME`] *before* anything is
//! allocated, and the body is read exactly (`read_exact`), so a peer cannot
//! make either side allocate more than a few kilobytes or desynchronise the
//! stream. Timeouts are the caller's: set them on the socket.

use std::fmt;
use std::io::{self, Read, Write};
use zeroize::Zeroizing;

/// Largest frame body either side accepts. A request holds a service name,
/// a user name, a source address and a password of at most a few hundred
/// bytes; 4 KiB leaves room and no more.
pub const MAX_FRAME: usize = 4096;

/// Why a frame could not be read or written.
#[derive(Debug)]
pub enum FrameError {
    /// The announced length is 0 or above [`MAX_FRAME`].
    BadLength(u32),
    /// The stream ended before a whole frame arrived.
    Truncated,
    /// The socket failed (including a read or write timeout).
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadLength(n) => write!(f, "frame length {n} is outside 1..={MAX_FRAME}"),
            FrameError::Truncated => write!(f, "the peer closed the connection mid-frame"),
            FrameError::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

fn map_read_error(e: io::Error) -> FrameError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        FrameError::Io(e)
    }
}

/// Reads one frame body. The returned buffer is at most [`MAX_FRAME`] bytes
/// and is wiped when dropped (a request may carry a password).
pub fn read_frame(r: &mut impl Read) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(map_read_error)?;
    let n = u32::from_be_bytes(len);
    let size = usize::try_from(n).map_err(|_| FrameError::BadLength(n))?;
    if size == 0 || size > MAX_FRAME {
        return Err(FrameError::BadLength(n));
    }
    let mut body = Zeroizing::new(vec![0u8; size]);
    r.read_exact(&mut body).map_err(map_read_error)?;
    Ok(body)
}

/// Writes one frame (length prefix and body in a single write).
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> Result<(), FrameError> {
    if body.is_empty() || body.len() > MAX_FRAME {
        return Err(FrameError::BadLength(
            u32::try_from(body.len()).unwrap_or(u32::MAX),
        ));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(4 + body.len()));
    // Lossless: checked against MAX_FRAME above.
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf).map_err(FrameError::Io)?;
    w.flush().map_err(FrameError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its bytes a few at a time, as a socket may.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(self.1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn given_round_trip_then_body_is_kept() {
        let mut out = Vec::new();
        write_frame(&mut out, b"hello").unwrap();
        assert_eq!(out, b"\0\0\0\x05hello");
        assert_eq!(
            read_frame(&mut out.as_slice()).unwrap().as_slice(),
            b"hello"
        );
    }

    #[test]
    fn given_fragmented_stream_then_frame_is_reassembled() {
        let mut out = Vec::new();
        write_frame(&mut out, &[7u8; 1000]).unwrap();
        let mut r = Trickle(&out, 3);
        assert_eq!(*read_frame(&mut r).unwrap(), vec![7u8; 1000]);
    }

    #[test]
    fn given_oversized_length_then_rejected_before_allocation() {
        let bytes = [0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut bytes.as_slice()),
            Err(FrameError::BadLength(u32::MAX))
        ));
        let bytes = 4097u32.to_be_bytes();
        assert!(matches!(
            read_frame(&mut bytes.as_slice()),
            Err(FrameError::BadLength(4097))
        ));
    }

    #[test]
    fn given_zero_length_then_rejected() {
        let bytes = [0, 0, 0, 0];
        assert!(matches!(
            read_frame(&mut bytes.as_slice()),
            Err(FrameError::BadLength(0))
        ));
    }

    #[test]
    fn given_truncated_header_or_body_then_truncated() {
        assert!(matches!(
            read_frame(&mut [0u8, 0].as_slice()),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            read_frame(&mut b"\0\0\0\x05hel".as_slice()),
            Err(FrameError::Truncated)
        ));
    }

    #[test]
    fn given_oversized_body_then_write_refuses() {
        let mut out = Vec::new();
        assert!(write_frame(&mut out, &vec![0u8; MAX_FRAME + 1]).is_err());
        assert!(write_frame(&mut out, b"").is_err());
        assert!(out.is_empty());
    }
}
