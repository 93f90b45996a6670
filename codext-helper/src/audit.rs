//! The append-only audit trail: one JSON object per line for every issue,
//! answer, verification, creation, removal, expiry and revoke — never a
//! secret.
//!
//! Each line carries `seq`, `prev` (the previous line's hash) and `hash` =
//! SHA-256 of `prev` and the line's canonical JSON without `hash` (keys
//! sorted, as serde_json writes them). The latest `seq` and hash are also
//! kept in `<state_dir>/audit.head`, outside the log, so editing, deleting,
//! reordering lines or cutting off the tail are all detected by
//! [`verify`]. Appends from the daemon and the CLI are serialised with an
//! exclusive `flock` on the log.

use crate::error::{HelperError, Result};
use nix::fcntl::{Flock, FlockArg};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const HEAD_FILE: &str = "audit.head";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where the trail and its head live.
#[derive(Debug, Clone)]
pub struct Audit {
    log: PathBuf,
    state_dir: PathBuf,
}

fn line_hash(prev: &str, body: &Map<String, Value>) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(Value::Object(body.clone()).to_string().as_bytes());
    codext_core::encoding::hex(&h.finalize())
}

fn read_head(state_dir: &Path) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(state_dir.join(HEAD_FILE)).ok()?;
    let mut it = text.split_whitespace();
    let seq = it.next()?.parse().ok()?;
    let hash = it.next()?.to_owned();
    Some((seq, hash))
}

impl Audit {
    /// The trail at `log`, its head in `state_dir`.
    pub fn new(log: &Path, state_dir: &Path) -> Audit {
        Audit {
            log: log.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
        }
    }

    /// Appends one event. `fields` must be an object and must not hold a
    /// secret.
    pub fn record(&self, event: &str, fields: Value) -> Result<()> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            HelperError::System(format!(
                "audit log {}: cannot {what}: {e}",
                self.log.display()
            ))
        };
        if let Some(parent) = self.log.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| fail("create folder", &e))?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.log)
            .map_err(|e| fail("open", &e))?;
        let mut file =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| fail("lock", &e))?;
        let (seq, prev) = read_head(&self.state_dir)
            .map(|(s, h)| (s + 1, h))
            .unwrap_or((1, GENESIS.to_owned()));
        let mut body = match fields {
            Value::Object(m) => m,
            other => {
                let mut m = Map::new();
                m.insert("detail".into(), other);
                m
            }
        };
        body.insert("seq".into(), seq.into());
        body.insert(
            "time".into(),
            codext_core::time::rfc3339(codext_core::time::now()).into(),
        );
        body.insert("event".into(), event.into());
        body.insert("prev".into(), prev.clone().into());
        let hash = line_hash(&prev, &body);
        body.insert("hash".into(), hash.clone().into());
        let mut line = Value::Object(body).to_string();
        line.push('\n');
        file.write_all(line.as_bytes())
            .map_err(|e| fail("write", &e))?;
        file.sync_data().map_err(|e| fail("sync", &e))?;
        crate::store::write_atomic(
            &self.state_dir,
            HEAD_FILE,
            format!("{seq} {hash}\n").as_bytes(),
            0o600,
        )
    }
}

/// Checks the whole chain against the head. Returns the number of
/// entries, or a description of the first inconsistency.
pub fn verify(log: &Path, state_dir: &Path) -> std::result::Result<u64, String> {
    let head = read_head(state_dir);
    let file = match std::fs::File::open(log) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {}: {e}", log.display())),
    };
    let mut prev = GENESIS.to_owned();
    let mut count = 0u64;
    if let Some(file) = file {
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let n = i + 1;
            let line = line.map_err(|e| format!("line {n}: unreadable: {e}"))?;
            let value: Value =
                serde_json::from_str(&line).map_err(|e| format!("line {n}: not JSON ({e})"))?;
            let Value::Object(mut body) = value else {
                return Err(format!("line {n}: not an object"));
            };
            let Some(Value::String(hash)) = body.remove("hash") else {
                return Err(format!("line {n}: no hash"));
            };
            if body.get("seq").and_then(Value::as_u64) != Some(count + 1) {
                return Err(format!(
                    "line {n}: sequence number {:?}, expected {} (a line was removed or moved)",
                    body.get("seq"),
                    count + 1
                ));
            }
            if body.get("prev").and_then(Value::as_str) != Some(prev.as_str()) {
                return Err(format!("line {n}: does not follow the previous line (a line was removed, inserted or moved)"));
            }
            if line_hash(&prev, &body) != hash {
                return Err(format!(
                    "line {n}: content does not match its hash (the line was edited)"
                ));
            }
            prev = hash;
            count += 1;
        }
    }
    match head {
        None if count == 0 => Ok(0),
        None => Err(format!(
            "{count} entries but no head file: the head was deleted"
        )),
        Some((seq, hash)) => {
            if seq != count || hash != prev {
                Err(format!(
                    "the log ends at entry {count} but the head records entry {seq}: the tail was cut off or replaced"
                ))
            } else {
                Ok(count)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(tag: &str) -> (PathBuf, Audit) {
        let dir = std::env::temp_dir().join(format!("codext-audit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = Audit::new(&dir.join("log/audit.jsonl"), &dir);
        for i in 0..5 {
            a.record(
                "issue",
                serde_json::json!({"user": format!("user-00000000000{i}")}),
            )
            .unwrap();
        }
        (dir, a)
    }

    fn lines(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("log/audit.jsonl"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write(dir: &Path, lines: &[String]) {
        std::fs::write(
            dir.join("log/audit.jsonl"),
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
    }

    #[test]
    fn given_intact_log_then_verifies() {
        let (dir, _) = setup("ok");
        assert_eq!(verify(&dir.join("log/audit.jsonl"), &dir), Ok(5));
    }

    #[test]
    fn given_edited_line_then_detected() {
        let (dir, _) = setup("edit");
        let mut l = lines(&dir);
        l[2] = l[2].replace("user-000000000002", "user-00000000000f");
        write(&dir, &l);
        let err = verify(&dir.join("log/audit.jsonl"), &dir).unwrap_err();
        assert!(err.contains("line 3") && err.contains("edited"), "{err}");
    }

    #[test]
    fn given_deleted_line_then_detected() {
        let (dir, _) = setup("delete");
        let mut l = lines(&dir);
        l.remove(1);
        write(&dir, &l);
        let err = verify(&dir.join("log/audit.jsonl"), &dir).unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn given_reordered_lines_then_detected() {
        let (dir, _) = setup("reorder");
        let mut l = lines(&dir);
        l.swap(1, 3);
        write(&dir, &l);
        assert!(verify(&dir.join("log/audit.jsonl"), &dir)
            .unwrap_err()
            .contains("line 2"));
    }

    #[test]
    fn given_cut_tail_then_detected_by_head() {
        let (dir, _) = setup("cut");
        let mut l = lines(&dir);
        l.truncate(3);
        write(&dir, &l);
        let err = verify(&dir.join("log/audit.jsonl"), &dir).unwrap_err();
        assert!(err.contains("tail"), "{err}");
    }

    #[test]
    fn given_deleted_head_then_detected() {
        let (dir, _) = setup("nohead");
        std::fs::remove_file(dir.join(HEAD_FILE)).unwrap();
        assert!(verify(&dir.join("log/audit.jsonl"), &dir)
            .unwrap_err()
            .contains("head"));
    }
}
