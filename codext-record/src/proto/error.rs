//! The protocol's error: what went wrong with a frame or a message.

use super::limits::MAX_FRAME;
use std::fmt;
use std::io;

/// Why a frame could not be read, written or understood.
#[derive(Debug)]
pub enum ProtoError {
    /// A frame length of 0 or above [`MAX_FRAME`].
    BadLength(u32),
    /// The peer closed the connection at a frame boundary.
    Closed,
    /// The peer closed the connection mid-frame.
    Truncated,
    /// The socket failed.
    Io(io::Error),
    /// A frame that is not a valid message.
    Malformed(&'static str),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::BadLength(n) => write!(f, "frame length {n} is outside 1..={MAX_FRAME}"),
            ProtoError::Closed => write!(f, "the peer closed the connection"),
            ProtoError::Truncated => write!(f, "the peer closed the connection mid-frame"),
            ProtoError::Io(e) => write!(f, "socket error: {e}"),
            ProtoError::Malformed(what) => write!(f, "malformed frame: {what}"),
        }
    }
}

impl std::error::Error for ProtoError {}
