//! Every byte recorded before it is passed on, or the channel ends: a
//! lost recording kills the shell and its process group.

use crate::link::{Link, Lost, Shared};
use crate::sys;
use codext_record::proto::Stream;
use std::sync::atomic::{AtomicI32, Ordering};

/// The shell's pid, for [`fatal`].
pub(super) static CHILD: AtomicI32 = AtomicI32::new(0);

/// The recording cannot go on and the operator did not choose to fail
/// open: the channel ends now, the shell and its process group with it.
pub(super) fn fatal(lost: &Lost) -> ! {
    eprintln!("\r\ncodext: {}\r", lost.0);
    let child = CHILD.load(Ordering::SeqCst);
    if child > 0 {
        sys::kill(-child, libc::SIGKILL);
        sys::kill(child, libc::SIGKILL);
    }
    std::process::exit(255)
}

pub(super) fn record(link: &Link, stream: Stream, bytes: &[u8]) {
    if let Err(lost) = link.data(stream, bytes) {
        fatal(&lost);
    }
}

/// [`record`] for `buf[..n]` of a read buffer the ring may keep a share of
/// (a bulk read: not copied).
pub(super) fn record_shared(link: &Link, stream: Stream, buf: &Shared, n: usize) {
    if let Err(lost) = link.data_shared(stream, buf, n) {
        fatal(&lost);
    }
}
