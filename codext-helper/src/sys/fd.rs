//! Descriptors: owning one the kernel just returned, making one
//! non-blocking, receiving descriptors passed over a Unix socket.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Sets `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?;
    fcntl(
        fd.as_raw_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK),
    )?;
    Ok(())
}

/// Takes ownership of a descriptor the kernel just returned to the caller
/// (from `open`/`openat`), which nothing else owns.
pub fn own_fd(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: the caller passes a descriptor it just received from the
    // kernel and hands over; no other owner exists.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Receives up to `max` bytes from the Unix stream `sock` and
/// at most `want` descriptors passed with them (`SCM_RIGHTS`), made
/// close-on-exec as they arrive (`MSG_CMSG_CLOEXEC`: the helper runs other
/// programs, which must never inherit a user's session). Any descriptor
/// beyond `want` is closed.
pub fn recv_with_fds(
    sock: std::os::fd::BorrowedFd<'_>,
    max: usize,
    want: usize,
) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = vec![0u8; max];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 8]);
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let n = msg.bytes;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = c {
            for fd in received {
                // Every descriptor is owned (and so closed) from here on.
                fds.push(own_fd(fd));
            }
        }
    }
    fds.truncate(want);
    buf.truncate(n);
    Ok((buf, fds))
}
