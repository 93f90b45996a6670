//! `codext-bench`: what a codext login costs, against a plain password
//! login through the same sshd in the same run. Runs inside
//! `codext-sandbox` (see `scripts/bench.sh`), prints figures and ratios.
//!
//! `codext-bench burst [N]` (default 100): N armed users log in through
//! the real sshd all at once, against N concurrent password logins of one
//! local user as the baseline; prints how many succeeded, the latencies,
//! and how long after the last logout every account was gone.

use codext_tests::world::{sh, World};
use std::time::{Duration, Instant};

const N: usize = 20;

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

fn stats(name: &str, xs: &mut [Duration]) -> Duration {
    xs.sort();
    let mean = xs.iter().sum::<Duration>() / xs.len() as u32;
    let median = xs[xs.len() / 2];
    println!(
        "  {name:<44} mean {mean:>9.1?}  median {median:>9.1?}  max {:>9.1?}",
        xs[xs.len() - 1]
    );
    median
}

fn percentile(xs: &mut [Duration], p: usize) -> Duration {
    xs.sort();
    xs[(xs.len() * p / 100).min(xs.len() - 1)]
}

/// N concurrent logins; returns (successes, latencies).
fn concurrently(n: usize, login: impl Fn(usize) -> bool + Sync) -> (usize, Vec<Duration>) {
    let results: Vec<(bool, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let login = &login;
                s.spawn(move || {
                    let t = Instant::now();
                    let ok = login(i);
                    (ok, t.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| r.0).count();
    (ok, results.into_iter().map(|r| r.1).collect())
}

fn burst(n: usize) {
    let mut w = World::new();
    // sshd's default MaxStartups (10:30:100) drops unauthenticated
    // connections beyond 10 at random: raised for this benchmark only.
    sh("printf 'MaxStartups 400\\n' > /etc/ssh/sshd_config.d/00-bench.conf");
    w.restart_sshd();
    sh("useradd --create-home --shell /bin/bash alice && echo 'alice:alice-pw-123' | chpasswd");
    burst_round(&w, n, "the module's default timeout (3 s)");
    // The same with pam_codext's timeout= raised: on a small machine
    // swamped by key exchanges, a busy helper is not a hung one.
    sh("sed -i '/^[a-z]/ s/pam_codext.so\\(.*\\)$/pam_codext.so\\1 timeout=15/' /etc/pam.d/codext /etc/pam.d/codext-session");
    burst_round(&w, n, "timeout=15 on the pam_codext lines");
}

fn burst_round(w: &World, n: usize, what: &str) {
    let helper = w.helper_pid();
    let rss_start = rss_kib(helper);
    let users: Vec<_> = (0..n).map(|_| w.arm()).collect();
    println!("{n} concurrent JIT logins through the real sshd (MaxStartups raised to 400 for this benchmark), {what}");
    let start = Instant::now();
    let (ok, mut lat) = concurrently(n, |i| {
        let a = &users[i];
        let out = w.ssh_password(&a.user, &a.password, "id -u");
        String::from_utf8_lossy(&out.stdout).trim() == a.uid.to_string()
    });
    let last_logout = Instant::now();
    let burst_time = last_logout - start;
    let mut removed_after = Duration::ZERO;
    for a in &users {
        if ok == n {
            w.wait_removed(&a.user, a.uid);
        }
        removed_after = last_logout.elapsed();
    }
    let (base_ok, mut base_lat) = concurrently(n, |_| {
        w.ssh_password("alice", "alice-pw-123", "true")
            .status
            .success()
    });
    println!("  codext: {ok}/{n} succeeded in {burst_time:.2?}; latency median {:.2?}, p90 {:.2?}, max {:.2?}",
        percentile(&mut lat, 50), percentile(&mut lat, 90), percentile(&mut lat, 100));
    if ok == n {
        println!("  every account removed {removed_after:.2?} after the last logout");
    } else {
        println!("  removal time not measured: not every login succeeded");
    }
    println!("  baseline, {n} concurrent password logins of one local user: {base_ok}/{n} succeeded; latency median {:.2?}, p90 {:.2?}, max {:.2?}",
        percentile(&mut base_lat, 50), percentile(&mut base_lat, 90), percentile(&mut base_lat, 100));
    println!(
        "  ratio of medians codext / baseline: {:.2}",
        percentile(&mut lat, 50).as_secs_f64() / percentile(&mut base_lat, 50).as_secs_f64()
    );
    println!(
        "  helper RSS: {rss_start} KiB before, {} KiB after",
        rss_kib(helper)
    );
}

fn main() {
    assert_eq!(
        std::env::var("CODEXT_SANDBOX").as_deref(),
        Ok("1"),
        "run me inside codext-sandbox (scripts/bench.sh)"
    );
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("burst") {
        burst(args.get(1).and_then(|v| v.parse().ok()).unwrap_or(100));
        return;
    }
    let w = World::new();
    sh("useradd --create-home --shell /bin/bash alice && echo 'alice:alice-pw-123' | chpasswd");
    let helper = w.helper_pid();
    let rss_start = rss_kib(helper);
    let (mut issue, mut solve, mut answer, mut login, mut removal, mut whole, mut plain) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..N {
        let t0 = Instant::now();
        let (user, puzzle) = w.issue();
        let t1 = Instant::now();
        let solved = w.solve(&puzzle);
        let t2 = Instant::now();
        let out = World::helper_cli(&["answer", solved["answer"].as_str().unwrap()]);
        assert!(out.status.success());
        let t3 = Instant::now();
        let out = w.login(&puzzle, &["true"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let t4 = Instant::now();
        let uid = w.state()["users"][user.as_str()]["uid"]
            .as_u64()
            .map(|u| u as u32);
        w.wait_removed(&user, uid.unwrap_or(0));
        let t5 = Instant::now();
        issue.push(t1 - t0);
        solve.push(t2 - t1);
        answer.push(t3 - t2);
        login.push(t4 - t3);
        removal.push(t5 - t4);
        whole.push(t5 - t0);
        let p = Instant::now();
        assert!(w
            .ssh_password("alice", "alice-pw-123", "true")
            .status
            .success());
        plain.push(p.elapsed());
    }
    let rss_end = rss_kib(helper);
    println!("codext login cost, {N} logins (release build, inside the sandbox)");
    stats("issue (codext-helper issue: RSA-4096 sign)", &mut issue);
    stats("solve (codext solve: verify + decrypt)", &mut solve);
    stats("answer (codext-helper answer: arm)", &mut answer);
    let ours = stats("login (codext ssh: ssh + PAM + useradd)", &mut login);
    stats("removal after logout (kill, userdel, sweep)", &mut removal);
    stats("whole flow", &mut whole);
    let base = stats("baseline: plain ssh password login (sshpass)", &mut plain);
    println!(
        "  ratio codext login / plain login: {:.2}",
        ours.as_secs_f64() / base.as_secs_f64()
    );
    println!("  helper RSS: {rss_start} KiB at start, {rss_end} KiB after {N} logins");
}
