//! `audit verify` while the helper seals and expires records: the view it
//! takes is never half a seal or half an expiry.

use super::{verify, Found};
use crate::audit::AuditEvent;
use crate::config::Recording;
use crate::recording::store::tests::{cfg, meta};
use crate::recording::store::RecordStore;
use codext_record::proto::{Exit, Stream};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("codext-verify-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Appends `e` to the trail as the audit writer does (the chain's own
/// fields left out: this check reads only the records' lines).
fn append(trail: &Mutex<File>, e: AuditEvent) {
    let (name, fields) = e.into_parts();
    let mut line = fields;
    line["event"] = name.into();
    writeln!(trail.lock().unwrap(), "{line}").unwrap();
}

fn open_trail(path: &Path) -> Arc<Mutex<File>> {
    Arc::new(Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap(),
    ))
}

/// A scratch folder holding a store (`recordings`) whose audit lines go
/// to a trail (`audit.log`): (folder, store, trail, the store).
fn store_with_trail(name: &str, c: &Recording) -> (PathBuf, PathBuf, PathBuf, RecordStore) {
    let root = tmp(name);
    let (dir, trail_path) = (root.join("recordings"), root.join("audit.log"));
    let trail = open_trail(&trail_path);
    let s = RecordStore::open(&dir, c, Box::new(move |e| append(&trail, e))).unwrap();
    (root, dir, trail_path, s)
}

/// One record, sealed: `n` lines of output.
fn record(s: &RecordStore, session: &str, n: u32) {
    let mut w = s
        .begin(meta(session, "command"), 0, 0, "", "/bin/bash")
        .unwrap();
    for i in 0..n {
        w.data(
            Stream::Out,
            u64::from(i) * 1000,
            format!("line {i}\n").as_bytes(),
        )
        .unwrap();
    }
    s.finish(w, Some(Exit::Code(0)), None).unwrap();
}

#[test]
fn given_verify_started_between_a_seals_rename_and_its_audit_line_then_it_waits_and_finds_the_record_intact(
) {
    let root = tmp("mid-seal");
    let (dir, trail_path) = (root.join("recordings"), root.join("audit.log"));
    let trail = open_trail(&trail_path);
    let verdict: Arc<Mutex<Option<Receiver<Found>>>> = Arc::default();
    let (t, v, d, tp, sd) = (
        trail.clone(),
        verdict.clone(),
        dir.clone(),
        trail_path.clone(),
        root.clone(),
    );
    let s = RecordStore::open(
        &dir,
        &cfg(64 << 10),
        Box::new(move |e| {
            if matches!(e, AuditEvent::Record { .. }) {
                // The record is renamed `.rec`, its line not yet written:
                // a verify started now must not take its view yet.
                let (tx, rx) = mpsc::channel();
                let (d, tp, sd) = (d.clone(), tp.clone(), sd.clone());
                std::thread::spawn(move || {
                    let _ = tx.send(verify(&tp, &sd, &d));
                });
                match rx.recv_timeout(Duration::from_millis(300)) {
                    Err(RecvTimeoutError::Timeout) => {}
                    got => panic!("verify ran in the middle of a seal: {got:?}"),
                }
                *v.lock().unwrap() = Some(rx);
            }
            append(&t, e);
        }),
    )
    .unwrap();
    record(&s, "0123456789", 100);
    let rx = verdict.lock().unwrap().take().expect("the seal was logged");
    let found = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        found,
        Found {
            checked: 1,
            ..Found::default()
        }
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn given_records_sealed_and_expired_while_verify_runs_again_and_again_then_it_never_reports_a_problem(
) {
    // Room for a few records beside an open one's reservation: every new
    // record expires the oldest.
    let mut c = cfg(16 << 10);
    c.store_bytes = c.reservation() + 20_000;
    let (root, dir, trail_path, s) = store_with_trail("busy", &c);
    let (d, tp, sd) = (dir.clone(), trail_path.clone(), root.clone());
    crate::testing::assert_never_reports_while(
        move || {
            let found = verify(&tp, &sd, &d);
            found.problems.into_iter().chain(found.unchecked).collect()
        },
        || {
            for i in 0..200u32 {
                record(&s, &format!("{:010}", 1_000_000 + i), 200);
            }
        },
    );
    let found = verify(&trail_path, &root, &dir);
    assert!(found.problems.is_empty(), "{found:?}");
    let trail = std::fs::read_to_string(&trail_path).unwrap();
    let expired = trail.matches(r#""event":"record_expire""#).count();
    assert!(expired > 150, "{expired} records expired");
    assert_eq!(found.checked, 200 - expired);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn given_records_older_than_the_trails_oldest_kept_line_then_they_are_unchecked_and_a_newer_unknown_one_is_planted(
) {
    let (root, dir, trail_path, s) = store_with_trail("retained", &cfg(16 << 10));
    record(&s, "00000000aa", 10);
    record(&s, "00000000bb", 10);
    // The audit retention deleted the files that held both records' lines:
    // the oldest kept line is a later file's checkpoint, written after the
    // first record and before the second.
    let old = dir.join("00000000aa.1.rec");
    let new = dir.join("00000000bb.1.rec");
    let at = |path: &Path, secs: u64| {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    };
    at(&old, 1_700_000_000);
    at(&new, 1_700_000_200);
    let checkpoint = serde_json::json!({
        "event": "checkpoint",
        "file": 7,
        "time": codext_core::time::rfc3339(1_700_000_100),
    });
    std::fs::write(&trail_path, format!("{checkpoint}\n")).unwrap();
    let found = verify(&trail_path, &root, &dir);
    assert_eq!(found.checked, 0);
    assert_eq!(found.unchecked.len(), 1, "{found:?}");
    assert!(
        found.unchecked[0].contains("00000000aa.1.rec")
            && found.unchecked[0].contains("went with the retention"),
        "{found:?}"
    );
    assert_eq!(found.problems.len(), 1, "{found:?}");
    assert!(
        found.problems[0].contains("00000000bb.1.rec") && found.problems[0].contains("planted"),
        "{found:?}"
    );
    // Without a retention (the oldest kept line is the first file's), no
    // unknown record is excused, however old.
    std::fs::write(&trail_path, "").unwrap();
    let found = verify(&trail_path, &root, &dir);
    assert!(found.unchecked.is_empty(), "{found:?}");
    assert_eq!(found.problems.len(), 2, "{found:?}");
    let _ = std::fs::remove_dir_all(&root);
}
