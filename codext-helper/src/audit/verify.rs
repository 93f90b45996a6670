//! [`verify`]: the whole chain checked across every file, against the
//! head.

use super::{check_line, read_head, read_nofollow, rotated_numbers, rotated_path, GENESIS};
use serde_json::Value;
use std::path::Path;

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
}

/// Checks the whole chain, across every rotated file and the active one,
/// against the head. Returns what it checked, or where the chain breaks
/// (file and line) and how.
pub fn verify(log: &Path, state_dir: &Path) -> std::result::Result<Report, String> {
    let head = read_head(state_dir);
    let rotated =
        rotated_numbers(log).map_err(|e| format!("cannot list the rotated files: {e}"))?;
    let files = rotated.last().copied().unwrap_or(0);
    for (i, n) in rotated.iter().enumerate() {
        let want = i as u64 + 1;
        if *n != want {
            return Err(format!(
                "{} is missing (deleted or renamed): the files run {}",
                rotated_path(log, want).display(),
                rotated
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let mut prev = GENESIS.to_owned();
    let mut last_seq = 0u64;
    let mut entries = 0u64;
    let mut prev_file_entries = 0u64;
    let mut warnings = Vec::new();
    let order = (1..=files)
        .map(|n| (n, rotated_path(log, n)))
        .chain(std::iter::once((files + 1, log.to_path_buf())));
    for (index, path) in order {
        let active = index == files + 1;
        let bytes =
            read_nofollow(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("{}: not UTF-8 text (damaged or edited)", path.display()))?;
        let at = |n: usize| format!("{} line {n}", path.display());
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(format!(
                "{}: the last line is torn (an interrupted write; the helper truncates it when it next starts)",
                at(text.lines().count())
            ));
        }
        if text.is_empty() && !active {
            return Err(format!(
                "{} is empty (its entries were removed)",
                path.display()
            ));
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
                    ));
                }
                if line.body.get("file").and_then(Value::as_u64) != Some(index) {
                    return Err(format!(
                        "{}: the checkpoint of file {:?}, not of this one (files renamed or reordered)",
                        at(n),
                        line.body.get("file")
                    ));
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
                    ));
                }
            } else if event == Some("checkpoint") {
                return Err(format!(
                    "{}: a checkpoint inside a file (files joined or lines moved)",
                    at(n)
                ));
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
    match head {
        None if entries == 0 => {}
        None => {
            return Err(format!(
                "{entries} entries but no head file: the head was deleted"
            ))
        }
        Some(h) => {
            if h.seq < last_seq {
                return Err(format!(
                    "the head records entry {} but the log goes on to entry {last_seq}: a crash between a write and its head (the helper moves the head forward when it next starts), or lines added by hand",
                    h.seq
                ));
            }
            if h.seq != last_seq || h.hash != prev {
                return Err(format!(
                    "the log ends at entry {last_seq} but the head records entry {}: the tail was cut off or replaced",
                    h.seq
                ));
            }
            if h.files.is_some_and(|f| f != files) {
                return Err(format!(
                    "the head records {} rotated files, there are {files}: files were removed or added",
                    h.files.unwrap_or(0)
                ));
            }
        }
    }
    Ok(Report {
        entries,
        files: files + 1,
        warnings,
    })
}
