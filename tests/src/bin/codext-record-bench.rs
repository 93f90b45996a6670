//! `codext-record-bench`: what session recording costs, with
//! its baseline measured in the same run, through the same sshd. Runs
//! inside `codext-sandbox` (see `scripts/bench.sh`), release build; prints
//! figures and ratios (a benchmark, not a timed test).
//!
//! * **A JIT login** (`ssh user@host true` with the token, timed from the
//!   client's start to its end: key exchange, PAM, `useradd`, the channel,
//!   its record sealed): users armed while recording was off (their login
//!   shell is `/bin/bash`) against users armed while it was on (the
//!   recorder), logins alternating between the two.
//! * **A 50 MiB `cat`** of text (base64 lines) and of random bytes (the
//!   worst case: the record's text is lossy UTF-8 in JSON) through a
//!   `codext open` master:
//!   one master of a user without recording, one of a user with it, and a
//!   second one without (the control: the ratio two identical runs show
//!   on this machine), in an order that turns each round; each recorded
//!   cat's record sealed before the next cat starts.
//! * **The helper's memory** over 100 recorded sessions one after another
//!   (each a JIT login whose command prints 1,000 lines): VmRSS at the
//!   start and every 25 sessions.
//!
//! `codext-record-bench [login|cat|memory] [ROUNDS]` (default: all three,
//! 7 rounds): logins and cats per mode.

use codext_tests::world::{run, sh, Armed, World};
use std::process::Command;
use std::time::{Duration, Instant};

fn median(xs: &mut [Duration]) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// The median of the ratios of each pair (recorded over not, run one
/// after the other): less swayed by load that comes and goes.
fn pair_ratio(off: &[Duration], on: &[Duration]) -> f64 {
    let mut r: Vec<f64> = off
        .iter()
        .zip(on)
        .map(|(a, b)| b.as_secs_f64() / a.as_secs_f64())
        .collect();
    r.sort_by(|a, b| a.total_cmp(b));
    r[r.len() / 2]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Restarts the helper with recording on or off (users armed from then on
/// get the recorder, or `/bin/bash`, as their login shell).
fn recording(w: &mut World, on: bool) {
    w.kill_helper();
    std::fs::write(
        "/etc/codext/helper.toml",
        format!("version = 1\n[ttl]\narmed = \"1h\"\n[recording]\nenabled = {on}\n"),
    )
    .expect("helper.toml");
    w.start_helper();
}

/// A `codext open` master named `name` for a fresh user.
fn master(w: &World, name: &str) -> Armed {
    let a = w.arm();
    let out = w.agent_open(name, &[&a.puzzle]);
    assert!(
        out.status.success(),
        "codext open: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alias = format!("codext-{name}");
    // 50 MiB of random bytes (the worst case for the record, whose text
    // is lossy UTF-8 in JSON), and 50 MiB of text (base64 lines).
    let make =
        "head -c 52428800 /dev/urandom > big && base64 -w 100 big | head -c 52428800 > big.txt";
    let out = run(w.as_agent(Command::new("ssh").args([&alias, make])));
    assert!(
        out.status.success(),
        "make the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    a
}

fn cat(w: &World, name: &str, file: &str) -> Duration {
    let alias = format!("codext-{name}");
    let t = Instant::now();
    let out = run(
        w.as_agent(Command::new("sh").args(["-c", &format!("ssh {alias} 'cat {file}' | wc -c")]))
    );
    let took = t.elapsed();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "52428800",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn login(w: &World, a: &Armed) -> Duration {
    let t = Instant::now();
    let out = w.ssh_password(&a.user, &a.password, "true");
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.wait_removed(&a.user, a.uid);
    took
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(7);
    let only = args.iter().find(|a| a.parse::<usize>().is_err()).cloned();
    let mut w = World::new();
    println!("session recording: its cost against no recording, same sshd, same run (release build, {rounds} rounds each, medians)");
    if only.as_deref().is_none_or(|o| o == "login") {
        logins(&mut w, rounds);
    }
    if only.as_deref().is_none_or(|o| o == "cat") {
        cats(&mut w, rounds);
    }
    if only.as_deref().is_none_or(|o| o == "memory") {
        memory(&mut w);
    }
}

/// JIT logins of users armed without and with recording, in turn.
fn logins(w: &mut World, rounds: usize) {
    recording(w, false);
    let plain: Vec<Armed> = (0..rounds).map(|_| w.arm()).collect();
    recording(w, true);
    let recorded: Vec<Armed> = (0..rounds).map(|_| w.arm()).collect();
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for (p, r) in plain.iter().zip(&recorded) {
        off.push(login(w, p));
        on.push(login(w, r));
    }
    let pairs = pair_ratio(&off, &on);
    let (off_m, on_m) = (median(&mut off), median(&mut on));
    println!(
        "  JIT login (ssh … true): without recording {off_m:.1?}, recorded {on_m:.1?}: ratio {:.3} (median of pairs {pairs:.3})",
        on_m.as_secs_f64() / off_m.as_secs_f64()
    );
}

/// Waits until the helper has sealed every record (no `.part` left): a
/// seal's work (the kept tail encoded, the file synced) must not fall into
/// the next measurement, unrecorded or not.
fn wait_sealed() {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let open = std::fs::read_dir("/var/lib/codext/recordings")
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".part"))
            })
            .unwrap_or(false);
        if !open {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("a record was not sealed within 30 s");
}

/// 50 MiB through a master, without and with recording, in turn; and
/// through a second master without recording, the control: how far two
/// identical runs differ on this machine (the noise a ratio must clear).
fn cats(w: &mut World, rounds: usize) {
    recording(w, false);
    let a_off = master(w, "plain");
    let a_ctl = master(w, "control");
    recording(w, true);
    let a_on = master(w, "rec");
    {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        let t = |name: &str| {
            let t = Instant::now();
            let out =
                run(w.as_agent(Command::new("ssh").args([&format!("codext-{name}"), "true"])));
            assert!(out.status.success());
            t.elapsed()
        };
        for _ in 0..rounds {
            off.push(t("plain"));
            on.push(t("rec"));
            wait_sealed();
        }
        let (off_m, on_m) = (median(&mut off), median(&mut on));
        println!(
            "  a command (`true`) through a master: without recording {off_m:.1?}, recorded {on_m:.1?}: ratio {:.3}",
            on_m.as_secs_f64() / off_m.as_secs_f64()
        );
    }
    for (file, what) in [("big.txt", "text"), ("big", "random bytes")] {
        let (mut off, mut on, mut ctl) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..rounds {
            // The order turns each round: no mode always runs first.
            for k in 0..3 {
                match (i + k) % 3 {
                    0 => off.push(cat(w, "plain", file)),
                    1 => {
                        on.push(cat(w, "rec", file));
                        wait_sealed();
                    }
                    _ => ctl.push(cat(w, "control", file)),
                }
            }
        }
        // Each round's baseline: the mean of its two unrecorded cats.
        let base: Vec<Duration> = off.iter().zip(&ctl).map(|(a, b)| (*a + *b) / 2).collect();
        let rounds_ratio = pair_ratio(&base, &on);
        let noise = pair_ratio(&off, &ctl);
        let mut unrecorded: Vec<Duration> = off.iter().chain(&ctl).copied().collect();
        let (un_m, on_m) = (median(&mut unrecorded), median(&mut on));
        let (off_m, ctl_m) = (median(&mut off), median(&mut ctl));
        println!(
            "  50 MiB cat of {what} through a master: unrecorded {un_m:.1?} (the two masters {off_m:.1?} and {ctl_m:.1?}), recorded {on_m:.1?}: ratio {:.3}, median of each round's ratio {rounds_ratio:.3}; the control against the first unrecorded master, each round: {noise:.3}",
            on_m.as_secs_f64() / un_m.as_secs_f64(),
        );
    }
    for name in ["plain", "control", "rec"] {
        let _ = w.agent_cli(&["close", name]);
    }
    w.wait_removed(&a_off.user, a_off.uid);
    w.wait_removed(&a_ctl.user, a_ctl.uid);
    w.wait_removed(&a_on.user, a_on.uid);
    let kept: u64 = sh("du -sb /var/lib/codext/recordings | cut -f1")
        .trim()
        .parse()
        .unwrap_or(0);
    println!(
        "  the store after those: {kept} bytes (each 50 MiB cat kept as its first and last 4 MiB)"
    );
}

/// The helper's memory over 100 recorded sessions, one after another.
fn memory(w: &mut World) {
    recording(w, true);
    let helper = w.helper_pid();
    // Five sessions first: the code and tables a first session touches.
    for _ in 0..5 {
        let a = w.arm();
        let out = w.login(&a.puzzle, &["seq 1 1000"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        w.wait_removed(&a.user, a.uid);
    }
    let start = rss_kib(helper);
    println!("  helper VmRSS over 100 recorded sessions (JIT login, 1,000 lines of output each), after 5 first ones:");
    println!("    {:>3} sessions: {start:>6} KiB", 0);
    let mut at = Vec::new();
    for i in 1..=100 {
        let a = w.arm();
        let out = w.login(&a.puzzle, &["seq 1 1000"]);
        assert!(
            out.status.success(),
            "session {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        w.wait_removed(&a.user, a.uid);
        if i % 25 == 0 {
            let rss = rss_kib(helper);
            at.push(rss);
            println!(
                "    {i:>3} sessions: {rss:>6} KiB ({:.2}x the start)",
                rss as f64 / start as f64
            );
        }
    }
    println!(
        "  helper memory after 100 recorded sessions against before them: ratio {:.3} (flat is 1.0)",
        at[3] as f64 / start as f64
    );
}
