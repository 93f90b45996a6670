//! Snapshots of a folder tree, to show that a step changed nothing (or
//! what it changed): every entry's mode, owner, group and content.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Path → (mode, owner, group, content or link target; folders: empty).
pub type Snapshot = BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)>;

/// Every entry under `root`.
pub fn snapshot(root: &str) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::from(root)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = p.symlink_metadata().unwrap();
            let content = if m.file_type().is_symlink() {
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if m.is_file() {
                std::fs::read(&p).unwrap_or_default()
            } else {
                Vec::new()
            };
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p, (m.mode(), m.uid(), m.gid(), content));
        }
    }
    out
}

/// The paths that differ between two snapshots, sorted.
pub fn changed(a: &Snapshot, b: &Snapshot) -> Vec<PathBuf> {
    let mut keys: Vec<&PathBuf> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}
