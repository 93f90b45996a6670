//! An sftp session confined to one folder: what the recorder
//! puts between the client and `sftp-server` on a `commands` grant whose
//! profile allows sftp (sftp-server itself has no confinement an
//! unprivileged account could use: it runs as the user, without a
//! chroot).
//!
//! * [`Requests`] cuts the client's byte stream into whole packets (at most
//!   [`MAX_PACKET`] each: sftp-server refuses larger ones too), so each
//!   request is judged whole before any byte of it reaches the server.
//! * [`judge`] passes a request, or denies it: every path it names is
//!   resolved lexically against the folder (relative paths against it, as
//!   sftp-server starts there) and must stay in it; `..` that climbs out,
//!   an absolute path elsewhere, `~` expansion, links (`symlink`,
//!   `hardlink@openssh.com`) and extensions not known to take only
//!   handles or checked paths are denied. Requests on handles need no
//!   check: a handle comes from an `open` that was judged. Nothing in the
//!   folder can be a symlink the user made (links are denied here; the
//!   legacy scp sink makes none; rsync's are munged).
//! * A denied request gets its answer from here ([`status`]:
//!   `SSH_FX_PERMISSION_DENIED` with the request's id), written to the
//!   client between two of the server's packets ([`Replies`] tracks the
//!   server's packet boundaries).

/// Largest packet accepted from the client (sftp-server's own limit is
/// 256 KiB of data plus headers).
pub const MAX_PACKET: usize = 512 * 1024;

const FXP_INIT: u8 = 1;
const FXP_OPEN: u8 = 3;
const FXP_CLOSE: u8 = 4;
const FXP_READ: u8 = 5;
const FXP_WRITE: u8 = 6;
const FXP_LSTAT: u8 = 7;
const FXP_FSTAT: u8 = 8;
const FXP_SETSTAT: u8 = 9;
const FXP_FSETSTAT: u8 = 10;
const FXP_OPENDIR: u8 = 11;
const FXP_READDIR: u8 = 12;
const FXP_REMOVE: u8 = 13;
const FXP_MKDIR: u8 = 14;
const FXP_RMDIR: u8 = 15;
const FXP_REALPATH: u8 = 16;
const FXP_STAT: u8 = 17;
const FXP_RENAME: u8 = 18;
const FXP_READLINK: u8 = 19;
const FXP_STATUS: u8 = 101;
const FXP_EXTENDED: u8 = 200;
/// `SSH_FX_PERMISSION_DENIED`.
const FX_PERMISSION_DENIED: u32 = 3;

/// The client's stream cut into whole packets.
#[derive(Debug, Default)]
pub struct Requests {
    buf: Vec<u8>,
}

/// A client packet longer than [`MAX_PACKET`]: the session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

impl Requests {
    /// Feeds client bytes; returns the packets they complete (each with
    /// its 4-byte length).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, TooLong> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if self.buf.len() < 4 {
                break;
            }
            let n =
                u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
            if n > MAX_PACKET {
                return Err(TooLong);
            }
            if self.buf.len() < 4 + n {
                break;
            }
            let rest = self.buf.split_off(4 + n);
            out.push(std::mem::replace(&mut self.buf, rest));
        }
        Ok(out)
    }
}

/// The server's stream's packet boundaries (nothing is kept).
#[derive(Debug, Default)]
pub struct Replies {
    len: [u8; 4],
    got: usize,
    left: usize,
}

impl Replies {
    /// True between two packets (an answer may be written now).
    pub fn at_boundary(&self) -> bool {
        self.got == 0 && self.left == 0
    }

    /// Feeds server bytes; returns the offsets in `bytes` where a packet
    /// ended (an answer may go there).
    pub fn feed(&mut self, mut bytes: &[u8]) -> Vec<usize> {
        let mut ends = Vec::new();
        let mut at = 0;
        while !bytes.is_empty() {
            if self.left == 0 {
                let n = (4 - self.got).min(bytes.len());
                self.len[self.got..self.got + n].copy_from_slice(&bytes[..n]);
                self.got += n;
                bytes = &bytes[n..];
                at += n;
                if self.got == 4 {
                    self.left = u32::from_be_bytes(self.len) as usize;
                    self.got = 0;
                    if self.left == 0 {
                        ends.push(at);
                    }
                }
                continue;
            }
            let n = self.left.min(bytes.len());
            self.left -= n;
            bytes = &bytes[n..];
            at += n;
            if self.left == 0 {
                ends.push(at);
            }
        }
        ends
    }
}

/// What [`judge`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Pass it on.
    Pass,
    /// Answer it here with this refusal.
    Deny {
        /// The request's id.
        id: u32,
        /// Why (for the user's client and the record).
        why: String,
    },
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

/// True when `path` (as a request names it) stays in `root` (absolute,
/// no trailing `/`): resolved lexically, relative paths against `root`.
pub fn inside(root: &[u8], path: &[u8]) -> bool {
    if path.first() == Some(&b'~') || path.contains(&0) {
        return false;
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    let full: Vec<u8> = if path.first() == Some(&b'/') {
        path.to_vec()
    } else {
        let mut p = root.to_vec();
        p.push(b'/');
        p.extend_from_slice(path);
        p
    };
    for c in full.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let roots: Vec<&[u8]> = root
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    parts.len() >= roots.len() && parts[..roots.len()] == roots[..]
}

/// Decides one client packet (with its length) for a session confined to
/// `root`.
pub fn judge(packet: &[u8], root: &[u8]) -> Verdict {
    let mut f = Fields(packet.get(4..).unwrap_or_default());
    let Some(kind) = f.u8() else {
        return Verdict::Pass;
    };
    if kind == FXP_INIT {
        return Verdict::Pass;
    }
    let Some(id) = f.u32() else {
        return Verdict::Pass;
    };
    let deny = |why: &str| Verdict::Deny {
        id,
        why: why.to_owned(),
    };
    let check = |paths: &[Option<&[u8]>]| -> Verdict {
        for p in paths {
            match p {
                None => return deny("malformed request"),
                Some(p) if !inside(root, p) => {
                    return deny(&format!(
                        "{} is outside the grant's transfer folder",
                        String::from_utf8_lossy(p)
                    ))
                }
                Some(_) => {}
            }
        }
        Verdict::Pass
    };
    match kind {
        FXP_OPEN | FXP_LSTAT | FXP_SETSTAT | FXP_OPENDIR | FXP_REMOVE | FXP_MKDIR | FXP_RMDIR
        | FXP_REALPATH | FXP_STAT | FXP_READLINK => check(&[f.string()]),
        FXP_RENAME => {
            let a = f.string();
            let b = f.string();
            check(&[a, b])
        }
        FXP_CLOSE | FXP_READ | FXP_WRITE | FXP_FSTAT | FXP_FSETSTAT | FXP_READDIR => Verdict::Pass,
        FXP_EXTENDED => match f.string() {
            Some(b"posix-rename@openssh.com") => {
                let a = f.string();
                let b = f.string();
                check(&[a, b])
            }
            Some(b"statvfs@openssh.com" | b"lsetstat@openssh.com") => check(&[f.string()]),
            Some(b"expand-path@openssh.com") => check(&[f.string()]),
            Some(
                b"fstatvfs@openssh.com"
                | b"fsync@openssh.com"
                | b"limits@openssh.com"
                | b"copy-data"
                | b"users-groups-by-id@openssh.com",
            ) => Verdict::Pass,
            _ => deny("this sftp extension is not allowed on this grant"),
        },
        // symlink and every request type not listed.
        _ => deny("links and unknown requests are not allowed on this grant"),
    }
}

/// An `SSH_FXP_STATUS` packet denying request `id` with `why`.
pub fn status(id: u32, why: &str) -> Vec<u8> {
    let mut body = vec![FXP_STATUS];
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&FX_PERMISSION_DENIED.to_be_bytes());
    let msg = why.as_bytes();
    body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    body.extend_from_slice(msg);
    body.extend_from_slice(&2u32.to_be_bytes());
    body.extend_from_slice(b"en");
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: &[u8]) -> Vec<u8> {
        let mut v = (b.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b);
        v
    }

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

    const ROOT: &[u8] = b"/home/user-000000000001/files";

    #[test]
    fn given_paths_then_only_those_that_stay_in_the_folder_pass() {
        for ok in [
            &b"up.bin"[..],
            b".",
            b"a/b/../c",
            b"/home/user-000000000001/files",
            b"/home/user-000000000001/files/x",
            b"./x/./y",
        ] {
            assert!(inside(ROOT, ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b".."[..],
            b"../.bashrc",
            b"a/../../x",
            b"/tmp/x",
            b"/home/user-000000000001/filesx",
            b"/home/user-000000000001",
            b"/",
            b"~/x",
            b"~",
            b"/home/user-000000000001/files/../../../etc/passwd",
            b"x\0y",
        ] {
            assert!(!inside(ROOT, bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn given_requests_then_paths_are_judged_handles_pass_and_links_are_denied() {
        let pass = [
            packet(
                FXP_OPEN,
                1,
                &[&s(b"up.bin"), &0x1au32.to_be_bytes(), &0u32.to_be_bytes()],
            ),
            packet(FXP_REALPATH, 2, &[&s(b".")]),
            packet(FXP_RENAME, 3, &[&s(b"a"), &s(b"b")]),
            packet(FXP_WRITE, 4, &[&s(b"H"), &0u64.to_be_bytes(), &s(b"data")]),
            packet(FXP_EXTENDED, 5, &[&s(b"limits@openssh.com")]),
        ];
        for p in pass {
            assert_eq!(judge(&p, ROOT), Verdict::Pass);
        }
        let mut init = vec![0, 0, 0, 5, FXP_INIT];
        init.extend_from_slice(&3u32.to_be_bytes());
        assert_eq!(judge(&init, ROOT), Verdict::Pass);
        for (p, id) in [
            (
                packet(
                    FXP_OPEN,
                    11,
                    &[&s(b"/etc/passwd"), &1u32.to_be_bytes(), &0u32.to_be_bytes()],
                ),
                11,
            ),
            (
                packet(FXP_RENAME, 12, &[&s(b"a"), &s(b"../../.ssh/rc")]),
                12,
            ),
            (packet(FXP_REALPATH, 13, &[&s(b"..")]), 13),
            (packet(20, 14, &[&s(b"/etc/passwd"), &s(b"ln")]), 14),
            (
                packet(
                    FXP_EXTENDED,
                    15,
                    &[&s(b"hardlink@openssh.com"), &s(b"/etc/shadow"), &s(b"h")],
                ),
                15,
            ),
            (
                packet(
                    FXP_EXTENDED,
                    16,
                    &[&s(b"expand-path@openssh.com"), &s(b"~/x")],
                ),
                16,
            ),
            (
                packet(
                    FXP_EXTENDED,
                    17,
                    &[&s(b"something-new@example.com"), &s(b"/")],
                ),
                17,
            ),
            (packet(FXP_OPENDIR, 18, &[&[0, 0, 0, 99]]), 18),
        ] {
            match judge(&p, ROOT) {
                Verdict::Deny { id: got, .. } => assert_eq!(got, id),
                Verdict::Pass => panic!("passed: {p:?}"),
            }
        }
    }

    #[test]
    fn given_streams_in_pieces_then_whole_packets_and_boundaries_come_out() {
        let a = packet(
            FXP_OPEN,
            1,
            &[&s(b"x"), &0u32.to_be_bytes(), &0u32.to_be_bytes()],
        );
        let b = packet(FXP_CLOSE, 2, &[&s(b"H")]);
        let mut both = a.clone();
        both.extend(&b);
        let mut r = Requests::default();
        let mut got = Vec::new();
        for byte in &both {
            got.extend(r.feed(std::slice::from_ref(byte)).unwrap());
        }
        assert_eq!(got, vec![a.clone(), b.clone()]);
        assert_eq!(r.feed(&(MAX_PACKET as u32 + 1).to_be_bytes()), Err(TooLong));
        let mut rep = Replies::default();
        assert!(rep.at_boundary());
        let ends = rep.feed(&both[..a.len() + 3]);
        assert_eq!(ends, vec![a.len()]);
        assert!(!rep.at_boundary());
        assert_eq!(rep.feed(&both[a.len() + 3..]), vec![b.len() - 3]);
        assert!(rep.at_boundary());
        let st = status(7, "no");
        assert_eq!(st[4], FXP_STATUS);
        assert_eq!(&st[5..9], &7u32.to_be_bytes());
        assert_eq!(&st[9..13], &3u32.to_be_bytes());
    }
}
