//! The caps on what a frame and its fields may carry, which both sides
//! check before they read or send.

/// Most bytes of terminal or pipe data in one `Data` frame.
pub const MAX_DATA: usize = 64 * 1024;
/// Largest frame body either side accepts: a full `Data` frame and its
/// header, or a `Hello` with the longest command.
pub const MAX_FRAME: usize = MAX_DATA + 64;
/// Longest command line carried (longer ones are cut, and say so).
pub const MAX_COMMAND: usize = 32 * 1024;
/// Longest short text (terminal type, client address, ids, reasons).
pub const MAX_TEXT: usize = 512;
/// Longest path in an sftp operation (longer ones are cut).
pub const MAX_PATH: usize = 4096;
/// Longest time data past the first part waits in the recorder before it
/// is sent (milliseconds).
pub const FLUSH_MS: u64 = 250;

/// Longest refusal (a gate's refusal lists what is allowed).
pub const MAX_REASON: usize = 4096;
/// Most words of a command the helper has the recorder run.
pub const MAX_ARGV: usize = 128;
/// Most environment variables the helper sets for it.
pub const MAX_ENV: usize = 32;
