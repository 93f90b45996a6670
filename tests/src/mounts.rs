//! "Every file of a uid anywhere", made checkable: inside the sandbox the
//! root file system is read-only, so a user can only have written to the
//! sandbox's writable mounts, which `/proc/self/mountinfo` lists.

use crate::world::files_of;
use std::path::PathBuf;

/// File systems whose entries are not files a user leaves behind (their
/// ownership mirrors live processes or kernel objects).
const PSEUDO: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "bpf",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "configfs",
    "fusectl",
    "binfmt_misc",
    "nsfs",
    "autofs",
];

/// Mount points of every writable, non-pseudo mount (each once).
pub fn writable_mounts() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let mut out: Vec<PathBuf> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let (Some(point), Some(opts), Some(fstype)) = (f.get(4), f.get(5), f.get(sep + 1)) else {
            continue;
        };
        if opts.split(',').any(|o| o == "ro") || PSEUDO.contains(fstype) {
            continue;
        }
        let p = PathBuf::from(point.replace("\\040", " "));
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Every file owned by `uid` on every writable mount.
pub fn files_anywhere(uid: u32) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = writable_mounts()
        .iter()
        .flat_map(|m| files_of(m, uid))
        .collect();
    found.sort();
    found.dedup();
    found
}
