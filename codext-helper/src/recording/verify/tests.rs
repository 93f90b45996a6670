//! `audit verify` while the helper seals and expires records: the view it
//! takes is never half a seal or half an expiry.

use super::verify;
use crate::audit::AuditEvent;
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

type Verdict = (usize, Vec<String>);

#[test]
fn given_verify_started_between_a_seals_rename_and_its_audit_line_then_it_waits_and_finds_the_record_intact(
) {
    let root = tmp("mid-seal");
    let (dir, trail_path) = (root.join("recordings"), root.join("audit.log"));
    let trail = open_trail(&trail_path);
    let verdict: Arc<Mutex<Option<Receiver<Verdict>>>> = Arc::default();
    let (t, v, d, tp) = (
        trail.clone(),
        verdict.clone(),
        dir.clone(),
        trail_path.clone(),
    );
    let s = RecordStore::open(
        &dir,
        &cfg(64 << 10),
        Box::new(move |e| {
            if matches!(e, AuditEvent::Record { .. }) {
                // The record is renamed `.rec`, its line not yet written:
                // a verify started now must not take its view yet.
                let (tx, rx) = mpsc::channel();
                let (d, tp) = (d.clone(), tp.clone());
                std::thread::spawn(move || {
                    let _ = tx.send(verify(&tp, &d));
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
    let (checked, problems) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!((checked, problems), (1, Vec::<String>::new()));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn given_records_sealed_and_expired_while_verify_runs_again_and_again_then_it_never_reports_a_problem(
) {
    let root = tmp("busy");
    let (dir, trail_path) = (root.join("recordings"), root.join("audit.log"));
    let trail = open_trail(&trail_path);
    let t = trail.clone();
    // Room for a few records beside an open one's reservation: every new
    // record expires the oldest.
    let mut c = cfg(16 << 10);
    c.store_bytes = c.reservation() + 20_000;
    let s = RecordStore::open(&dir, &c, Box::new(move |e| append(&t, e))).unwrap();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (d, tp) = (dir.clone(), trail_path.clone());
    let checker = std::thread::spawn(move || {
        let mut runs = 0u32;
        let mut seen = Vec::new();
        while stop_rx.try_recv().is_err() {
            let (_, problems) = verify(&tp, &d);
            seen.extend(problems);
            runs += 1;
        }
        (runs, seen)
    });
    for i in 0..200u32 {
        record(&s, &format!("{:010}", 1_000_000 + i), 200);
    }
    stop_tx.send(()).unwrap();
    let (runs, problems) = checker.join().unwrap();
    assert!(
        problems.is_empty(),
        "{} problems over {runs} runs, the first: {:?}",
        problems.len(),
        problems.first()
    );
    assert!(runs > 10, "verify ran {runs} times only");
    let (checked, problems) = verify(&trail_path, &dir);
    assert!(problems.is_empty(), "{problems:?}");
    let trail = std::fs::read_to_string(&trail_path).unwrap();
    let expired = trail.matches(r#""event":"record_expire""#).count();
    assert!(expired > 150, "{expired} records expired");
    assert_eq!(checked, 200 - expired);
    let _ = std::fs::remove_dir_all(&root);
}
