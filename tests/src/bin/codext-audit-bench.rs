//! `codext-audit-bench`: what strangers cost the audit trail. Inside
//! `codext-sandbox` (see `scripts/bench.sh`), with the helper's default
//! configuration, it drives the helper's socket directly:
//!
//! * 10,000 `authenticate` requests for random unknown names from one
//!   source address, then from 1,000 (the request's `rhost`), and counts
//!   the audit lines (and, where `perf` can count them, the fsyncs) they
//!   add;
//! * each flood goes in ten bursts; before each burst and while it runs,
//!   real `authenticate` requests for known (armed) users — each creates
//!   the account with `useradd` — are timed, so the idle baseline and the
//!   flooded figure are measured alternately, in the same run;
//! * the floods as fast as the helper answers run twice: with the flood's
//!   client threads at the measuring client's priority, and at nice 19.
//!   Here the attacker's clients share the helper's 2 cores; a remote
//!   attacker's do not (their cost here is sshd's, which the real login
//!   shares alike), so the second figure is the helper's own share;
//! * last, known logins on the idle helper and while `codext-helper audit
//!   verify` runs again and again (it holds the writers' lock while it
//!   reads the active file), alternately, in rounds.

use codext_tests::flood::{authenticate, flood, Flood};
use codext_tests::world::{wait_until, World};
use codext_wire::ReplyStatus;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FLOOD: u64 = 10_000;
const THREADS: usize = 4;
const KNOWN: usize = 30;
const ROUNDS: usize = 10;
const PER_ROUND: usize = 3;

fn median(xs: &mut [Duration]) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn summary_total(w: &World) -> u64 {
    w.audit()
        .iter()
        .filter(|e| e["event"] == "attempts_summary")
        .map(|e| e["unknown_user"].as_u64().unwrap_or(0) + e["rate_limited"].as_u64().unwrap_or(0))
        .sum()
}

/// `authenticate` for `n` freshly armed users, one after the other, on an
/// idle helper; the accounts are revoked afterwards.
fn known_logins(w: &World, n: usize) -> Vec<Duration> {
    let armed: Vec<_> = (0..n).map(|_| w.arm()).collect();
    let mut times = Vec::new();
    for a in &armed {
        let (status, took) = authenticate(&a.user, &a.password, "192.0.2.200");
        assert_eq!(status, Some(ReplyStatus::Ok), "known user {}", a.user);
        times.push(took);
    }
    for a in &armed {
        let _ = World::helper_cli(&["revoke", &a.user]);
    }
    times
}

/// `perf stat` counting the helper's fsync and fdatasync calls, if this
/// kernel lets it.
fn count_fsyncs(pid: u32) -> Option<Child> {
    Command::new("perf")
        .args([
            "stat",
            "-x,",
            "-e",
            "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync",
            "-p",
            &pid.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()
}

fn fsyncs_counted(child: Option<Child>) -> Option<u64> {
    let child = child?;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let out = child.wait_with_output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let mut total = 0;
    let mut seen = 0;
    for l in text.lines() {
        let mut f = l.split(',');
        if let (Some(n), Some(_), Some(ev)) = (f.next(), f.next(), f.next()) {
            if ev.contains("fsync") || ev.contains("fdatasync") {
                total += n.trim().parse::<u64>().ok()?;
                seen += 1;
            }
        }
    }
    (seen == 2).then_some(total)
}

struct Run {
    idle: Vec<Duration>,
    flood: Flood,
    took: Duration,
    lines: usize,
    fsyncs: Option<u64>,
    latency: Vec<Duration>,
    /// The helper's CPU time (user + system) over the flood's bursts.
    helper_cpu: Duration,
}

/// A process's CPU time so far, all its threads (living or not).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis: utime and stime
    // are the 12th and 13th of them, in clock ticks (100 a second).
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Sets the calling thread's nice value (Linux: per thread, inherited by
/// threads it starts).
fn set_own_nice(nice: i32) {
    // SAFETY: setpriority takes plain integers; who = 0 is the calling
    // thread on Linux.
    #[allow(unsafe_code)]
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    assert_eq!(r, 0, "setpriority: {}", std::io::Error::last_os_error());
}

/// One known user's `authenticate` (it creates the account).
fn known_login(a: &codext_tests::world::Armed) -> Duration {
    let (status, took) = authenticate(&a.user, &a.password, "192.0.2.201");
    assert_eq!(status, Some(ReplyStatus::Ok), "known user {}", a.user);
    took
}

/// The flood in `ROUNDS` bursts; in each round `PER_ROUND` known logins on
/// the idle helper, then as many while the burst runs. Idle and flooded
/// samples alternate within a second or so, so whatever else the machine
/// does weighs on both alike.
fn run(w: &World, sources: u64, first: u64, per_second: u64, attacker_nice: i32) -> Run {
    let before = w.audit().len();
    let counted = summary_total(w);
    // Armed before: their RSA work is not what is measured.
    let armed: Vec<_> = (0..2 * ROUNDS * PER_ROUND).map(|_| w.arm()).collect();
    let mut known = armed.iter();
    let perf = count_fsyncs(w.helper_pid());
    let (mut idle, mut latency, mut total) = (Vec::new(), Vec::new(), Flood::default());
    let mut took = Duration::ZERO;
    let mut helper_cpu = Duration::ZERO;
    for _ in 0..ROUNDS {
        idle.extend(known.by_ref().take(PER_ROUND).map(known_login));
        let busy = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&busy);
        let cpu = cpu_time(w.helper_pid());
        let start = Instant::now();
        let flooder = std::thread::spawn(move || {
            // Its client threads inherit this thread's nice value.
            set_own_nice(attacker_nice);
            let f = flood(FLOOD / ROUNDS as u64, first, sources, THREADS, per_second);
            flag.store(false, Ordering::SeqCst);
            f
        });
        for a in known.by_ref().take(PER_ROUND) {
            if !busy.load(Ordering::SeqCst) {
                break;
            }
            let t = known_login(a);
            // Only a login the burst outlasted is a flooded sample.
            if busy.load(Ordering::SeqCst) {
                latency.push(t);
            }
        }
        let f = flooder.join().expect("flood");
        took += start.elapsed();
        helper_cpu += cpu_time(w.helper_pid()).saturating_sub(cpu);
        total.sent += f.sent;
        total.denied += f.denied;
        total.other += f.other;
    }
    for a in &armed {
        let _ = World::helper_cli(&["revoke", &a.user]);
    }
    // The window's summaries (the reaper writes them once it ends).
    wait_until(Duration::from_secs(120), "the flood's summaries", || {
        summary_total(w) >= counted + FLOOD
    });
    let fsyncs = fsyncs_counted(perf);
    let lines = w.audit()[before..]
        .iter()
        .filter(|e| e["event"] == "attempts_summary")
        .count();
    Run {
        idle,
        flood: total,
        took,
        lines,
        fsyncs,
        latency,
        helper_cpu,
    }
}

/// Known logins on the idle helper, then as many while `audit verify` runs
/// in a loop, `ROUNDS` times: (idle, during, verify runs, every run passed).
fn beside_verify(w: &World) -> (Vec<Duration>, Vec<Duration>, u64, bool) {
    let armed: Vec<_> = (0..2 * ROUNDS * PER_ROUND).map(|_| w.arm()).collect();
    let mut known = armed.iter();
    let (mut idle, mut during, mut runs, mut all_passed) = (Vec::new(), Vec::new(), 0, true);
    for _ in 0..ROUNDS {
        idle.extend(known.by_ref().take(PER_ROUND).map(known_login));
        let busy = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&busy);
        let verifier = std::thread::spawn(move || {
            let (mut n, mut passed) = (0u64, true);
            while flag.load(Ordering::SeqCst) {
                passed &= World::helper_cli(&["audit", "verify"]).status.success();
                n += 1;
            }
            (n, passed)
        });
        during.extend(known.by_ref().take(PER_ROUND).map(known_login));
        busy.store(false, Ordering::SeqCst);
        let (n, passed) = verifier.join().expect("verify loop");
        runs += n;
        all_passed &= passed;
    }
    for a in &armed {
        let _ = World::helper_cli(&["revoke", &a.user]);
    }
    (idle, during, runs, all_passed)
}

fn main() {
    assert_eq!(
        std::env::var("CODEXT_SANDBOX").as_deref(),
        Ok("1"),
        "run me inside codext-sandbox (scripts/bench.sh)"
    );
    let w = World::new();
    // Warm up (first useradd, caches), then the known logins' own fsyncs.
    known_logins(&w, 3);
    let perf = count_fsyncs(w.helper_pid());
    let idle = known_logins(&w, KNOWN);
    let idle_fsyncs = fsyncs_counted(perf);
    let runs = [
        (
            "1 source, as fast as the helper answers",
            run(&w, 1, 0, 0, 0),
        ),
        (
            "1000 sources, as fast as the helper answers",
            run(&w, 1000, 1, 0, 0),
        ),
        (
            "1 source, as fast as the helper answers, flood clients at nice 19",
            run(&w, 1, 4000, 0, 19),
        ),
        (
            "1000 sources, as fast as the helper answers, flood clients at nice 19",
            run(&w, 1000, 5000, 0, 19),
        ),
        ("1 source, paced at 1000/s", run(&w, 1, 2000, 1000, 0)),
        (
            "1000 sources, paced at 1000/s",
            run(&w, 1000, 3000, 1000, 0),
        ),
    ];
    let count = |n: Option<u64>| {
        n.map_or_else(
            || "n/a (perf cannot count here)".to_owned(),
            |n| n.to_string(),
        )
    };
    println!("audit trail under a flood of unknown names (release build, inside the sandbox, default config, {THREADS} client threads)");
    println!(
        "  the helper's fsyncs for {} known logins (account created, then revoked) on an idle helper: {}",
        idle.len(),
        count(idle_fsyncs)
    );
    for (name, mut r) in runs {
        let m = median(&mut r.latency);
        let idle_median = median(&mut r.idle);
        println!(
            "  {FLOOD} unknown names from {name}: {:.1?} ({:.0}/s, {} denied, {} other), {} audit lines added ({:.4} per request); helper fsyncs {} (with {} known logins during it and {} between its bursts)",
            r.took,
            FLOOD as f64 / r.took.as_secs_f64(),
            r.flood.denied,
            r.flood.other,
            r.lines,
            r.lines as f64 / FLOOD as f64,
            count(r.fsyncs),
            r.latency.len(),
            r.idle.len(),
        );
        println!(
            "    the helper's CPU time over the bursts: {:.2?} ({:.0} µs a request, the {} known logins' included)",
            r.helper_cpu,
            r.helper_cpu.as_secs_f64() * 1e6 / FLOOD as f64,
            r.latency.len(),
        );
        if let (Some(all), Some(known)) = (r.fsyncs, idle_fsyncs) {
            // The flood's window also holds the idle logins between bursts.
            let in_window = (r.latency.len() + r.idle.len()) as u64;
            let theirs = known * in_window / idle.len().max(1) as u64;
            println!(
                "    fsyncs for the flood itself (total less the known logins' share): about {}",
                all.saturating_sub(theirs)
            );
        }
        println!(
            "    known-user authenticate: idle between the bursts, median of {}: {idle_median:.1?}; during the flood, median of {}: {m:.1?}; ratio {:.2}",
            r.idle.len(),
            r.latency.len(),
            m.as_secs_f64() / idle_median.as_secs_f64()
        );
    }
    println!(
        "  (before this change: one line and three fsyncs per attempt = {FLOOD} lines per flood)"
    );
    let (mut idle, mut during, runs, passed) = beside_verify(&w);
    let active = std::fs::metadata("/var/log/codext/audit.jsonl").map_or(0, |m| m.len());
    let (i, d) = (median(&mut idle), median(&mut during));
    println!(
        "  known-user authenticate beside `audit verify` in a loop ({runs} runs, {}; active file {active} bytes): idle, median of {}: {i:.1?}; during, median of {}: {d:.1?}; ratio {:.2}",
        if passed { "every one passed" } else { "SOME FAILED" },
        idle.len(),
        during.len(),
        d.as_secs_f64() / i.as_secs_f64()
    );
}
