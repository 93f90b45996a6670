//! `codext-profile-bench`: what a container grant costs, with
//! the plain grant measured in the same run, through the same sshd. Runs
//! inside `codext-sandbox` (see `scripts/bench.sh`), release build, with a
//! private dockerd (overlay2 on the sandbox's tmpfs) and the workspace
//! image `scripts/workspace-image.sh` builds; prints figures and ratios.
//!
//! * **`codext open` to a shell**: from the agent starting `codext open`
//!   (token login, master, linger, grant key) until `ssh ALIAS 'echo
//!   ready'` printed — for a container grant that is a shell in its
//!   container (started by the helper at the account's creation, waited
//!   for by the first session) — plain and container grants alternating;
//! * **a further command** through the master (`ssh ALIAS true`): a plain
//!   grant's shell against a `docker exec` into the container;
//! * **the container's start** as the helper timed it (its `container`
//!   audit line: create, account files, start).
//!
//! `codext-profile-bench [ROUNDS]` (default 7).

use codext_tests::docker::{Dockerd, IMAGE};
use codext_tests::world::{run, World};
use std::process::Command;
use std::time::{Duration, Instant};

fn median(xs: &mut [Duration]) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn pair_ratio(plain: &[Duration], other: &[Duration]) -> f64 {
    let mut r: Vec<f64> = plain
        .iter()
        .zip(other)
        .map(|(a, b)| b.as_secs_f64() / a.as_secs_f64())
        .collect();
    r.sort_by(|a, b| a.total_cmp(b));
    r[r.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// One grant of `profile`: (open to the first output, a further command).
fn grant(w: &World, profile: &str, name: &str) -> (Duration, Duration) {
    let a = w.arm_profile(profile);
    let alias = format!("codext-{name}");
    let t = Instant::now();
    let out = w.agent_open(name, &["--profile", profile, &a.puzzle]);
    assert!(
        out.status.success(),
        "codext open: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(w.as_agent(Command::new("ssh").args([&alias, "echo ready"])));
    let first = t.elapsed();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ready\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = Instant::now();
    let out = run(w.as_agent(Command::new("ssh").args([&alias, "true"])));
    let further = t.elapsed();
    assert!(out.status.success());
    let out = w.agent_cli(&["close", name]);
    assert!(out.status.success());
    w.wait_removed(&a.user, a.uid);
    (first, further)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    let Some(_dockerd) = Dockerd::start() else {
        println!("codext-profile-bench: docker cannot run here (see above); nothing measured");
        return;
    };
    let w = World::with_config(&format!(
        "[ttl]\narmed = \"1h\"\n[profiles.ws]\nkind = \"container\"\nimage = \"{IMAGE}\"\nshell = \"/bin/bash\"\n"
    ));
    // One of each first, unmeasured (caches, the image's first use).
    grant(&w, "shell", "warm-plain");
    grant(&w, "ws", "warm-ws");
    let (mut plain, mut ws, mut plain_cmd, mut ws_cmd) = (vec![], vec![], vec![], vec![]);
    for i in 0..rounds {
        let (p, pc) = grant(&w, "shell", &format!("plain{i}"));
        let (c, cc) = grant(&w, "ws", &format!("ws{i}"));
        println!(
            "round {i}: plain {} (+{}), container {} (+{})",
            ms(p),
            ms(pc),
            ms(c),
            ms(cc)
        );
        plain.push(p);
        ws.push(c);
        plain_cmd.push(pc);
        ws_cmd.push(cc);
    }
    let starts: Vec<u64> = w
        .audit()
        .iter()
        .filter(|e| e["event"] == "container" && e["result"] == "started")
        .filter_map(|e| e["ms"].as_u64())
        .collect();
    let ratio = pair_ratio(&plain, &ws);
    let cmd_ratio = pair_ratio(&plain_cmd, &ws_cmd);
    let mut starts_sorted = starts.clone();
    starts_sorted.sort();
    println!(
        "codext open to a shell, median of {rounds}: plain grant {}, container grant {} ({ratio:.2}x, median of pair ratios)",
        ms(median(&mut plain)),
        ms(median(&mut ws))
    );
    println!(
        "a further command through the master: plain {}, in the container {} ({cmd_ratio:.2}x)",
        ms(median(&mut plain_cmd)),
        ms(median(&mut ws_cmd))
    );
    if !starts_sorted.is_empty() {
        println!(
            "the container's start (docker create, account files, start), as the helper timed it: median {} ms, max {} ms",
            starts_sorted[starts_sorted.len() / 2],
            starts_sorted[starts_sorted.len() - 1]
        );
    }
}
