//! The chain, rotation, tampering across files, the crash states a
//! crash can leave, group commit, strangers' summaries and the system-log
//! copy — all in temporary folders, no root needed.

use super::*;
use nix::fcntl::{Flock, FlockArg};
use serde_json::json;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

static N: AtomicUsize = AtomicUsize::new(0);

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "codext-audit-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn cfg(rotate_bytes: u64) -> AuditConfig {
    AuditConfig {
        rotate_bytes,
        system_log: false,
        ..AuditConfig::default()
    }
}

fn log_of(dir: &Path) -> PathBuf {
    dir.join("log/audit.jsonl")
}

fn open(dir: &Path, c: &AuditConfig) -> Audit {
    Audit::build(&log_of(dir), dir, c, None)
}

fn event(a: &Audit, i: usize) {
    a.record(
        "issue",
        json!({"user": format!("user-{i:012x}"), "padding": "x".repeat(100)}),
    )
    .unwrap();
}

fn setup(tag: &str) -> (PathBuf, Audit) {
    let dir = scratch(tag);
    let a = open(&dir, &cfg(16 << 20));
    for i in 0..5 {
        event(&a, i);
    }
    (dir, a)
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn lines(dir: &Path) -> Vec<String> {
    lines_of(&log_of(dir))
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

fn check(dir: &Path) -> std::result::Result<Report, String> {
    verify(&log_of(dir), dir)
}

fn events(dir: &Path) -> Vec<Value> {
    lines(dir)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A trail rotated into at least `files` rotated files.
fn rotated(tag: &str, files: u64) -> (PathBuf, Audit) {
    let dir = scratch(tag);
    let a = open(&dir, &cfg(4096));
    let mut i = 0;
    while rotated_numbers(&log_of(&dir)).unwrap().len() < files as usize {
        event(&a, i);
        i += 1;
    }
    event(&a, i);
    (dir, a)
}

#[test]
fn given_intact_log_then_verifies() {
    let (dir, _) = setup("ok");
    assert_eq!(
        check(&dir),
        Ok(Report {
            entries: 5,
            files: 1,
            warnings: vec![],
            first_file: 1,
        })
    );
}

#[test]
fn given_edited_line_then_detected() {
    let (dir, _) = setup("edit");
    let mut l = lines(&dir);
    l[2] = l[2].replace("user-000000000002", "user-00000000000f");
    write_lines(&log_of(&dir), &l);
    let err = check(&dir).unwrap_err();
    assert!(err.contains("line 3") && err.contains("edited"), "{err}");
}

#[test]
fn given_deleted_line_then_detected() {
    let (dir, _) = setup("delete");
    let mut l = lines(&dir);
    l.remove(1);
    write_lines(&log_of(&dir), &l);
    let err = check(&dir).unwrap_err();
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn given_reordered_lines_then_detected() {
    let (dir, _) = setup("reorder");
    let mut l = lines(&dir);
    l.swap(1, 3);
    write_lines(&log_of(&dir), &l);
    assert!(check(&dir).unwrap_err().contains("line 2"));
}

#[test]
fn given_cut_tail_then_detected_by_head() {
    let (dir, _) = setup("cut");
    let mut l = lines(&dir);
    l.truncate(3);
    write_lines(&log_of(&dir), &l);
    let err = check(&dir).unwrap_err();
    assert!(err.contains("tail"), "{err}");
}

#[test]
fn given_deleted_head_then_detected() {
    let (dir, _) = setup("nohead");
    std::fs::remove_file(dir.join(HEAD_FILE)).unwrap();
    assert!(check(&dir).unwrap_err().contains("head"));
}

#[test]
fn given_rotation_by_size_across_three_files_then_every_file_starts_with_a_checkpoint_and_all_verify(
) {
    let (dir, a) = rotated("rotate", 3);
    let log = log_of(&dir);
    let report = check(&dir).unwrap();
    assert_eq!(report.files, 4);
    assert!(report.warnings.is_empty());
    let mut total = 0;
    let mut prev_count = 0;
    for n in 1..=4u64 {
        let path = if n == 4 {
            log.clone()
        } else {
            rotated_path(&log, n)
        };
        let l = lines_of(&path);
        let first: Value = serde_json::from_str(&l[0]).unwrap();
        if n > 1 {
            assert_eq!(first["event"], "checkpoint", "{}", path.display());
            assert_eq!(first["file"], n);
            assert_eq!(first["previous_file_entries"], prev_count);
            assert_eq!(first["previous_hash"], first["prev"]);
        }
        // A file rotates at the first batch past the size.
        if n < 4 {
            assert!(std::fs::metadata(&path).unwrap().len() >= 4096);
        }
        prev_count = l.len() as u64;
        total += l.len() as u64;
    }
    assert_eq!(report.entries, total);
    // The chain goes on in the active file after a restart.
    drop(a);
    let b = open(&dir, &cfg(4096));
    event(&b, 999);
    assert_eq!(check(&dir).unwrap().entries, total + 1);
}

#[test]
fn given_an_old_active_file_then_it_rotates_by_age() {
    let (dir, a) = setup("age");
    // The head records when the active file was started: make it old.
    let head = read_head(&dir).unwrap();
    let old = Tail {
        next_seq: head.seq + 1,
        prev: head.hash,
        files: 0,
        size: head.size.unwrap(),
        lines: head.lines,
        started: time::now() - 31 * 24 * 3600,
        prev_file_lines: 0,
    };
    a.write_head(&old).unwrap();
    event(&a, 5);
    assert_eq!(lines_of(&rotated_path(&log_of(&dir), 1)).len(), 5);
    let l = events(&dir);
    assert_eq!(l.len(), 2);
    assert_eq!(l[0]["event"], "checkpoint");
    assert_eq!(check(&dir).unwrap().entries, 7);
}

#[test]
fn given_a_rotated_file_edited_even_with_its_hash_recomputed_then_the_next_checkpoint_catches_it() {
    let (dir, _) = rotated("forge", 3);
    let log = log_of(&dir);
    let first = rotated_path(&log, 1);
    let mut l = lines_of(&first);
    let last = l.len() - 1;
    // Rewrite the last line of file 1 and recompute its hash properly.
    let Value::Object(mut body) = serde_json::from_str::<Value>(&l[last]).unwrap() else {
        panic!()
    };
    body.remove("hash");
    body.insert("user".into(), "user-ffffffffffff".into());
    let prev = body["prev"].as_str().unwrap().to_owned();
    let hash = line_hash(&prev, &body);
    body.insert("hash".into(), hash.into());
    l[last] = Value::Object(body).to_string();
    write_lines(&first, &l);
    let err = check(&dir).unwrap_err();
    assert!(
        err.contains("audit.jsonl.2 line 1") && err.contains("does not follow"),
        "{err}"
    );
    // A plain edit is caught in the file itself.
    l[1] = l[1].replace("user-", "user-0");
    write_lines(&first, &l);
    let err = check(&dir).unwrap_err();
    assert!(
        err.contains("audit.jsonl.1 line 2") && err.contains("edited"),
        "{err}"
    );
}

#[test]
fn given_an_edited_checkpoint_then_detected_in_that_file() {
    let (dir, _) = rotated("editcp", 3);
    let p = rotated_path(&log_of(&dir), 2);
    let mut l = lines_of(&p);
    l[0] = l[0].replace("\"previous_file_entries\":", "\"previous_file_entries\":1");
    write_lines(&p, &l);
    let err = check(&dir).unwrap_err();
    assert!(
        err.contains("audit.jsonl.2 line 1") && err.contains("edited"),
        "{err}"
    );
}

#[test]
fn given_a_deleted_rotated_file_then_detected() {
    let (dir, _) = rotated("delfile", 3);
    std::fs::remove_file(rotated_path(&log_of(&dir), 2)).unwrap();
    let err = check(&dir).unwrap_err();
    assert!(err.contains("audit.jsonl.2 is missing"), "{err}");
}

#[test]
fn given_the_last_rotated_file_deleted_then_the_head_catches_it() {
    let (dir, _) = rotated("dellast", 3);
    let log = log_of(&dir);
    // Drop file 3 and make the active file's checkpoint the next one's
    // successor: the chain breaks at the active file's first line.
    std::fs::remove_file(rotated_path(&log, 3)).unwrap();
    let err = check(&dir).unwrap_err();
    assert!(err.contains("audit.jsonl line 1"), "{err}");
    // Deleting the active file too leaves a clean-looking chain of two
    // files: the head still knows better.
    std::fs::remove_file(&log).unwrap();
    let err = check(&dir).unwrap_err();
    assert!(
        err.contains("tail") || err.contains("rotated files"),
        "{err}"
    );
}

#[test]
fn given_reordered_rotated_files_then_detected() {
    let (dir, _) = rotated("reorderfiles", 3);
    let log = log_of(&dir);
    let tmp = dir.join("swap");
    std::fs::rename(rotated_path(&log, 2), &tmp).unwrap();
    std::fs::rename(rotated_path(&log, 3), rotated_path(&log, 2)).unwrap();
    std::fs::rename(&tmp, rotated_path(&log, 3)).unwrap();
    let err = check(&dir).unwrap_err();
    assert!(err.contains("audit.jsonl.2 line 1"), "{err}");
}

#[test]
fn given_a_cut_checkpoint_then_detected() {
    let (dir, _) = rotated("cutcp", 3);
    let p = rotated_path(&log_of(&dir), 3);
    let mut l = lines_of(&p);
    l.remove(0);
    write_lines(&p, &l);
    let err = check(&dir).unwrap_err();
    assert!(err.contains("audit.jsonl.3 line 1"), "{err}");
}

#[test]
fn given_a_line_written_but_the_head_left_old_then_the_next_start_moves_the_head_forward() {
    let (dir, a) = setup("headold");
    let old_head = std::fs::read(dir.join(HEAD_FILE)).unwrap();
    event(&a, 5);
    event(&a, 6);
    // The crash: lines durable, head not yet replaced.
    std::fs::write(dir.join(HEAD_FILE), &old_head).unwrap();
    drop(a);
    let err = check(&dir).unwrap_err();
    assert!(err.contains("crash"), "{err}");
    let b = open(&dir, &cfg(16 << 20));
    b.check().unwrap();
    let l = events(&dir);
    assert_eq!(l.len(), 8);
    assert_eq!(l[7]["event"], "recover");
    assert_eq!(l[7]["seq"], 8);
    assert!(l[7]["what"].as_str().unwrap().contains("head lagged"));
    assert_eq!(check(&dir).unwrap().warnings, Vec::<String>::new());
    // And no sequence number is reused by the next line.
    event(&b, 7);
    assert_eq!(events(&dir)[8]["seq"], 9);
    assert_eq!(check(&dir).unwrap().entries, 9);
}

#[test]
fn given_a_torn_last_line_then_the_next_append_truncates_it_and_records_it() {
    let (dir, a) = setup("torn");
    drop(a);
    let mut f = OpenOptions::new().append(true).open(log_of(&dir)).unwrap();
    let torn = br#"{"event":"verify","prev":"ab"#;
    f.write_all(torn).unwrap();
    drop(f);
    let err = check(&dir).unwrap_err();
    assert!(err.contains("torn"), "{err}");
    // At append time (no start-up check first).
    let b = open(&dir, &cfg(16 << 20));
    event(&b, 5);
    let l = events(&dir);
    assert_eq!(l.len(), 7);
    assert_eq!(l[5]["event"], "recover");
    assert!(l[5]["what"].as_str().unwrap().contains("torn"));
    assert_eq!(l[5]["bytes"], torn.len());
    assert_eq!(l[6]["user"], "user-000000000005");
    assert_eq!(check(&dir).unwrap().entries, 7);
}

#[test]
fn given_a_head_newer_than_the_log_then_the_loss_is_recorded_and_verify_warns() {
    let (dir, a) = setup("headnew");
    let log = std::fs::read(log_of(&dir)).unwrap();
    event(&a, 5);
    event(&a, 6);
    drop(a);
    // The log lost its last two lines (or someone cut them).
    std::fs::write(log_of(&dir), &log).unwrap();
    assert!(check(&dir).unwrap_err().contains("tail"));
    let b = open(&dir, &cfg(16 << 20));
    b.check().unwrap();
    let l = events(&dir);
    assert_eq!(l.len(), 6);
    assert_eq!(l[5]["event"], "recover");
    assert_eq!(
        (l[5]["lost_from"].clone(), l[5]["lost_to"].clone()),
        (json!(6), json!(7))
    );
    // Sequence numbers are never reused: what an outside copy holds for
    // 6 and 7 stays unambiguous.
    assert_eq!(l[5]["seq"], 8);
    let r = check(&dir).unwrap();
    assert_eq!(r.entries, 6);
    assert_eq!(r.warnings.len(), 1);
    assert!(
        r.warnings[0].contains("entries 6 to 7 are missing"),
        "{r:?}"
    );
    event(&b, 8);
    assert_eq!(check(&dir).unwrap().entries, 7);
}

#[test]
fn given_a_crash_in_the_middle_of_a_rotation_then_the_new_file_gets_its_checkpoint() {
    let (dir, a) = rotated("midrotate", 1);
    drop(a);
    let log = log_of(&dir);
    // Renamed into the next number, then the crash: no new active file,
    // the head still describes the old one.
    let n = rotated_numbers(&log).unwrap().len() as u64;
    std::fs::rename(&log, rotated_path(&log, n + 1)).unwrap();
    let b = open(&dir, &cfg(4096));
    b.check().unwrap();
    event(&b, 1000);
    let l = events(&dir);
    assert_eq!(l[0]["event"], "checkpoint");
    assert_eq!(l[0]["file"], n + 2);
    assert_eq!(l[1]["user"], "user-0000000003e8");
    let r = check(&dir).unwrap();
    assert_eq!(r.files, n + 2);
    assert!(r.warnings.is_empty());
}

#[test]
fn given_genuine_tampering_then_recovery_records_it_and_verify_still_reports_it() {
    let (dir, a) = setup("tamper");
    drop(a);
    let mut l = lines(&dir);
    // An edit of the same length is not even noticed at append time (only
    // the size is checked there): verify finds it.
    l[1] = l[1].replace("user-000000000001", "user-00000000000e");
    write_lines(&log_of(&dir), &l);
    let b = open(&dir, &cfg(16 << 20));
    event(&b, 5);
    assert_eq!(events(&dir).len(), 6);
    let err = check(&dir).unwrap_err();
    assert!(err.contains("line 2") && err.contains("edited"), "{err}");
    // One that changes the size makes the next start look, and say so.
    let mut l = lines(&dir);
    l[2] = l[2].replace("user-000000000002", "user-00000000000002");
    write_lines(&log_of(&dir), &l);
    let c = open(&dir, &cfg(16 << 20));
    c.check().unwrap();
    let e = events(&dir);
    assert_eq!(e[6]["event"], "recover");
    assert!(
        e[6]["what"].as_str().unwrap().contains("damaged"),
        "{}",
        e[6]
    );
    // New lines chain on from the head, and the damage stays visible.
    assert_eq!(e[6]["seq"], 7);
    let err = check(&dir).unwrap_err();
    assert!(err.contains("line 2") && err.contains("edited"), "{err}");
}

#[test]
fn given_a_deleted_head_then_it_is_re_derived_and_verify_warns() {
    let (dir, a) = setup("headgone");
    drop(a);
    std::fs::remove_file(dir.join(HEAD_FILE)).unwrap();
    let b = open(&dir, &cfg(16 << 20));
    b.check().unwrap();
    let r = check(&dir).unwrap();
    assert_eq!(r.entries, 6);
    assert_eq!(r.warnings.len(), 1);
    assert!(r.warnings[0].contains("head was missing"));
}

#[test]
fn given_a_consistent_trail_then_the_start_up_check_writes_nothing() {
    let (dir, a) = setup("clean");
    let before = std::fs::read(log_of(&dir)).unwrap();
    let fsyncs = a.fsyncs();
    open(&dir, &cfg(16 << 20)).check().unwrap();
    a.check().unwrap();
    assert_eq!(std::fs::read(log_of(&dir)).unwrap(), before);
    assert_eq!(a.fsyncs(), fsyncs);
}

#[test]
fn given_a_burst_of_writers_then_they_share_one_write_and_a_bounded_number_of_fsyncs() {
    let dir = scratch("group");
    let a = open(&dir, &cfg(16 << 20));
    event(&a, 0);
    let before = a.fsyncs();
    // Hold the trail's lock as another process would: the first writer
    // waits for it with its line; every other line queues behind it.
    let held = Flock::lock(
        File::create(dir.join(LOCK_FILE)).unwrap(),
        FlockArg::LockExclusive,
    )
    .unwrap();
    const WRITERS: usize = 16;
    let threads: Vec<_> = (0..WRITERS)
        .map(|i| {
            let a = a.clone();
            std::thread::spawn(move || event(&a, i + 1))
        })
        .collect();
    while lock(&a.inner.queue).pending.len() < WRITERS - 1 {
        std::thread::yield_now();
    }
    drop(held);
    for t in threads {
        t.join().unwrap();
    }
    // Two batches (the one that waited, then all the rest), each one
    // write, one fdatasync and the head's two.
    assert_eq!(a.fsyncs() - before, 6);
    assert_eq!(check(&dir).unwrap().entries, WRITERS as u64 + 1);
}

fn summaries(dir: &Path) -> Vec<Value> {
    events(dir)
        .into_iter()
        .filter(|e| e["event"] == "attempts_summary")
        .collect()
}

#[test]
fn given_many_strangers_from_one_and_from_many_sources_then_a_bounded_number_of_summary_lines_with_exact_counts(
) {
    let dir = scratch("strangers");
    let c = AuditConfig {
        summary_sources: 4,
        ..cfg(16 << 20)
    };
    let a = open(&dir, &c);
    for i in 0..1000u32 {
        a.stranger(Stranger::UnknownUser, &format!("user-{i:012x}"), "10.0.0.1")
            .unwrap();
        a.stranger(Stranger::RateLimited, "user-000000000000", "10.0.0.1")
            .unwrap();
        a.stranger(
            Stranger::UnknownUser,
            &format!("user-{i:012x}"),
            &format!("10.1.{}.{}", i / 256, i % 256),
        )
        .unwrap();
    }
    // A known name still gets its own line at once.
    a.record(
        "verify",
        json!({"user": "user-aaaaaaaaaaaa", "result": "wrong password"}),
    )
    .unwrap();
    assert!(summaries(&dir).is_empty());
    a.flush_summaries(time::now() + 61).unwrap();
    let s = summaries(&dir);
    // 4 sources of their own, one line for the other 997.
    assert_eq!(s.len(), 5);
    let one = s.iter().find(|e| e["source"] == "10.0.0.1").unwrap();
    assert_eq!(
        (one["unknown_user"].clone(), one["rate_limited"].clone()),
        (json!(1000), json!(1000))
    );
    let rest = s.iter().find(|e| e["source"].is_null()).unwrap();
    assert_eq!(rest["other_sources"], 997);
    let total: u64 = s
        .iter()
        .map(|e| e["unknown_user"].as_u64().unwrap() + e["rate_limited"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 3000);
    assert_eq!(events(&dir).len(), 6);
    // Nothing is due twice.
    a.flush_summaries(time::now() + 200).unwrap();
    assert_eq!(events(&dir).len(), 6);
    assert!(check(&dir).is_ok());
}

/// Parses journald's native protocol as journald does.
fn fields(mut d: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    while let Some(nl) = d.iter().position(|b| *b == b'\n') {
        let line = String::from_utf8_lossy(&d[..nl]).into_owned();
        d = &d[nl + 1..];
        if let Some((k, v)) = line.split_once('=') {
            out.insert(k.to_owned(), v.to_owned());
        } else {
            let len = u64::from_le_bytes(d[..8].try_into().unwrap()) as usize;
            let v = String::from_utf8_lossy(&d[8..8 + len]).into_owned();
            assert_eq!(d[8 + len], b'\n');
            d = &d[9 + len..];
            out.insert(line, v);
        }
    }
    assert!(d.is_empty());
    out
}

#[test]
fn given_a_journal_socket_then_every_line_goes_there_with_structured_fields_and_under_the_same_bounds(
) {
    let dir = scratch("journal");
    let journal = dir.join("journal.socket");
    let listener = UnixDatagram::bind(&journal).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let sys = SystemLog::open(&journal, &dir.join("no-dev-log"));
    let a = Audit::build(&log_of(&dir), &dir, &cfg(16 << 20), sys);
    a.record(
        "verify",
        json!({"user": "user-0123456789ab", "result": "ok", "source": "192.0.2.1\nforged=1"}),
    )
    .unwrap();
    let mut buf = vec![0u8; 65536];
    let n = listener.recv(&mut buf).unwrap();
    let f = fields(&buf[..n]);
    let line: Value = serde_json::from_str(&lines(&dir)[0]).unwrap();
    assert_eq!(f["CODEXT_EVENT"], "verify");
    assert_eq!(f["CODEXT_USER"], "user-0123456789ab");
    assert_eq!(f["CODEXT_RESULT"], "ok");
    assert_eq!(f["CODEXT_SEQ"], "1");
    assert_eq!(f["CODEXT_HASH"], line["hash"].as_str().unwrap());
    assert_eq!(f["SYSLOG_FACILITY"], "10");
    // A value with a newline is sent length-prefixed, not as a second field.
    assert!(!f.contains_key("forged"));
    assert_eq!(f["CODEXT_SOURCE"], "192.0.2.1\nforged=1");
    // Strangers: the system log gets exactly the summary lines.
    for i in 0..500u32 {
        a.stranger(
            Stranger::UnknownUser,
            "user-000000000001",
            &format!("10.2.0.{}", i % 50),
        )
        .unwrap();
    }
    // journald drains its queue as lines come; so does this reader, until
    // the logger has been quiet for a second.
    listener
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut copies = 0;
        while listener.recv(&mut buf).is_ok() {
            copies += 1;
        }
        copies
    });
    a.flush_summaries(time::now() + 61).unwrap();
    let copies = reader.join().unwrap();
    assert_eq!(copies, 17);
    assert_eq!(lines(&dir).len(), 1 + copies);
}

#[test]
fn given_no_journal_then_the_line_goes_to_syslog_as_authpriv() {
    let dir = scratch("syslog");
    let dev_log = dir.join("log.socket");
    let listener = UnixDatagram::bind(&dev_log).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let sys = SystemLog::open(&dir.join("no-journal"), &dev_log);
    let a = Audit::build(&log_of(&dir), &dir, &cfg(16 << 20), sys);
    a.record(
        "remove",
        json!({"user": "user-0123456789ab", "result": "ok"}),
    )
    .unwrap();
    let mut buf = vec![0u8; 65536];
    let n = listener.recv(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    // authpriv.info = 10 * 8 + 6.
    assert!(text.starts_with("<86>codext-helper["), "{text}");
    assert!(text.contains(r#"CODEXT_EVENT="remove""#), "{text}");
    assert!(
        text.contains(r#"CODEXT_USER="user-0123456789ab""#),
        "{text}"
    );
    assert!(text.contains("CODEXT_HASH=\""), "{text}");
}

#[test]
fn given_no_system_logger_then_recording_still_works() {
    let dir = scratch("nologger");
    let sys = SystemLog::open(&dir.join("a"), &dir.join("b"));
    let a = Audit::build(&log_of(&dir), &dir, &cfg(16 << 20), sys);
    event(&a, 1);
    assert_eq!(check(&dir).unwrap().entries, 1);
}

#[test]
fn given_a_stray_file_where_the_next_rotation_goes_then_it_is_not_overwritten_and_verify_reports_it(
) {
    let (dir, a) = rotated("stray", 1);
    let log = log_of(&dir);
    let next = rotated_numbers(&log).unwrap().len() as u64 + 1;
    std::fs::write(rotated_path(&log, next), b"not ours\n").unwrap();
    // Write until the active file rotates.
    let mut i = 5000;
    while rotated_numbers(&log).unwrap().len() < next as usize + 1 {
        event(&a, i);
        i += 1;
    }
    assert_eq!(
        std::fs::read(rotated_path(&log, next)).unwrap(),
        b"not ours\n"
    );
    let err = check(&dir).unwrap_err();
    assert!(err.contains(&format!("audit.jsonl.{next} line 1")), "{err}");
}

/// The retention's documented default (`[audit] retain_files`).
const DEFAULT_RETAIN_FILES: u64 = 24;

fn all_kept_events(dir: &Path) -> Vec<Value> {
    let log = log_of(dir);
    let mut files: Vec<PathBuf> = rotated_numbers(&log)
        .unwrap()
        .into_iter()
        .map(|n| rotated_path(&log, n))
        .collect();
    files.push(log);
    files
        .iter()
        .flat_map(|f| lines_of(f))
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect()
}

/// Rotated files are kept to a count (`[audit] retain_files`, 24 by
/// default) and an age: the oldest go first, each deletion is itself a
/// line of the chain written before the file goes, and `verify` checks
/// every kept file from the first kept one's checkpoint — which must be
/// the checkpoint a recorded deletion vouches for.
#[test]
fn given_more_rotated_files_than_the_retention_keeps_then_the_oldest_go_each_with_an_audit_line_and_verify_checks_the_rest(
) {
    let dir = scratch("retention");
    let a = open(&dir, &cfg(4096));
    let log = log_of(&dir);
    let (mut i, mut highest) = (0, 0);
    while highest < DEFAULT_RETAIN_FILES + 6 {
        event(&a, i);
        i += 1;
        highest = rotated_numbers(&log).unwrap().last().copied().unwrap_or(0);
    }
    event(&a, i);
    let kept = rotated_numbers(&log).unwrap();
    assert_eq!(
        kept,
        (highest - DEFAULT_RETAIN_FILES + 1..=highest).collect::<Vec<_>>(),
        "rotated files kept"
    );
    let deletions: Vec<Value> = all_kept_events(&dir)
        .into_iter()
        .filter(|e| e["event"] == "retention")
        .collect();
    assert_eq!(
        deletions.len() as u64,
        highest - DEFAULT_RETAIN_FILES,
        "{deletions:#?}"
    );
    for (n, d) in (1..).zip(&deletions) {
        assert_eq!(d["file"], n, "{d}");
        assert_eq!(d["reason"], "count", "{d}");
        assert!(d["entries"].as_u64().unwrap() > 0, "{d}");
        assert_eq!(d["last_hash"].as_str().map(str::len), Some(64), "{d}");
    }
    let report = check(&dir).unwrap();
    assert_eq!(report.entries, all_kept_events(&dir).len() as u64);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // A kept file deleted by hand is still caught: no deletion vouches for
    // the next file's checkpoint.
    std::fs::remove_file(rotated_path(&log, kept[0])).unwrap();
    let err = check(&dir).unwrap_err();
    assert!(err.contains(&format!("audit.jsonl.{}", kept[0])), "{err}");
}

#[test]
fn given_a_rotated_file_older_than_the_retention_age_then_it_goes_at_the_next_rotation() {
    let (dir, a) = rotated("retention-age", 3);
    let log = log_of(&dir);
    let two_years = std::time::SystemTime::now() - Duration::from_secs(2 * 366 * 24 * 3600);
    for n in [1, 2] {
        OpenOptions::new()
            .write(true)
            .open(rotated_path(&log, n))
            .unwrap()
            .set_modified(two_years)
            .unwrap();
    }
    let mut i = 1000;
    while rotated_numbers(&log).unwrap().last() == Some(&3) {
        event(&a, i);
        i += 1;
    }
    event(&a, i);
    assert_eq!(rotated_numbers(&log).unwrap(), vec![3, 4]);
    let reasons: Vec<Value> = all_kept_events(&dir)
        .into_iter()
        .filter(|e| e["event"] == "retention")
        .map(|e| json!([e["file"], e["reason"]]))
        .collect();
    assert_eq!(reasons, vec![json!([1, "age"]), json!([2, "age"])]);
    assert!(check(&dir).is_ok(), "{:?}", check(&dir));
}

#[test]
fn given_lines_written_and_files_rotated_while_verify_runs_again_and_again_then_it_never_reports_a_problem(
) {
    let dir = scratch("busy");
    // Small files, few kept: rotations and retention deletions all along.
    let a = open(
        &dir,
        &AuditConfig {
            retain_files: 3,
            ..cfg(4096)
        },
    );
    let d = dir.clone();
    crate::testing::assert_never_reports_while(
        move || check(&d).err().into_iter().collect(),
        || {
            for i in 0..2000 {
                event(&a, i);
            }
        },
    );
    let r = check(&dir).unwrap();
    assert!(
        r.first_file > 10,
        "the retention deleted files meanwhile: {r:?}"
    );
}

#[test]
fn given_the_retention_deleting_a_file_after_verify_listed_it_then_the_walk_starts_again_and_finds_no_damage(
) {
    let dir = scratch("vanished");
    let c = AuditConfig {
        retain_files: 3,
        ..cfg(4096)
    };
    let a = open(&dir, &c);
    let log = log_of(&dir);
    let mut i = 0;
    while rotated_numbers(&log).unwrap().len() < 3 {
        event(&a, i);
        i += 1;
    }
    // What verify listed; then the helper writes on until the retention
    // deletes the oldest listed file.
    let snap = Snapshot::take(&log, &dir).unwrap();
    let oldest = snap.rotated[0];
    while rotated_numbers(&log).unwrap().first() == Some(&oldest) {
        event(&a, i);
        i += 1;
    }
    match check_snapshot(&log, &snap) {
        Err(Stop::Vanished(p)) => assert_eq!(p, rotated_path(&log, oldest)),
        Err(Stop::Broken(e)) => panic!("reported as damage: {e}"),
        Ok(r) => panic!("a walk over a deleted file passed: {r:?}"),
    }
    let r = check(&dir).unwrap();
    assert!(r.first_file > oldest, "{r:?}");
}
