//! Random bytes from the OS generator (getrandom(2)), for tokens, puzzle
//! ids and user names.

use crate::error::{Error, Result};
use rand_core::{OsRng, RngCore};

/// `N` bytes from the OS random generator.
pub fn bytes<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    fill(&mut out)?;
    Ok(out)
}

/// Fills `buf` from the OS random generator.
pub fn fill(buf: &mut [u8]) -> Result<()> {
    OsRng
        .try_fill_bytes(buf)
        .map_err(|e| Error::Random(e.to_string()))
}
