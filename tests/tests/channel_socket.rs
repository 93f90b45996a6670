//! The helper's channel socket against a compromised channel process:
//! `channel-probe`, run as the `codext-channel` user, sends what a
//! hostile channel could (unknown verbs, garbage, requests out of phase,
//! puzzles for keys not on the allow-list, answers for users that are not
//! this server's, 10,000 requests as fast as the socket takes them). Each
//! gets a clear refusal and the helper's state does not change.

use codext_tests::sandbox_test;
use codext_tests::world::{ids, World, WORK};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

const SOCKET: &str = "/run/codext-channel/helper.sock";
const HELLO: &str = r#"{"verb":"hello","version":1}"#;

fn world() -> World {
    let fp = std::fs::read_to_string(
        codext_tests::repo().join("docs/test-vectors/v1/agent.pub.fingerprint"),
    )
    .unwrap();
    World::with_config(&format!(
        "[digitalocean]\nenabled = true\ndroplet_id = 7\napi_url = \"http://127.0.0.1:9\"\nallowed_keys = [\"{}\"]\n\
         [limits]\nreaper_interval = \"1s\"\n[audit]\nsummary_window = \"1s\"\n",
        fp.trim()
    ))
}

/// Runs `channel-probe` as `uid`/`gid` with `lines` on stdin; its output
/// lines, one per reply.
fn probe_as(uid: u32, gid: u32, lines: &[String]) -> Vec<String> {
    codext_tests::world::wait_until(
        std::time::Duration::from_secs(10),
        "the channel socket",
        || std::path::Path::new(SOCKET).exists(),
    );
    let mut child = Command::new(format!("{WORK}/bin/channel-probe"))
        .arg(SOCKET)
        .uid(uid)
        .gid(gid)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for l in lines {
        // A probe that could not connect has exited: its stdin is closed.
        let _ = writeln!(stdin, "{l}");
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn probe(lines: &[&str]) -> Vec<String> {
    let (uid, gid) = ids("codext-channel");
    probe_as(
        uid,
        gid,
        &lines.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    )
}

/// What must not change: the state file and the userdb records.
fn snapshot() -> (Vec<u8>, Vec<String>) {
    let state = std::fs::read("/var/lib/codext/state.json").unwrap_or_default();
    let mut records: Vec<String> = std::fs::read_dir("/run/userdb")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    records.sort();
    (state, records)
}

fn refused(reply: &str, code: &str) -> bool {
    reply.contains(r#""reply":"refused""#) && reply.contains(&format!(r#""code":"{code}""#))
}

fn key_line(name: &str) -> String {
    std::fs::read_to_string(codext_tests::repo().join("docs/test-vectors/v1").join(name))
        .unwrap()
        .trim()
        .to_owned()
}

sandbox_test! {
    fn given_unknown_verb_garbage_or_out_of_phase_requests_then_each_refused_and_nothing_changes() {
        let w = world();
        let before = snapshot();
        let r = probe(&[
            r#"{"verb":"live"}"#,
            r#"{"verb":"hello","version":2}"#,
            HELLO,
            HELLO,
            r#"{"verb":"useradd","user":"root"}"#,
            "not json",
            r#"{"verb":"answer"}"#,
            r#"{"verb":"next","user":"x"}"#,
            r#"{"verb":"published","user":"user-0123456789ab","id":"00112233445566778899aabbccddeeff"}"#,
            r#"{"verb":"request","key":"ssh-rsa AAAA","name":"codext-x"}"#,
            r#"{"verb":"live"}"#,
        ]);
        eprintln!("{}", r.join("\n"));
        assert_eq!(r.len(), 11, "{r:?}");
        assert!(refused(&r[0], "out_of_phase") && r[0].contains("before hello"), "{}", r[0]);
        assert!(refused(&r[1], "version"), "{}", r[1]);
        assert!(r[2].contains(r#""reply":"hello""#) && r[2].contains(r#""droplet_id":7"#), "{}", r[2]);
        assert!(refused(&r[3], "out_of_phase"), "{}", r[3]);
        assert!(refused(&r[4], "unknown_verb") && r[4].contains("useradd"), "{}", r[4]);
        assert!(refused(&r[5], "malformed"), "{}", r[5]);
        assert!(refused(&r[6], "malformed"), "{}", r[6]);
        assert!(refused(&r[7], "malformed"), "{}", r[7]);
        assert!(refused(&r[8], "out_of_phase"), "{}", r[8]);
        assert!(refused(&r[9], "malformed"), "{}", r[9]);
        // The connection still works after all that.
        assert!(r[10].contains(r#""reply":"live""#), "{}", r[10]);
        assert_eq!(snapshot(), before);
        drop(w);
    }
}

sandbox_test! {
    fn given_puzzle_request_for_a_key_not_on_the_allow_list_then_refused_and_nothing_issued() {
        let w = world();
        let before = snapshot();
        let other = format!(r#"{{"verb":"request","key":"{}","name":"codext-other"}}"#, key_line("other-agent.pub"));
        let r = probe(&[HELLO, &other]);
        assert!(refused(&r[1], "not_allowed"), "{r:?}");
        assert_eq!(snapshot(), before);
        // Counted, not a line each: the window's summary names the key.
        codext_tests::world::wait_until(std::time::Duration::from_secs(10), "the refusals' summary", || {
            w.audit().iter().any(|e| e["event"] == "refusals_summary" && e["result"] == "key not on the allow-list"
                && e["last_source"] == "digitalocean" && e["count"] == 1 && e["key"].is_string())
        });
        // The allowed key gets one puzzle, and only one however often it asks.
        let mine = format!(r#"{{"verb":"request","key":"{}","name":"codext-agent"}}"#, key_line("agent.pub"));
        let r = probe(&[HELLO, &mine, &mine, r#"{"verb":"next"}"#]);
        assert!(r[1].contains(r#""reply":"ok""#) && r[1].contains("user-"), "{r:?}");
        assert!(r[2].contains("already out"), "{r:?}");
        assert!(r[3].contains(r#""puzzle":{"#) && r[3].contains("cdx1"), "{r:?}");
        assert_eq!(w.state()["users"].as_object().unwrap().len(), 1);
    }
}

sandbox_test! {
    fn given_answer_for_another_servers_user_then_refused_as_foreign_and_nothing_changes() {
        let w = world();
        // A user of this server, issued on the manual channel.
        let (user, puzzle) = w.issue();
        let solved = w.solve(&puzzle);
        let before = snapshot();
        let stranger = r#"{"verb":"answer","text":"user-0123456789ab-00112233445566778899aabbccddeeff"}"#;
        let other_channel = format!(r#"{{"verb":"answer","text":"{}"}}"#, solved["answer"].as_str().unwrap());
        let r = probe(&[HELLO, stranger, &other_channel, r#"{"verb":"answer","text":"user-0123456789ab-zz"}"#]);
        eprintln!("{}", r.join("\n"));
        assert!(refused(&r[1], "foreign") && r[1].contains("not a user of this server"), "{r:?}");
        assert!(refused(&r[2], "foreign") && r[2].contains("another channel"), "{r:?}");
        assert!(refused(&r[3], "malformed"), "{r:?}");
        assert_eq!(snapshot(), before);
        assert_eq!(w.state()["users"][&user]["phase"], "pending");
        assert!(!codext_tests::world::resolves(&user));
        // A peer that is not the channel user is turned away at once.
        let r = probe_as(w.agent.0, w.agent.1, &[HELLO.to_string()]);
        assert!(r.iter().any(|l| refused(l, "foreign")) || r.iter().any(|l| l.starts_with("error")), "{r:?}");
        assert_eq!(snapshot(), before);
    }
}

sandbox_test! {
    fn given_10000_requests_as_fast_as_the_socket_takes_them_then_rate_limited_nothing_changes_and_logins_go_on() {
        let w = world();
        let before = snapshot();
        let r = probe(&[HELLO, "flood 10000", r#"{"verb":"live"}"#]);
        eprintln!("{}", r.join("\n"));
        let flood = r.iter().find(|l| l.starts_with("flood ")).unwrap();
        let field = |k: &str| -> u64 {
            flood.split_whitespace().find_map(|f| f.strip_prefix(&format!("{k}="))).unwrap().parse().unwrap()
        };
        let (limited, ms) = (field("refused_rate_limited"), field("ms"));
        eprintln!("10,000 requests in {ms} ms ({} a second): {limited} refused as rate-limited", 10_000_000 / ms.max(1));
        assert!(limited >= 9_000, "{flood}");
        assert_eq!(field("other") + limited, 10_000);
        assert_eq!(snapshot(), before);
        // The PAM side never noticed: a login still works.
        let armed = w.arm();
        let out = w.ssh_password(&armed.user, &armed.password, "id -un");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), armed.user);
        w.wait_removed(&armed.user, armed.uid);
    }
}
