//! The records against the audit trail (`codext-helper audit verify` runs
//! this once the chain itself verified): every record the trail says was
//! sealed must be in the store with exactly the SHA-256 the trail holds,
//! unless the trail also says it expired; a record the trail opened must
//! have been sealed or still be being written; and nothing in the store
//! may be missing from the trail. So an edited, deleted, swapped or
//! planted record is reported, and since the trail itself is hash-chained
//! (and its head anchored off the host, see `docs/THREAT_MODEL.md`), the
//! SHA-256 it holds cannot be changed to match unnoticed.

use super::store::{valid_id, SEALED};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
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

/// What was checked: `(records checked, problems)`; each problem names
/// the record and what is wrong with it.
pub fn verify(log: &Path, store: &Path) -> (usize, Vec<String>) {
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
    let mut problems = Vec::new();
    let mut checked = 0;
    for (id, s) in &said {
        let sealed = store.join(format!("{id}{SEALED}"));
        let part = store.join(format!("{id}.part"));
        match (&s.sealed, s.expired) {
            (_, true) => {}
            (Some(want), false) => {
                checked += 1;
                match sha256_of(&sealed) {
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
            (None, false) if s.opened && !part.exists() => problems.push(format!(
                "record {id}: the audit trail opened it, and it was neither sealed nor expired, nor is it being written"
            )),
            (None, false) => {}
        }
    }
    for e in std::fs::read_dir(store).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_suffix(SEALED) {
            let known = said.get(id).is_some_and(|s| s.sealed.is_some());
            if !valid_id(id) || !known {
                problems.push(format!(
                    "{}: not a record the audit trail knows (planted, or renamed)",
                    e.path().display()
                ));
            }
        }
    }
    (checked, problems)
}
