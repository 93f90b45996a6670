//! The record store, `<state_dir>/recordings` (root's, 0700): one file per
//! channel, written by the daemon only.
//!
//! * While a channel runs its record is `<id>.part` (the header) and the
//!   recorder's frames as they came (raw protocol frames, written through
//!   one by one): the first half of `output_bytes` in `<id>.head`, the
//!   rest in two segment files `<id>.tail0` and `<id>.tail1` of a quarter
//!   of `output_bytes` each, used in turn (the older is emptied when the
//!   newer fills), so the newest events are always kept whatever the
//!   channel's length, on bounded disk. Encoding waits for the seal: while
//!   the channel runs the helper only appends.
//! * At the channel's end ([`Writer::seal`]) the head's frames are encoded
//!   into the part while their events fit half of `output_bytes`; of the
//!   rest, the newest events that fit the other half are appended after a
//!   marker saying how many bytes were dropped in between, then the
//!   trailer; the file is synced and renamed `<id>.rec`, and its SHA-256
//!   (computed as it was written) is returned for the audit trail.
//! * A part left by a helper that stopped is sealed the same way when the
//!   next one starts, marked `truncated`. The segments are removed only
//!   once the record is sealed, so a seal cut short is done again from
//!   them (the part back to its header); segments left beside a sealed
//!   record are removed.
//! * Every open record reserves the most disk it can take
//!   ([`crate::config::Recording::reservation`]); before one begins, the
//!   oldest sealed records expire (each an audit line) until the sealed
//!   ones and the reservations fit `store_bytes`, so the store never
//!   exceeds it. If they cannot fit, the channel is refused (or runs
//!   unrecorded, when the operator chose to fail open).

mod record_store;
mod writer;

pub use record_store::RecordStore;
pub use writer::Writer;

use crate::audit::AuditEvent;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A sealed record's file name ends so.
pub const SEALED: &str = ".rec";
/// A record being written: its file name ends so.
pub const PART: &str = ".part";
const HEAD: &str = ".head";
const SEGMENTS: [&str; 2] = [".tail0", ".tail1"];

/// Writes audit lines for the store.
pub type Log = Box<dyn Fn(AuditEvent) + Send + Sync>;

/// What sealing a record produced, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The record's id.
    pub id: String,
    /// Whose.
    pub user: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
    /// `0`, `3`, `signal 9`.
    pub exit: Option<String>,
    /// Why it is incomplete, if it is.
    pub truncated: Option<String>,
}

impl Sealed {
    /// The audit event for it.
    pub fn event(&self) -> AuditEvent {
        AuditEvent::Record {
            id: self.id.clone(),
            user: self.user.clone(),
            sha256: self.sha256.clone(),
            bytes: self.bytes,
            exit: self.exit.clone(),
            truncated: self.truncated.is_some(),
            reason: self.truncated.clone(),
        }
    }
}

/// A record id is `<10 hex>.<n>`; nothing else is ever a file name here.
pub fn valid_id(id: &str) -> bool {
    let Some((session, n)) = id.split_once('.') else {
        return false;
    };
    valid_session(session) && !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit())
}

/// A session id is 10 lowercase hex digits.
pub fn valid_session(s: &str) -> bool {
    s.len() == 10
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The session id of the PAM session `pid` of `user`, opened at `opened`.
pub fn session_id(user: &str, pid: u32, opened: u64) -> String {
    let d = Sha256::digest(format!("codext-session\0{user}\0{pid}\0{opened}").as_bytes());
    d.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

fn now() -> u64 {
    codext_core::time::now()
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("cannot {what} {}: {e}", path.display())
}

/// Opens `path` for writing, new, 0600, never following a link.
fn create(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_err("create", path, e))
}

/// The store's own lock, an `flock` on its folder: held shared while a
/// record changes in both the store and the audit trail (a seal: the
/// rename, then its line), and exclusive while `audit verify` reads both,
/// so it never sees one change without the other. `None` if the folder
/// cannot be opened or locked: the caller goes on without it (a seal is
/// never refused for it; a verify then may see a seal half done).
pub fn hold(dir: &Path, how: FlockArg) -> Option<Flock<File>> {
    let folder = File::open(dir).ok()?;
    Flock::lock(folder, how).ok()
}

fn sync_dir(dir: &Path) {
    let _ = File::open(dir).and_then(|d| d.sync_all());
}

/// The user named in a record's header (read from its first line).
pub fn user_of(path: &Path) -> Option<String> {
    let mut first = Vec::new();
    let f = File::open(path).ok()?;
    let mut r = f.take(512 << 10);
    r.read_to_end(&mut first).ok()?;
    let line = first.split(|b| *b == b'\n').next()?;
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    v["codext"]["user"].as_str().map(str::to_owned)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Recording;
    use crate::recording::format::{self, Meta};
    use codext_record::proto::{Exit, Stream};
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    pub(crate) fn cfg(output: u64) -> Recording {
        Recording {
            output_bytes: output,
            input_bytes: 1000,
            store_bytes: Recording {
                output_bytes: output,
                ..Recording::default()
            }
            .reservation()
                * 4,
            ..Recording::default()
        }
    }

    pub(crate) fn meta(session: &str, kind: &str) -> Meta {
        Meta {
            format: 1,
            id: String::new(),
            session: session.into(),
            user: "user-00112233aabb".into(),
            uid: 59000,
            kind: kind.into(),
            tty: false,
            command: Some("cat big".into()),
            command_cut: false,
            ssh_connection: String::new(),
            session_pid: 1,
            session_opened: 1,
            recorder_pid: 2,
            continues: None,
            input_recorded: false,
            started: 1,
            output_bytes: 0,
            input_bytes: 0,
        }
    }

    fn store(dir: &Path, c: &Recording) -> (RecordStore, Arc<Mutex<Vec<AuditEvent>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let e = Arc::clone(&events);
        let s = RecordStore::open(dir, c, Box::new(move |ev| e.lock().unwrap().push(ev))).unwrap();
        (s, events)
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("codext-rec-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn given_output_over_the_cap_then_the_first_and_last_parts_are_kept_and_the_drop_is_said() {
        let dir = tmp("cap");
        let c = cfg(64 << 10);
        let (s, events) = store(&dir, &c);
        let mut w = s
            .begin(meta("0123456789", "command"), 0, 0, "", "/bin/bash")
            .unwrap();
        let mut t = 0;
        for i in 0..6000u32 {
            t += 1000;
            w.data(Stream::Out, t, format!("line {i:05}\n").as_bytes())
                .unwrap();
        }
        let sealed = s.finish(w, Some(Exit::Code(3)), None).unwrap();
        let text = std::fs::read_to_string(dir.join(format!("{}.rec", sealed.id))).unwrap();
        assert!(
            text.contains("line 00000") && text.contains("line 05999"),
            "both ends kept"
        );
        assert!(!text.contains("line 03000"), "the middle dropped");
        let p = format::parse(&text).unwrap();
        let marker = p.events.iter().find(|e| e.code == "m").expect("a marker");
        assert!(
            marker.data.contains("bytes dropped here"),
            "{}",
            marker.data
        );
        let end = p.end.unwrap();
        let dropped = end.dropped.unwrap().out;
        assert_eq!(end.bytes.unwrap().out, 6000 * 11);
        assert!(dropped > 0 && marker.data.contains(&dropped.to_string()));
        // Times never go back.
        assert!(p.events.windows(2).all(|w| w[0].t <= w[1].t));
        // The file is small: the budget and a few lines of slack.
        assert!(text.len() < (64 << 10) + 4096, "{}", text.len());
        let digest: String = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sealed.sha256, digest);
        assert!(matches!(
            events.lock().unwrap().last(),
            Some(AuditEvent::Record { .. })
        ));
        assert!(!dir.join(format!("{}.tail0", sealed.id)).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn given_output_that_grows_when_encoded_then_the_record_keeps_both_ends_within_its_budget() {
        // Control bytes take six bytes each once encoded (\u0001): the
        // first half of the budget holds far fewer of them than the head
        // segment took in; the rest competes for the second half with the
        // tail, newest first.
        let dir = tmp("grow");
        let c = cfg(64 << 10);
        let (s, _) = store(&dir, &c);
        let mut w = s
            .begin(meta("cccccccccc", "command"), 0, 0, "", "/bin/bash")
            .unwrap();
        let mut t = 0;
        w.data(Stream::Out, t, b"FIRST\n").unwrap();
        for _ in 0..40 {
            t += 1000;
            w.data(Stream::Out, t, &[1u8; 1024]).unwrap();
        }
        w.data(Stream::Out, t + 1000, b"LAST\n").unwrap();
        let sealed = s.finish(w, Some(Exit::Code(0)), None).unwrap();
        let text = std::fs::read_to_string(dir.join(format!("{}.rec", sealed.id))).unwrap();
        let p = format::parse(&text).unwrap();
        let out: String = p
            .events
            .iter()
            .filter(|e| e.code == "o")
            .map(|e| e.data.as_str())
            .collect();
        assert!(out.starts_with("FIRST\n") && out.ends_with("LAST\n"));
        assert!(text.len() < (64 << 10) + 4096, "{}", text.len());
        let end = p.end.unwrap();
        let (seen, dropped) = (end.bytes.unwrap().out, end.dropped.unwrap().out);
        assert_eq!(seen, 6 + 40 * 1024 + 5);
        assert_eq!(
            seen - dropped,
            out.len() as u64,
            "what is kept and what is said dropped add up"
        );
        assert!(p.events.windows(2).all(|w| w[0].t <= w[1].t));
        for suffix in [".head", ".tail0", ".tail1", ".part"] {
            assert!(!dir.join(format!("{}{suffix}", sealed.id)).exists());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn given_a_full_store_then_the_oldest_records_expire_first_each_with_an_audit_line() {
        let dir = tmp("full");
        let c = cfg(64 << 10);
        let (s, events) = store(&dir, &c);
        let mut ids = Vec::new();
        for _ in 0..80 {
            let mut w = s
                .begin(meta("aaaaaaaaaa", "command"), 0, 0, "", "/bin/bash")
                .unwrap();
            for t in 0..200u64 {
                w.data(Stream::Out, t, &[b'x'; 300]).unwrap();
            }
            ids.push(s.finish(w, Some(Exit::Code(0)), None).unwrap().id);
            let size: u64 = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .map(|e| e.metadata().unwrap().len())
                .sum();
            assert!(size <= c.store_bytes, "{size} > {}", c.store_bytes);
        }
        let expired: Vec<String> = events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                AuditEvent::RecordExpire {
                    id,
                    reason: "size",
                    user,
                    ..
                } => {
                    assert_eq!(user.as_deref(), Some("user-00112233aabb"));
                    Some(id.clone())
                }
                _ => None,
            })
            .collect();
        assert!(!expired.is_empty());
        assert_eq!(expired, ids[..expired.len()].to_vec(), "oldest first");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn given_a_part_left_by_a_stopped_helper_then_the_next_one_seals_it_truncated() {
        let dir = tmp("recover");
        let c = cfg(64 << 10);
        let (s, _) = store(&dir, &c);
        let mut w = s
            .begin(meta("bbbbbbbbbb", "command"), 0, 0, "", "/bin/bash")
            .unwrap();
        for t in 0..3000u64 {
            w.data(Stream::Out, t, b"0123456789abcdef\n").unwrap();
        }
        w.part.flush().unwrap();
        let id = w.id.clone();
        // The helper "stops": the writer is dropped unsealed, a torn line appended.
        drop(w);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(format!("{id}.part")))
            .unwrap();
        f.write_all(b"[1.0,\"o\",\"torn").unwrap();
        let (_s2, events) = store(&dir, &c);
        let text = std::fs::read_to_string(dir.join(format!("{id}.rec"))).unwrap();
        let p = format::parse(&text).unwrap();
        let end = p.end.unwrap();
        assert!(end.truncated && end.reason.unwrap().contains("helper stopped"));
        assert!(!text.contains("torn"));
        assert!(p.events.iter().any(|e| e.code == "m"));
        // The frames it had taken in (the head segment, then the tail's)
        // are encoded into the sealed record, in order.
        let first = p.events.iter().find(|e| e.code == "o");
        assert!(
            first.is_some_and(|e| e.data.starts_with("0123456789abcdef\n")),
            "{text:.400}"
        );
        assert!(p.events.windows(2).all(|w| w[0].t <= w[1].t));
        assert!(!dir.join(format!("{id}.head")).exists());
        match events.lock().unwrap().last() {
            Some(AuditEvent::Record {
                truncated: true,
                sha256,
                ..
            }) => {
                let digest: String = Sha256::digest(text.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(*sha256, digest);
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn given_a_seal_cut_short_then_the_next_helper_seals_the_record_again_without_a_repeated_event()
    {
        let dir = tmp("reseal");
        let c = cfg(64 << 10);
        let (s, _) = store(&dir, &c);
        let mut w = s
            .begin(meta("dddddddddd", "command"), 0, 0, "", "/bin/bash")
            .unwrap();
        for i in 0..6000u32 {
            w.data(
                Stream::Out,
                u64::from(i),
                format!("line {i:05}\n").as_bytes(),
            )
            .unwrap();
        }
        let id = w.id.clone();
        // The helper "stops" in the middle of the seal: some of the first
        // half's events are in the part, the segments are all still there.
        drop(w);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(format!("{id}.part")))
            .unwrap();
        f.write_all(b"[0.000000,\"o\",\"line 00000\\nline 00001\\n\"]\n[0.0000")
            .unwrap();
        drop(f);
        let (_s2, _) = store(&dir, &c);
        let text = std::fs::read_to_string(dir.join(format!("{id}.rec"))).unwrap();
        let out: String = format::parse(&text)
            .unwrap()
            .events
            .iter()
            .filter(|e| e.code == "o")
            .map(|e| e.data.clone())
            .collect();
        assert!(out.starts_with("line 00000\nline 00001\nline 00002\n"));
        assert!(out.ends_with("line 05999\n"));
        for i in [0, 1, 5999] {
            assert_eq!(
                out.matches(&format!("line {i:05}\n")).count(),
                1,
                "line {i}"
            );
        }
        for suffix in [".head", ".tail0", ".tail1", ".part"] {
            assert!(!dir.join(format!("{id}{suffix}")).exists(), "{suffix}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn given_segments_left_beside_a_sealed_record_then_the_next_helper_removes_them() {
        let dir = tmp("orphans");
        let c = cfg(64 << 10);
        let (s, _) = store(&dir, &c);
        let w = s
            .begin(meta("eeeeeeeeee", "command"), 0, 0, "", "/bin/bash")
            .unwrap();
        let sealed = s.finish(w, Some(Exit::Code(0)), None).unwrap();
        // Stopped after the rename, before the segments were removed.
        for suffix in [".head", ".tail0", ".tail1"] {
            std::fs::write(dir.join(format!("{}{suffix}", sealed.id)), b"x").unwrap();
        }
        let (_s2, _) = store(&dir, &c);
        for suffix in [".head", ".tail0", ".tail1"] {
            assert!(
                !dir.join(format!("{}{suffix}", sealed.id)).exists(),
                "{suffix}"
            );
        }
        assert!(dir.join(format!("{}.rec", sealed.id)).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn given_stdin_over_its_cap_and_sftp_data_then_only_what_is_kept_is_written() {
        let dir = tmp("stdin");
        let c = cfg(64 << 10);
        let (s, _) = store(&dir, &c);
        let mut w = s
            .begin(meta("cccccccccc", "command"), 0, 0, "", "/bin/bash")
            .unwrap();
        w.data(Stream::In, 1, &[b'a'; 800]).unwrap();
        w.data(Stream::In, 2, &[b'b'; 800]).unwrap();
        let sealed = s.finish(w, Some(Exit::Code(0)), None).unwrap();
        let p = format::parse(
            &std::fs::read_to_string(dir.join(format!("{}.rec", sealed.id))).unwrap(),
        )
        .unwrap();
        let kept: usize = p
            .events
            .iter()
            .filter(|e| e.code == "i")
            .map(|e| e.data.len())
            .sum();
        assert_eq!(kept, 1000);
        assert_eq!(p.end.unwrap().dropped.unwrap().input, 600);
        let mut w = s
            .begin(meta("cccccccccc", "sftp"), 0, 0, "", "/bin/bash")
            .unwrap();
        w.data(Stream::In, 1, &[7; 5000]).unwrap();
        w.sftp(2, "open", b"/x", b"", "write").unwrap();
        let sealed = s.finish(w, Some(Exit::Code(0)), None).unwrap();
        assert!(sealed.id.ends_with(".2"));
        let p = format::parse(
            &std::fs::read_to_string(dir.join(format!("{}.rec", sealed.id))).unwrap(),
        )
        .unwrap();
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.events[0].code, "x");
        assert_eq!(p.end.unwrap().bytes.unwrap().input, 5000);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
