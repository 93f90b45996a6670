//! The records against the audit trail (`codext-helper audit verify` runs
//! this once the chain itself verified): every record the trail says was
//! sealed must be in the store with exactly the SHA-256 the trail holds,
//! unless the trail also says it expired; a record the trail opened must
//! have been sealed or still be being written; and nothing in the store
//! may be missing from the trail (but a record written before the oldest
//! line the trail keeps, whose lines went with the audit retention, is
//! named as unchecked rather than planted). So an edited, deleted, swapped or
//! planted record is reported, and since the trail itself is hash-chained
//! (and its head anchored off the host, see `docs/THREAT_MODEL.md`), the
//! SHA-256 it holds cannot be changed to match unnoticed.

use super::store::{hold, valid_id, PART, SEALED};
use crate::audit::kept_lines;
use nix::fcntl::FlockArg;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

#[derive(Debug, Default)]
struct Said {
    opened: bool,
    sealed: Option<String>,
    expired: bool,
}

fn sha256_of(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// What the trail says of each record it names.
fn said_by(lines: &[Value]) -> BTreeMap<String, Said> {
    let mut said: BTreeMap<String, Said> = BTreeMap::new();
    for v in lines {
        let (Some(event), Some(id)) = (v["event"].as_str(), v["id"].as_str()) else {
            continue;
        };
        let entry = said.entry(id.to_owned()).or_default();
        match event {
            "record_open" => entry.opened = true,
            "record" => entry.sealed = v["sha256"].as_str().map(str::to_owned),
            "record_expire" => entry.expired = true,
            _ => {}
        }
    }
    said
}

/// When the oldest line the trail keeps was written, if the retention
/// deleted the files before it (the oldest kept line is then the
/// checkpoint of a file after the first).
fn kept_since(lines: &[Value]) -> Option<&str> {
    let first = lines.first()?;
    (first["event"] == "checkpoint" && first["file"].as_u64().is_some_and(|f| f > 1))
        .then(|| first["time"].as_str())
        .flatten()
}

/// Whether the trail, read again if what was read last does not say so,
/// says `id` expired (its line is written before its file is removed).
fn expired_since(
    later: &mut Option<BTreeMap<String, Said>>,
    log: &Path,
    state_dir: &Path,
    id: &str,
) -> bool {
    let said = |l: &Option<BTreeMap<String, Said>>| {
        l.as_ref()
            .and_then(|l| l.get(id))
            .is_some_and(|s| s.expired)
    };
    if said(later) {
        return true;
    }
    *later = kept_lines(log, state_dir).ok().map(|l| said_by(&l));
    said(later)
}

/// What the records' check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Sealed records compared with the trail.
    pub checked: usize,
    /// What does not match, each naming the record.
    pub problems: Vec<String>,
    /// Records that cannot be checked: sealed before the oldest line the
    /// trail keeps (their lines went with the audit retention).
    pub unchecked: Vec<String>,
}

/// Every record in `store` against the trail (`log`, its head and lock in
/// `state_dir`).
///
/// The helper may seal and expire records meanwhile. The trail and the
/// store's listing are read holding the store's lock exclusive, which a
/// seal holds shared from its rename to its audit line, so the view is
/// never half a seal; the trail itself is read as `audit verify` reads it
/// (under the audit writers' lock, so never half a rotation). The records
/// are hashed after the store's lock is let go (a long hash must not hold
/// up seals), and one that expired meanwhile (its line is written before
/// its file goes) is no problem.
pub fn verify(log: &Path, state_dir: &Path, store: &Path) -> Found {
    let held = hold(store, FlockArg::LockExclusive);
    let lines = match kept_lines(log, state_dir) {
        Ok(l) => l,
        Err(e) => {
            return Found {
                problems: vec![format!("cannot read the audit trail: {e}")],
                ..Found::default()
            }
        }
    };
    let listed: BTreeMap<String, Option<SystemTime>> = std::fs::read_dir(store)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let mtime = e.metadata().and_then(|m| m.modified()).ok();
            (e.file_name().to_string_lossy().into_owned(), mtime)
        })
        .collect();
    drop(held);
    let said = said_by(&lines);
    let since = kept_since(&lines);
    let mut found = Found::default();
    let mut later: Option<BTreeMap<String, Said>> = None;
    for (id, s) in &said {
        let sealed = store.join(format!("{id}{SEALED}"));
        match (&s.sealed, s.expired) {
            (_, true) => {}
            (Some(want), false) => {
                found.checked += 1;
                match sha256_of(&sealed) {
                    None if expired_since(&mut later, log, state_dir, id) => {}
                    None => found.problems.push(format!(
                        "record {id}: the audit trail sealed it (sha256 {want}) and records no expiry, but {} is gone",
                        sealed.display()
                    )),
                    Some(got) if got != *want => found.problems.push(format!(
                        "record {id}: {} was changed: its sha256 is {got}, the audit trail holds {want}",
                        sealed.display()
                    )),
                    Some(_) => {}
                }
            }
            (None, false) if s.opened && !listed.contains_key(&format!("{id}{PART}")) => {
                found.problems.push(format!(
                    "record {id}: the audit trail opened it, and it was neither sealed nor expired, nor is it being written"
                ))
            }
            (None, false) => {}
        }
    }
    for (name, mtime) in &listed {
        let Some(id) = name.strip_suffix(SEALED) else {
            continue;
        };
        if valid_id(id) && said.get(id).is_some_and(|s| s.sealed.is_some()) {
            continue;
        }
        let written = mtime
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| codext_core::time::rfc3339(d.as_secs()));
        let path = store.join(name);
        match (since, written) {
            // The same format throughout (UTC, to the second): its text
            // sorts as its time does.
            (Some(since), Some(w)) if valid_id(id) && w.as_str() <= since => {
                found.unchecked.push(format!(
                    "{}: written {w}, before the oldest line the audit trail keeps ({since}): its audit lines went with the retention, so it cannot be checked",
                    path.display()
                ))
            }
            _ => found.problems.push(format!(
                "{}: not a record the audit trail knows (planted, or renamed)",
                path.display()
            )),
        }
    }
    found
}

#[cfg(test)]
mod tests;
