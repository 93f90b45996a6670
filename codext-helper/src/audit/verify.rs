//! [`verify`]: the whole chain checked across every file, against the
//! head.

use super::chain::Head;
use super::{
    check_line, read_head, read_if_present, read_nofollow, rotated_numbers, rotated_path, GENESIS,
    LOCK_FILE,
};
use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What [`verify`] found in an intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Entries checked, over every file.
    pub entries: u64,
    /// Files checked (rotated ones and the active one).
    pub files: u64,
    /// Recoveries that could not rule out a loss (entries missing after a
    /// crash or a cut, a head that was gone): the chain links, but these
    /// need an operator's look.
    pub warnings: Vec<String>,
    /// The first file checked: 1, or the oldest rotated file the retention
    /// kept (the chain is checked from its checkpoint, which a recorded
    /// deletion of the file before it vouches for).
    pub first_file: u64,
}

/// Checks the whole chain, across every rotated file and the active one,
/// against the head. Returns what it checked, or where the chain breaks
/// (file and line) and how.
///
/// Files the retention deleted (the oldest rotated ones) cannot be
/// checked; the chain is then checked from the first kept file's
/// checkpoint, and that checkpoint must be the one a `retention` line in
/// the kept files vouches for (the deleted file's number, entries and last
/// hash). A file deleted any other way is reported as missing.
///
/// The helper may write meanwhile: the head, the rotated files' numbers and
/// the active file are read under the writers' lock (shared: no batch or
/// rotation is half done, and writers wait only that long); the rotated
/// files, which never change once rotated, after it. If the retention
/// deletes one of them in between, the check starts again from a new
/// snapshot (a file deleted by hand is missing from the listing itself,
/// and reported as such).
pub fn verify(log: &Path, state_dir: &Path) -> std::result::Result<Report, String> {
    consistently(log, state_dir, check_snapshot)
}

/// Every line the trail keeps, oldest file first, parsed (not checked:
/// that is [`verify`]'s), read as one view of the trail the way
/// [`verify`] reads it: what the records' check compares the store with.
pub fn kept_lines(log: &Path, state_dir: &Path) -> std::result::Result<Vec<Value>, String> {
    consistently(log, state_dir, |log, snap| {
        let mut lines = Vec::new();
        for n in &snap.rotated {
            let bytes = read_rotated(&rotated_path(log, *n))?;
            parse_lines(&bytes, &mut lines);
        }
        parse_lines(&snap.active, &mut lines);
        Ok(lines)
    })
}

fn parse_lines(bytes: &[u8], into: &mut Vec<Value>) {
    into.extend(
        String::from_utf8_lossy(bytes)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok()),
    );
}

/// Runs `read` over a snapshot of the trail, again over a new one if the
/// retention deleted a listed file before it was read (at most five
/// times).
fn consistently<T>(
    log: &Path,
    state_dir: &Path,
    read: impl Fn(&Path, &Snapshot) -> std::result::Result<T, Stop>,
) -> std::result::Result<T, String> {
    const TRIES: u32 = 5;
    let mut tries = 1;
    loop {
        match read(log, &Snapshot::take(log, state_dir)?) {
            Err(Stop::Vanished(path)) if tries < TRIES => {
                crate::log::debug!(
                    "audit trail: {} was deleted by the retention while read; reading again",
                    path.display()
                );
                tries += 1;
            }
            Err(Stop::Vanished(path)) => {
                return Err(format!(
                    "{} was deleted while it was read, {TRIES} times in a row",
                    path.display()
                ))
            }
            Err(Stop::Broken(e)) => return Err(e),
            Ok(r) => return Ok(r),
        }
    }
}

/// What the check reads under the writers' lock.
pub(super) struct Snapshot {
    head: Option<Head>,
    pub(super) rotated: Vec<u64>,
    active: Vec<u8>,
}

impl Snapshot {
    pub(super) fn take(log: &Path, state_dir: &Path) -> std::result::Result<Snapshot, String> {
        // Without the lock (no writer ever made it, or it cannot be
        // opened) the check still runs: a concurrent write may then be
        // reported as damage.
        let _lock = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(state_dir.join(LOCK_FILE))
            .ok()
            .and_then(|f| Flock::lock(f, FlockArg::LockShared).ok());
        Ok(Snapshot {
            head: read_head(state_dir),
            rotated: rotated_numbers(log)
                .map_err(|e| format!("cannot list the rotated files: {e}"))?,
            active: read_nofollow(log)
                .map_err(|e| format!("cannot read {}: {e}", log.display()))?,
        })
    }
}

/// Why a check of a snapshot stopped.
pub(super) enum Stop {
    /// The chain is broken here, so.
    Broken(String),
    /// A listed rotated file was deleted before it was read.
    Vanished(PathBuf),
}

impl From<String> for Stop {
    fn from(e: String) -> Stop {
        Stop::Broken(e)
    }
}

/// A rotated file, listed in the snapshot: `Vanished` if it is gone.
fn read_rotated(path: &Path) -> std::result::Result<Vec<u8>, Stop> {
    match read_if_present(path) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(Stop::Vanished(path.to_path_buf())),
        Err(e) => Err(format!("cannot read {}: {e}", path.display()).into()),
    }
}

/// The chain over the snapshot's files.
pub(super) fn check_snapshot(log: &Path, snap: &Snapshot) -> std::result::Result<Report, Stop> {
    let head = snap.head.as_ref();
    let rotated = &snap.rotated;
    let files = rotated.last().copied().unwrap_or(0);
    let first_file = rotated.first().copied().unwrap_or(1);
    for (i, n) in rotated.iter().enumerate() {
        let want = i as u64 + first_file;
        if *n != want {
            return Err(Stop::Broken(format!(
                "{} is missing (deleted or renamed): the files run {}",
                rotated_path(log, want).display(),
                rotated
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let mut prev = GENESIS.to_owned();
    let mut last_seq = 0u64;
    let mut entries = 0u64;
    let mut prev_file_entries = 0u64;
    let mut warnings = Vec::new();
    // Files before the first kept one: the chain starts at its checkpoint,
    // which a `retention` line must vouch for (checked after the walk).
    let mut anchor: Option<(u64, String, u64)> = None;
    if first_file > 1 {
        let path = rotated_path(log, first_file);
        let bytes = read_rotated(&path)?;
        let text = String::from_utf8_lossy(&bytes);
        let first = text.lines().next().unwrap_or_default();
        let cp = check_line(first, None).map_err(|e| format!("{} line 1: {e}", path.display()))?;
        let entries_before = cp
            .body
            .get("previous_file_entries")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        prev = cp
            .body
            .get("prev")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        last_seq = cp.seq.saturating_sub(1);
        prev_file_entries = entries_before;
        anchor = Some((first_file - 1, prev.clone(), entries_before));
    }
    let mut retained: Vec<(u64, String, u64)> = Vec::new();
    let order = (first_file.min(files + 1)..=files)
        .map(|n| (n, rotated_path(log, n)))
        .chain(std::iter::once((files + 1, log.to_path_buf())));
    for (index, path) in order {
        let active = index == files + 1;
        let rotated_bytes;
        let bytes: &[u8] = if active {
            &snap.active
        } else {
            rotated_bytes = read_rotated(&path)?;
            &rotated_bytes
        };
        let text = std::str::from_utf8(bytes)
            .map_err(|_| format!("{}: not UTF-8 text (damaged or edited)", path.display()))?;
        let at = |n: usize| format!("{} line {n}", path.display());
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(format!(
                "{}: the last line is torn (an interrupted write; the helper truncates it when it next starts)",
                at(text.lines().count())
            ).into());
        }
        if text.is_empty() && !active {
            return Err(format!("{} is empty (its entries were removed)", path.display()).into());
        }
        let mut in_file = 0u64;
        for (i, l) in text.lines().enumerate() {
            let n = i + 1;
            let line = check_line(l, Some((last_seq + 1, prev.as_str())))
                .map_err(|e| format!("{}: {e}", at(n)))?;
            let event = line.body.get("event").and_then(Value::as_str);
            if n == 1 && index > 1 {
                if event != Some("checkpoint") {
                    return Err(format!(
                        "{}: not a checkpoint (the first line of a rotated-into file was removed)",
                        at(n)
                    )
                    .into());
                }
                if line.body.get("file").and_then(Value::as_u64) != Some(index) {
                    return Err(format!(
                        "{}: the checkpoint of file {:?}, not of this one (files renamed or reordered)",
                        at(n),
                        line.body.get("file")
                    ).into());
                }
                if line
                    .body
                    .get("previous_file_entries")
                    .and_then(Value::as_u64)
                    != Some(prev_file_entries)
                {
                    return Err(format!(
                        "{}: the checkpoint counts {:?} entries in the previous file, which has {prev_file_entries}",
                        at(n),
                        line.body.get("previous_file_entries")
                    ).into());
                }
            } else if event == Some("checkpoint") {
                return Err(format!(
                    "{}: a checkpoint inside a file (files joined or lines moved)",
                    at(n)
                )
                .into());
            }
            if event == Some("retention") {
                if let (Some(file), Some(hash), Some(count)) = (
                    line.body.get("file").and_then(Value::as_u64),
                    line.body.get("last_hash").and_then(Value::as_str),
                    line.body.get("entries").and_then(Value::as_u64),
                ) {
                    retained.push((file, hash.to_owned(), count));
                }
            }
            if event == Some("recover") {
                if let (Some(from), Some(to)) = (
                    line.body.get("lost_from").and_then(Value::as_u64),
                    line.body.get("lost_to").and_then(Value::as_u64),
                ) {
                    warnings.push(format!(
                        "{}: entries {from} to {to} are missing (the head recorded them; lost in a crash, or cut) — compare with the system log's copy",
                        at(n)
                    ));
                }
                if line.body.get("head_missing").and_then(Value::as_bool) == Some(true) {
                    warnings.push(format!(
                        "{}: the head was missing when the helper started; a cut tail before this line cannot be ruled out",
                        at(n)
                    ));
                }
            }
            prev = line.hash;
            last_seq = line.seq;
            entries += 1;
            in_file += 1;
        }
        prev_file_entries = in_file;
    }
    if let Some((file, hash, count)) = &anchor {
        if !retained
            .iter()
            .any(|(f, h, c)| f == file && h == hash && c == count)
        {
            return Err(format!(
                "{} is missing and no retention line in the kept files records its deletion \
                 with the last hash and entries {}'s checkpoint names: deleted or renamed by hand",
                rotated_path(log, *file).display(),
                rotated_path(log, file + 1).display()
            )
            .into());
        }
    }
    match head {
        None if entries == 0 => {}
        None => {
            return Err(format!("{entries} entries but no head file: the head was deleted").into())
        }
        Some(h) => {
            if h.seq < last_seq {
                return Err(format!(
                    "the head records entry {} but the log goes on to entry {last_seq}: a crash between a write and its head (the helper moves the head forward when it next starts), or lines added by hand",
                    h.seq
                ).into());
            }
            if h.seq != last_seq || h.hash != prev {
                return Err(format!(
                    "the log ends at entry {last_seq} but the head records entry {}: the tail was cut off or replaced",
                    h.seq
                ).into());
            }
            if h.files.is_some_and(|f| f != files) {
                return Err(format!(
                    "the head records {} rotated files, there are {files}: files were removed or added",
                    h.files.unwrap_or(0)
                ).into());
            }
        }
    }
    Ok(Report {
        entries,
        files: files + 2 - first_file.min(files + 1),
        warnings,
        first_file,
    })
}
