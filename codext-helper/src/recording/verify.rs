//! The records against the audit trail (`codext-helper audit verify` runs
//! this once the chain itself verified): every record the trail says was
//! sealed must be in the store with exactly the SHA-256 the trail holds,
//! unless the trail also says it expired; a record the trail opened must
//! have been sealed or still be being written; and nothing in the store
//! may be missing from the trail. So an edited, deleted, swapped or
//! planted record is reported, and since the trail itself is hash-chained
//! (and its head anchored off the host, see `docs/THREAT_MODEL.md`), the
//! SHA-256 it holds cannot be changed to match unnoticed.

use super::store::{hold, valid_id, PART, SEALED};
use nix::fcntl::FlockArg;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

#[derive(Debug, Default)]
struct Said {
    opened: bool,
    sealed: Option<String>,
    expired: bool,
}

/// Every line of the trail, oldest file first.
fn trail_lines(log: &Path) -> Vec<Value> {
    let Some(dir) = log.parent() else {
        return Vec::new();
    };
    let base = log
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut rotated: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix(&format!("{base}."))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    rotated.sort_unstable();
    rotated
        .into_iter()
        .map(|n| dir.join(format!("{base}.{n}")))
        .chain(std::iter::once(log.to_path_buf()))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .collect::<Vec<_>>()
        })
        .collect()
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
fn said_by(log: &Path) -> BTreeMap<String, Said> {
    let mut said: BTreeMap<String, Said> = BTreeMap::new();
    for v in trail_lines(log) {
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

/// Whether the trail, read again if what was read last does not say so,
/// says `id` expired (its line is written before its file is removed).
fn expired_since(later: &mut Option<BTreeMap<String, Said>>, log: &Path, id: &str) -> bool {
    let said = |l: &Option<BTreeMap<String, Said>>| {
        l.as_ref()
            .and_then(|l| l.get(id))
            .is_some_and(|s| s.expired)
    };
    if said(later) {
        return true;
    }
    *later = Some(said_by(log));
    said(later)
}

/// What was checked: `(records checked, problems)`; each problem names
/// the record and what is wrong with it.
///
/// The helper may seal and expire records meanwhile. The trail and the
/// store's listing are read holding the store's lock exclusive, which a
/// seal holds shared from its rename to its audit line, so the view is
/// never half a seal; the records are hashed after the lock is let go (a
/// long hash must not hold up seals), and one that expired meanwhile
/// (its line is written before its file goes) is no problem.
pub fn verify(log: &Path, store: &Path) -> (usize, Vec<String>) {
    let held = hold(store, FlockArg::LockExclusive);
    let said = said_by(log);
    let listed: BTreeSet<String> = std::fs::read_dir(store)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    drop(held);
    let mut problems = Vec::new();
    let mut checked = 0;
    let mut later: Option<BTreeMap<String, Said>> = None;
    for (id, s) in &said {
        let sealed = store.join(format!("{id}{SEALED}"));
        match (&s.sealed, s.expired) {
            (_, true) => {}
            (Some(want), false) => {
                checked += 1;
                match sha256_of(&sealed) {
                    None if expired_since(&mut later, log, id) => {}
                    None => problems.push(format!(
                        "record {id}: the audit trail sealed it (sha256 {want}) and records no expiry, but {} is gone",
                        sealed.display()
                    )),
                    Some(got) if got != *want => problems.push(format!(
                        "record {id}: {} was changed: its sha256 is {got}, the audit trail holds {want}",
                        sealed.display()
                    )),
                    Some(_) => {}
                }
            }
            (None, false) if s.opened && !listed.contains(&format!("{id}{PART}")) => problems.push(format!(
                "record {id}: the audit trail opened it, and it was neither sealed nor expired, nor is it being written"
            )),
            (None, false) => {}
        }
    }
    for name in &listed {
        if let Some(id) = name.strip_suffix(SEALED) {
            let known = said.get(id).is_some_and(|s| s.sealed.is_some());
            if !valid_id(id) || !known {
                problems.push(format!(
                    "{}: not a record the audit trail knows (planted, or renamed)",
                    store.join(name).display()
                ));
            }
        }
    }
    (checked, problems)
}

#[cfg(test)]
mod tests;
