//! The fields inside a message: length-prefixed bytes and text, capped,
//! and the strict reader that decodes them.

use super::error::ProtoError;

/// Appends `b` as a 2-byte length and the bytes, cut to `max`.
pub(super) fn put_bytes(out: &mut Vec<u8>, b: &[u8], max: usize) {
    let b = &b[..b.len().min(max).min(u16::MAX as usize)];
    // Lossless: at most u16::MAX.
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub fn cut_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub(super) struct Reader<'a> {
    pub(super) b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.b.len() < n {
            return Err(ProtoError::Malformed("short field"));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    pub(super) fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16, ProtoError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(super) fn u64(&mut self) -> Result<u64, ProtoError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    pub(super) fn i32(&mut self) -> Result<i32, ProtoError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(i32::from_be_bytes(a))
    }
    pub(super) fn bytes(&mut self, max: usize) -> Result<&'a [u8], ProtoError> {
        let n = usize::from(self.u16()?);
        if n > max {
            return Err(ProtoError::Malformed("field too long"));
        }
        self.take(n)
    }
    pub(super) fn text(&mut self, max: usize) -> Result<&'a str, ProtoError> {
        std::str::from_utf8(self.bytes(max)?).map_err(|_| ProtoError::Malformed("text not UTF-8"))
    }
    pub(super) fn done(&self) -> Result<(), ProtoError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(ProtoError::Malformed("trailing bytes"))
        }
    }
}
