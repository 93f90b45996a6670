//! [`Secret`]: bytes that must never be printed and are wiped when dropped.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Secret bytes (a token, a password). `Debug` prints `***`; the memory is
/// overwritten with zeros on drop. There is deliberately no `Display`, no
/// `Clone` and no `Serialize`.
#[derive(Default, Zeroize, ZeroizeOnDrop)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Takes ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// Copies `bytes` into a new secret.
    pub fn copy_from(bytes: &[u8]) -> Secret {
        Secret(bytes.to_vec())
    }

    /// The secret bytes. Callers must not copy them anywhere that outlives
    /// the secret.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_secret_then_debug_hides_it() {
        let s = Secret::copy_from(b"hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), b"hunter2");
    }
}
