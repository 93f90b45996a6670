//! The file operations of an sftp session, decoded from the byte streams
//! the recorder relays (SFTP version 3, draft-ietf-secsh-filexfer-02, as
//! OpenSSH's `sftp-server` speaks it, with its `…@openssh.com` extensions).
//!
//! The decoder is fed the client's bytes ([`Decoder::client`]) and the
//! server's ([`Decoder::server`]) as they pass, in chunks of any size. It
//! keeps at most [`KEEP`] bytes of any packet (enough for a request's
//! fixed fields and two paths of [`crate::proto::MAX_PATH`]); the rest of a
//! packet (a `write`'s data, a `read`'s reply) is counted and skipped, never
//! buffered. Handles are mapped back to the paths opened (from the server's
//! `SSH_FXP_HANDLE` replies) for at most [`MAX_OPEN`] files at a time, so
//! `close` can say how many bytes were written to which file. Malformed
//! packets produce nothing; they never stop the relay.

use std::collections::HashMap;

/// Most bytes of one packet kept for decoding.
pub const KEEP: usize = 2 * crate::proto::MAX_PATH + 256;
/// Most requests waiting for a handle, and handles tracked, at once.
pub const MAX_OPEN: usize = 256;

const FXP_OPEN: u8 = 3;
const FXP_CLOSE: u8 = 4;
const FXP_READ: u8 = 5;
const FXP_WRITE: u8 = 6;
const FXP_SETSTAT: u8 = 9;
const FXP_OPENDIR: u8 = 11;
const FXP_REMOVE: u8 = 13;
const FXP_MKDIR: u8 = 14;
const FXP_RMDIR: u8 = 15;
const FXP_RENAME: u8 = 18;
const FXP_SYMLINK: u8 = 20;
const FXP_HANDLE: u8 = 102;
const FXP_EXTENDED: u8 = 200;

/// One file operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// `open`, `close`, `opendir`, `remove`, `mkdir`, `rmdir`, `rename`,
    /// `symlink`, `setstat`, `hardlink`, `posix-rename`, `lsetstat`.
    pub op: &'static str,
    /// The path named.
    pub path: Vec<u8>,
    /// The second path (rename, symlink, hardlink).
    pub path2: Vec<u8>,
    /// Flags (`open`: read, write, create, truncate, append, excl) or
    /// counts (`close`: bytes written and read).
    pub detail: String,
}

/// One direction's packet splitter.
#[derive(Debug, Default)]
struct Splitter {
    /// The 4-byte length being read.
    len_buf: [u8; 4],
    len_got: usize,
    /// Body bytes still to come in the current packet.
    left: usize,
    /// The kept start of the current packet's body.
    kept: Vec<u8>,
    /// The current packet's whole body length.
    total: usize,
}

impl Splitter {
    /// Feeds `bytes`; calls `done(kept, total)` for every packet completed.
    fn feed(&mut self, mut bytes: &[u8], mut done: impl FnMut(&[u8], usize)) {
        while !bytes.is_empty() {
            if self.len_got < 4 {
                let n = (4 - self.len_got).min(bytes.len());
                self.len_buf[self.len_got..self.len_got + n].copy_from_slice(&bytes[..n]);
                self.len_got += n;
                bytes = &bytes[n..];
                if self.len_got == 4 {
                    self.total = u32::from_be_bytes(self.len_buf) as usize;
                    self.left = self.total;
                    self.kept.clear();
                    if self.left == 0 {
                        self.len_got = 0;
                    }
                }
                continue;
            }
            let n = self.left.min(bytes.len());
            let room = KEEP.saturating_sub(self.kept.len()).min(n);
            self.kept.extend_from_slice(&bytes[..room]);
            self.left -= n;
            bytes = &bytes[n..];
            if self.left == 0 {
                done(&self.kept, self.total);
                self.kept.clear();
                self.len_got = 0;
            }
        }
    }
}

/// The sftp decoder of one channel.
#[derive(Debug, Default)]
pub struct Decoder {
    client: Splitter,
    server: Splitter,
    /// Request id of an open/opendir → path, until its handle comes back.
    pending: HashMap<u32, Vec<u8>>,
    /// Handle → (path, bytes written, bytes asked to read).
    handles: HashMap<Vec<u8>, (Vec<u8>, u64, u64)>,
}

struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn u32(&mut self) -> Option<u32> {
        if self.0.len() < 4 {
            return None;
        }
        let (b, rest) = self.0.split_at(4);
        self.0 = rest;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        Some((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }
    fn string(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        if self.0.len() < n {
            return None;
        }
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(b)
    }
}

fn cut(p: &[u8]) -> Vec<u8> {
    p[..p.len().min(crate::proto::MAX_PATH)].to_vec()
}

fn open_flags(pflags: u32) -> String {
    let mut v = Vec::new();
    for (bit, name) in [
        (0x01, "read"),
        (0x02, "write"),
        (0x04, "append"),
        (0x08, "create"),
        (0x10, "truncate"),
        (0x20, "excl"),
    ] {
        if pflags & bit != 0 {
            v.push(name);
        }
    }
    v.join(",")
}

impl Decoder {
    /// A fresh decoder.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Bytes the client sent (the server's standard input); returns the
    /// operations completed by them.
    pub fn client(&mut self, bytes: &[u8]) -> Vec<Op> {
        let mut ops = Vec::new();
        let Decoder {
            client,
            pending,
            handles,
            ..
        } = self;
        client.feed(bytes, |kept, total| {
            if let Some(op) = request(kept, total, pending, handles) {
                ops.push(op);
            }
        });
        ops
    }

    /// Bytes the server sent (its standard output): only handles are read.
    pub fn server(&mut self, bytes: &[u8]) {
        let Decoder {
            server,
            pending,
            handles,
            ..
        } = self;
        server.feed(bytes, |kept, _| {
            let mut f = Fields(kept);
            if f.u8() != Some(FXP_HANDLE) {
                return;
            }
            let (Some(id), Some(handle)) = (f.u32(), f.string()) else {
                return;
            };
            if let Some(path) = pending.remove(&id) {
                if handles.len() < MAX_OPEN {
                    handles.insert(handle.to_vec(), (path, 0, 0));
                }
            }
        });
    }
}

/// The operation a client packet is, if it is one worth recording.
fn request(
    kept: &[u8],
    total: usize,
    pending: &mut HashMap<u32, Vec<u8>>,
    handles: &mut HashMap<Vec<u8>, (Vec<u8>, u64, u64)>,
) -> Option<Op> {
    let mut f = Fields(kept);
    let kind = f.u8()?;
    let id = f.u32()?;
    let one = |op, f: &mut Fields<'_>| {
        Some(Op {
            op,
            path: cut(f.string()?),
            path2: Vec::new(),
            detail: String::new(),
        })
    };
    let two = |op, f: &mut Fields<'_>| {
        let a = cut(f.string()?);
        let b = cut(f.string()?);
        Some(Op {
            op,
            path: a,
            path2: b,
            detail: String::new(),
        })
    };
    let remember = |pending: &mut HashMap<u32, Vec<u8>>, path: &[u8]| {
        if pending.len() < MAX_OPEN {
            pending.insert(id, path.to_vec());
        }
    };
    match kind {
        FXP_OPEN => {
            let path = cut(f.string()?);
            let flags = f.u32()?;
            remember(pending, &path);
            Some(Op {
                op: "open",
                path,
                path2: Vec::new(),
                detail: open_flags(flags),
            })
        }
        FXP_OPENDIR => {
            let op = one("opendir", &mut f)?;
            remember(pending, &op.path);
            Some(op)
        }
        FXP_CLOSE => {
            let handle = f.string()?;
            let (path, written, read) = handles.remove(handle)?;
            if path.is_empty() {
                return None;
            }
            Some(Op {
                op: "close",
                path,
                path2: Vec::new(),
                detail: format!("written {written} bytes, read {read} bytes"),
            })
        }
        FXP_WRITE => {
            let handle = f.string()?;
            let _offset = f.u64()?;
            // The data's length, from the packet's: the data itself was
            // never kept. 1 (type) + 4 (id) + 4 + handle + 8 (offset) + 4.
            let data = total.checked_sub(1 + 4 + 4 + handle.len() + 8 + 4)?;
            if let Some(h) = handles.get_mut(handle) {
                h.1 += data as u64;
            }
            None
        }
        FXP_READ => {
            let handle = f.string()?;
            let _offset = f.u64()?;
            let len = f.u32()?;
            if let Some(h) = handles.get_mut(handle) {
                h.2 += u64::from(len);
            }
            None
        }
        FXP_SETSTAT => one("setstat", &mut f),
        FXP_REMOVE => one("remove", &mut f),
        FXP_MKDIR => one("mkdir", &mut f),
        FXP_RMDIR => one("rmdir", &mut f),
        FXP_RENAME => two("rename", &mut f),
        FXP_SYMLINK => two("symlink", &mut f),
        FXP_EXTENDED => match f.string()? {
            b"posix-rename@openssh.com" => two("posix-rename", &mut f),
            b"hardlink@openssh.com" => two("hardlink", &mut f),
            b"lsetstat@openssh.com" => one("lsetstat", &mut f),
            b"copy-data" => None,
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(kind: u8, id: u32, fields: &[&[u8]]) -> Vec<u8> {
        let mut body = vec![kind];
        body.extend_from_slice(&id.to_be_bytes());
        for f in fields {
            body.extend_from_slice(f);
        }
        let mut p = (body.len() as u32).to_be_bytes().to_vec();
        p.extend(body);
        p
    }
    fn s(b: &[u8]) -> Vec<u8> {
        let mut v = (b.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b);
        v
    }

    #[test]
    fn given_an_upload_fed_a_byte_at_a_time_then_open_close_and_renames_are_decoded() {
        let mut d = Decoder::new();
        let mut client = Vec::new();
        client.extend(packet(
            FXP_OPEN,
            1,
            &[
                &s(b"/home/u/up.bin"),
                &0x1au32.to_be_bytes(),
                &0u32.to_be_bytes(),
            ],
        ));
        let data = vec![7u8; 100_000];
        client.extend(packet(
            FXP_WRITE,
            2,
            &[&s(b"H1"), &0u64.to_be_bytes(), &s(&data)],
        ));
        client.extend(packet(FXP_CLOSE, 3, &[&s(b"H1")]));
        client.extend(packet(FXP_RENAME, 4, &[&s(b"a"), &s(b"b")]));
        client.extend(packet(
            FXP_EXTENDED,
            5,
            &[&s(b"posix-rename@openssh.com"), &s(b"c"), &s(b"d")],
        ));
        client.extend(packet(FXP_REMOVE, 6, &[&s(b"gone")]));
        let server = packet(FXP_HANDLE, 1, &[&s(b"H1")]);
        // The open first, then its handle, then the rest a byte at a time.
        let split = 4 + u32::from_be_bytes([client[0], client[1], client[2], client[3]]) as usize;
        let mut ops = d.client(&client[..split]);
        d.server(&server);
        for b in &client[split..] {
            ops.extend(d.client(std::slice::from_ref(b)));
        }
        let summary: Vec<(&str, String, String, String)> = ops
            .iter()
            .map(|o| {
                (
                    o.op,
                    String::from_utf8_lossy(&o.path).into_owned(),
                    String::from_utf8_lossy(&o.path2).into_owned(),
                    o.detail.clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "open",
                    "/home/u/up.bin".into(),
                    "".into(),
                    "write,create,truncate".into()
                ),
                (
                    "close",
                    "/home/u/up.bin".into(),
                    "".into(),
                    "written 100000 bytes, read 0 bytes".into()
                ),
                ("rename", "a".into(), "b".into(), "".into()),
                ("posix-rename", "c".into(), "d".into(), "".into()),
                ("remove", "gone".into(), "".into(), "".into()),
            ]
        );
    }

    #[test]
    fn given_garbage_and_huge_packets_then_nothing_is_kept_beyond_the_bounds() {
        let mut d = Decoder::new();
        // A packet claiming 4 GiB: the splitter keeps KEEP bytes and skips.
        let mut huge = u32::MAX.to_be_bytes().to_vec();
        huge.extend(vec![FXP_REMOVE; 1 << 20]);
        assert!(d.client(&huge).is_empty());
        assert!(d.client.kept.len() <= KEEP);
        // Thousands of opens without handles: the pending map stays bounded.
        let mut d = Decoder::new();
        for id in 0..10_000u32 {
            d.client(&packet(
                FXP_OPEN,
                id,
                &[&s(b"p"), &1u32.to_be_bytes(), &0u32.to_be_bytes()],
            ));
        }
        assert!(d.pending.len() <= MAX_OPEN);
        // Truncated fields decode to nothing.
        assert!(d
            .client(&packet(FXP_RENAME, 1, &[&s(b"only-one")]))
            .is_empty());
        assert!(d
            .client(&packet(FXP_OPEN, 1, &[&[0, 0, 0, 200]]))
            .is_empty());
    }
}
