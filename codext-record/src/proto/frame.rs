//! Frames: the length prefix, checked against [`MAX_FRAME`] before
//! anything is read, and the writing of whole frames.

use super::error::ProtoError;
use super::limits::MAX_FRAME;
use std::io::{self, Read, Write};

/// Reads one frame body into `buf` and returns it. `buf` grows to the
/// largest frame read (at most [`MAX_FRAME`]) and is reused as it is:
/// nothing is allocated or cleared per frame.
pub fn read_frame<'b>(r: &mut impl Read, buf: &'b mut Vec<u8>) -> Result<&'b [u8], ProtoError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(ProtoError::Closed),
            Ok(0) => return Err(ProtoError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProtoError::Io(e)),
        }
    }
    let n = u32::from_be_bytes(len);
    let size = usize::try_from(n).map_err(|_| ProtoError::BadLength(n))?;
    if size == 0 || size > MAX_FRAME {
        return Err(ProtoError::BadLength(n));
    }
    if buf.len() < size {
        buf.resize(size, 0);
    }
    let body = &mut buf[..size];
    r.read_exact(body).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ProtoError::Truncated
        } else {
            ProtoError::Io(e)
        }
    })?;
    Ok(body)
}

/// Writes `body` as one frame (one `write` of prefix and body, from
/// `scratch`, which is reused).
pub fn write_frame(w: &mut impl Write, body: &[u8], scratch: &mut Vec<u8>) -> io::Result<()> {
    if body.is_empty() || body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame body outside 1..=MAX_FRAME",
        ));
    }
    scratch.clear();
    // Lossless: checked against MAX_FRAME above.
    scratch.extend_from_slice(&(body.len() as u32).to_be_bytes());
    scratch.extend_from_slice(body);
    w.write_all(scratch)
}

/// Writes every slice (`write_vectored` until all is written).
pub fn write_all_vectored(w: &mut impl Write, mut bufs: &mut [io::IoSlice<'_>]) -> io::Result<()> {
    io::IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
