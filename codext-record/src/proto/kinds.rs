//! The protocol version and the first byte of each message (its kind).

/// Protocol version carried in [`Hello`] and [`ToRecorder::Accept`].
pub const PROTOCOL: u8 = 1;

pub(super) const HELLO: u8 = 1;
pub(super) const DATA: u8 = 2;
pub(super) const RESIZE: u8 = 3;
pub(super) const SFTP: u8 = 4;
pub(super) const END: u8 = 5;
pub(super) const COUNT: u8 = 6;
pub(super) const ENTER: u8 = 7;
pub(super) const ACCEPT: u8 = 16;
pub(super) const REFUSE: u8 = 17;
pub(super) const CLOSED: u8 = 18;
pub(super) const EXITED: u8 = 19;
