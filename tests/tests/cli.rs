//! The manual channel from the command line — `codext keygen`, `codext-helper
//! init`, `issue`, `codext solve`, `codext-helper answer` — and what every
//! kind of bad input gets: a one-line message, a non-zero exit, no state
//! change.

use codext_tests::world::{resolves, run, sh, World, WORK};
use codext_tests::{repo, sandbox_test};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// What a bad input may change: the pending state and the userdb records.
fn state() -> (Vec<u8>, Vec<String>) {
    let st = std::fs::read("/var/lib/codext/state.json").unwrap_or_default();
    let mut recs: Vec<String> = std::fs::read_dir("/run/userdb")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    recs.sort();
    (st, recs)
}

/// Asserts a refusal: non-zero exit `code`, exactly one line on stderr
/// starting with `prefix` and containing `what`, nothing on stdout.
fn refused(out: &Output, code: i32, prefix: &str, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "exit status; stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with(prefix), "{err}");
    assert!(
        err.to_lowercase().contains(&what.to_lowercase()),
        "expected {what:?} in: {err}"
    );
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

sandbox_test! {
    fn given_fresh_agent_key_then_keygen_init_issue_solve_answer_round_trip() {
        let w = World::new();
        // A key made by `codext keygen`, not the fixture.
        let out = w.agent_cli(&["keygen", "--key", "/home/agent/fresh.key"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mode = std::fs::metadata("/home/agent/fresh.key").unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let pub_text = std::fs::read_to_string("/home/agent/fresh.key.pub").unwrap();
        assert!(pub_text.starts_with("ssh-rsa "));
        // ssh-keygen reads both halves and agrees on the fingerprint.
        let ours = String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.strip_prefix("fingerprint: ").map(str::to_owned)).unwrap();
        let theirs = sh("ssh-keygen -lf /home/agent/fresh.key.pub");
        assert!(theirs.contains(&ours), "{theirs} vs {ours}");
        assert!(theirs.starts_with("3072 "));
        // A second keygen refuses to overwrite.
        let again = w.agent_cli(&["keygen", "--key", "/home/agent/fresh.key"]);
        refused(&again, 2, "codext:", "already exists");

        let init = World::helper_cli(&["init", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&init.stdout).unwrap();
        assert_eq!(v["server_public_key"], "/etc/codext/server_key.pub");
        assert!(sh("ssh-keygen -lf /etc/codext/server_key.pub").contains(v["fingerprint"].as_str().unwrap()));
        assert!(sh("ssh-keygen -lf /etc/codext/server_key.pub").starts_with("4096 "));
        assert_eq!(std::fs::metadata("/etc/codext/server_key").unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(v["created"], false, "the second init keeps the key World's init made");

        let out = World::helper_cli(&["issue", "--client-key", "/home/agent/fresh.key.pub", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let issued: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let user = issued["user"].as_str().unwrap();
        assert!(issued["expires_at"].as_str().unwrap().ends_with('Z'));
        let state = std::fs::read_to_string("/var/lib/codext/state.json").unwrap();
        assert!(state.contains(user));
        let out = w.agent_cli(&["solve", "--key", "/home/agent/fresh.key", "--server-key", "/home/agent/server.pub", "--json", issued["puzzle"].as_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let solved: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(solved["user"], user);
        assert!(solved.get("password").is_none(), "password printed without --password");
        let fps = solved["host_key_fingerprints"].as_array().unwrap();
        let host = sh("for f in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf $f; done");
        assert!(!fps.is_empty());
        for fp in fps {
            assert!(host.contains(fp.as_str().unwrap()), "{fp} is not a host key of this machine");
        }
        assert!(!resolves(user));
        let out = World::helper_cli(&["answer", solved["answer"].as_str().unwrap()]);
        assert!(out.status.success());
        assert!(resolves(user));
        let status = World::helper_cli(&["status", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(list[0]["phase"], "armed");
        // The state holds hashes only: neither the password nor the token.
        let solved_pw = w.agent_cli(&["solve", "--key", "/home/agent/fresh.key", "--server-key", "/home/agent/server.pub", "--password", issued["puzzle"].as_str().unwrap()]);
        let pw = String::from_utf8_lossy(&solved_pw.stdout).lines().nth(1).unwrap().to_owned();
        assert_eq!(pw.len(), 52);
        assert!(!std::fs::read_to_string("/var/lib/codext/state.json").unwrap().contains(&pw));
        let out = World::helper_cli(&["revoke", user]);
        assert!(out.status.success());
        assert!(!resolves(user));
    }
}

sandbox_test! {
    fn given_bad_puzzles_keys_and_answers_then_one_line_errors_and_no_state_change() {
        let w = World::new();
        let (user, puzzle) = w.issue();
        let before = state();
        let key = "/home/agent/agent.key";
        let server = "/home/agent/server.pub";
        let solve = |p: &str, k: &str, s: &str| w.agent_cli(&["solve", "--key", k, "--server-key", s, p]);
        // Truncated, garbled, tampered.
        refused(&solve(&puzzle[..puzzle.len() / 2], key, server), 2, "codext:", "not a valid codext puzzle");
        refused(&solve(&puzzle.replace('a', "A"), key, server), 2, "codext:", "base32");
        let mut tampered: Vec<char> = puzzle.chars().collect();
        let i = tampered.len() - 200;
        tampered[i] = if tampered[i] == 'b' { 'c' } else { 'b' };
        let tampered: String = tampered.into_iter().collect();
        refused(&solve(&tampered, key, server), 3, "codext:", "signature");
        // Wrong agent key, wrong server key.
        for f in ["other-agent.key", "other-server.pub"] {
            std::fs::copy(repo().join("docs/test-vectors/v1").join(f), Path::new("/home/agent").join(f)).unwrap();
        }
        sh("chown agent: /home/agent/other-agent.key && chmod 600 /home/agent/other-agent.key");
        refused(&solve(&puzzle, "/home/agent/other-agent.key", server), 3, "codext:", "another agent key");
        refused(&solve(&puzzle, key, "/home/agent/other-server.pub"), 3, "codext:", "pinned");
        // A key file readable by others is refused like ssh does.
        sh("chmod 644 /home/agent/other-agent.key");
        refused(&solve(&puzzle, "/home/agent/other-agent.key", server), 3, "codext:", "chmod 600");
        // Expired: the fixed test vector expired on 2026-11-18.
        let vector = std::fs::read_to_string(repo().join("docs/test-vectors/v1/puzzle-1.txt")).unwrap();
        std::fs::copy(repo().join("docs/test-vectors/v1/server.pub"), "/home/agent/vector-server.pub").unwrap();
        refused(&solve(vector.trim(), key, "/home/agent/vector-server.pub"), 3, "codext:", "expired");
        // Nothing on stdin.
        refused(&w.agent_cli(&["solve", "--key", key, "--server-key", server, "-"]), 2, "codext:", "puzzle");
        assert_eq!(state(), before);

        // Answers: malformed, wrong proof, unknown user.
        let answer = |t: &str| World::helper_cli(&["answer", t]);
        refused(&answer("hello"), 2, "codext-helper:", "not a valid codext answer");
        refused(&answer(&format!("{user}-zz112233445566778899aabbccddeeff")), 2, "codext-helper:", "hex");
        refused(&answer(&format!("{user}-00112233445566778899aabbccddeeff")), 3, "codext-helper:", "wrong proof");
        refused(&answer("user-000000000000-00112233445566778899aabbccddeeff"), 3, "codext-helper:", "not a pending");
        assert_eq!(state(), before);
        assert!(!resolves(&user));

        // User names.
        refused(&World::helper_cli(&["revoke", "root"]), 2, "codext-helper:", "starts with");
        refused(&World::helper_cli(&["revoke", "user-ZZZ"]), 2, "codext-helper:", "hex digits");
        refused(&World::helper_cli(&["revoke", "user-0123456789ab"]), 3, "codext-helper:", "not a pending");
        refused(&World::helper_cli(&["issue", "--client-key", "/home/agent/agent.key.pub", "--user", "alice"]), 2, "codext-helper:", "starts with");
        assert_eq!(state(), before);

        // Agent keys the server refuses.
        sh(&format!("ssh-keygen -q -t rsa -b 2048 -N '' -f {WORK}/small && ssh-keygen -q -t ed25519 -N '' -f {WORK}/ed"));
        refused(&World::helper_cli(&["issue", "--client-key", &format!("{WORK}/small.pub")]), 2, "codext-helper:", "2048 bits");
        refused(&World::helper_cli(&["issue", "--client-key", &format!("{WORK}/ed.pub")]), 2, "codext-helper:", "RSA key is required");
        std::fs::write(format!("{WORK}/garbage.pub"), "ssh-rsa !!!!\n").unwrap();
        refused(&World::helper_cli(&["issue", "--client-key", &format!("{WORK}/garbage.pub")]), 2, "codext-helper:", "OpenSSH");
        refused(&World::helper_cli(&["issue", "--client-key", "/nonexistent.pub"]), 1, "codext-helper:", "cannot read");
        refused(&World::helper_cli(&["issue", "--client-key", "/home/agent/agent.key.pub", "--ttl", "soon"]), 2, "codext-helper:", "duration");
        assert_eq!(state(), before);
    }
}

sandbox_test! {
    fn given_bad_configuration_then_one_line_error_and_nothing_done() {
        let _w = World::new();
        let before = state();
        for (toml, what) in [
            ("version = 2\n", "version 2"),
            ("bogus = true\n", "unknown field"),
            ("[accounts]\nuid_min = 10\n", "1000..=60000"),
            ("[ttl]\narmed = \"forever\"\n", "forever"),
            ("state_dir = \"var/lib\"\n", "absolute"),
            ("this is not toml\n", "bad.toml: line 1"),
        ] {
            std::fs::write(format!("{WORK}/bad.toml"), toml).unwrap();
            for args in [vec!["status"], vec!["issue", "--client-key", "/home/agent/agent.key.pub"]] {
                let mut all = vec!["--config", "/run/codext-test/bad.toml"];
                all.extend(args);
                let out = run(Command::new(codext_tests::bin("codext-helper")).args(&all));
                refused(&out, 2, "codext-helper: configuration:", what);
            }
        }
        assert_eq!(state(), before);
    }
}
