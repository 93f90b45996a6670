//! Sizes of the relay's reads and of the pipes it asks for.

/// Largest read from the shell or the client (the link cuts it in frames).
pub(super) const READ: usize = 256 * 1024;
/// Pipe buffers asked for between the shell and the recorder, and to sshd
/// (fewer, larger reads and writes on a bulk transfer).
pub(super) const PIPE: i32 = 1 << 20;
