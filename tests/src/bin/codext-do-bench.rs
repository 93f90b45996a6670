//! `codext-do-bench [N]` (default 20): DigitalOcean logins against the API
//! emulator with 150–250 ms per call (closer to the real API than
//! loopback), inside `codext-sandbox` (see `scripts/bench.sh`): the real
//! helper, the unprivileged `codext-channel`, sshd, and the agent's
//! `codext connect`, N logins one after the other. Prints the time from
//! `connect` to the remote command's output (median, p90) and the API
//! calls per login on each side (and by route), then the server's calls
//! during a minute at idle (scaled to an hour). The baseline, measured in
//! the same run: the same login with the user armed by hand (`codext ssh`
//! of a solved puzzle), i.e. everything but the API.

use codext_do_emulator::{Emulator, EmulatorConfig};
use codext_tests::world::{ids, run, sh, write_file, World, WORK};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SERVER_TOKEN: &str = "dop_v1_server0000000000000000000000000000000000000000000000000000";
const AGENT_TOKEN: &str = "dop_v1_agent00000000000000000000000000000000000000000000000000000";

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let mut cfg = EmulatorConfig::with_tokens(&[SERVER_TOKEN, AGENT_TOKEN]);
    cfg.latency = (Duration::from_millis(150), Duration::from_millis(250));
    cfg.log_requests = std::env::var_os("CODEXT_BENCH_TRACE").is_some();
    let emu = Emulator::start(cfg).expect("emulator");
    let droplet = emu.add_droplet("web-1", "127.0.0.1", &["prod"]);
    let fp = std::fs::read_to_string(
        codext_tests::repo().join("docs/test-vectors/v1/agent.pub.fingerprint"),
    )
    .expect("fingerprint");
    let w = World::with_config(&format!(
        "[digitalocean]\nenabled = true\napi_url = \"{}\"\nmetadata_url = \"{}\"\nallowed_keys = [\"{}\"]\n",
        emu.base_url(),
        emu.metadata_url(),
        fp.trim()
    ));
    write_file("/home/agent/do.token", AGENT_TOKEN, 0o600);
    sh("chown agent: /home/agent/do.token");
    let bin = format!("{WORK}/bin/codext-channel");
    std::fs::copy(codext_tests::bin("codext-channel"), &bin).expect("copy channel");
    sh(&format!("chmod 755 {bin}"));
    let (uid, gid) = ids("codext-channel");
    let creds = format!("{WORK}/bench-credentials");
    std::fs::create_dir_all(&creds).expect("creds");
    write_file(&format!("{creds}/digitalocean.token"), SERVER_TOKEN, 0o600);
    sh(&format!(
        "chown -R codext-channel: {creds} && chmod 700 {creds}"
    ));
    let mut channel = Command::new(&bin)
        .args(["--socket", "/run/codext-channel/helper.sock"])
        .uid(uid)
        .gid(gid)
        .env_clear()
        .env("CREDENTIALS_DIRECTORY", &creds)
        .envs(std::env::var_os("CODEXT_BENCH_VERBOSE").map(|_| ("CODEXT_CHANNEL_DEBUG", "1")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(format!("{WORK}/channel.log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .spawn()
        .expect("channel");
    let api = [
        "--api-url".to_string(),
        emu.base_url(),
        "--token-file".into(),
        "/home/agent/do.token".into(),
    ];
    // CODEXT_BENCH_TRACE=1: every new line of the helper's, sshd's and
    // the channel's logs, with the time it was seen, on stderr (the root
    // file system is read-only in the sandbox).
    if std::env::var_os("CODEXT_BENCH_TRACE").is_some() {
        std::thread::spawn(move || {
            use std::io::Write;
            let mut out = std::io::stderr();
            let mut seen = [0usize; 3];
            let t0 = Instant::now();
            loop {
                for (i, f) in ["helper.log", "sshd.log", "channel.log"].iter().enumerate() {
                    let text = std::fs::read_to_string(format!("{WORK}/{f}")).unwrap_or_default();
                    for l in text.lines().skip(seen[i]) {
                        let _ = writeln!(out, "{:8.3} {f}: {l}", t0.elapsed().as_secs_f64());
                        seen[i] += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }
    let codext = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let at = all.iter().position(|a| a == "--").unwrap_or(all.len());
        all.splice(at..at, api.clone());
        run(w.as_agent(Command::new(format!("{WORK}/bin/codext")).args(&all)))
    };
    assert!(codext(&["publish-key", "--key", "/home/agent/agent.key"])
        .status
        .success());
    let count = |token: &str| {
        emu.calls()
            .iter()
            .filter(|c| c.token.as_deref() == Some(token))
            .count()
    };
    // Baseline: the SSH part alone (the user armed without the API).
    let mut base = Vec::new();
    for _ in 0..5 {
        let armed = w.arm();
        let start = Instant::now();
        let out = w.login(&armed.puzzle, &["true"]);
        base.push(start.elapsed());
        assert!(
            out.status.success(),
            "baseline login: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    base.sort();
    // One login by `codext connect` (with `--no-knock` unless `knock`);
    // waits for the account's removal and the tags' tidying afterwards, so
    // each login's calls are its own. Returns (time, server calls, agent
    // calls).
    let login = |i: usize, knock: bool| {
        let d = droplet.to_string();
        let (s0, a0) = (count(SERVER_TOKEN), count(AGENT_TOKEN));
        let mut args = vec![
            "connect",
            "--droplet",
            &d,
            "--key",
            "/home/agent/agent.key",
            "--server-key",
            "/home/agent/server.pub",
            "--timeout",
            "120s",
        ];
        if !knock {
            args.push("--no-knock");
        }
        args.extend(["--", "true"]);
        let start = Instant::now();
        let out = codext(&args);
        let took = start.elapsed();
        assert!(
            out.status.success(),
            "login {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if std::env::var_os("CODEXT_BENCH_VERBOSE").is_some() && took > Duration::from_secs(8) {
            for f in ["helper.log", "sshd.log", "channel.log"] {
                let text = std::fs::read_to_string(format!("{WORK}/{f}")).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                eprintln!("--- {f} (last lines) ---");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        if std::env::var_os("CODEXT_BENCH_VERBOSE").is_some() {
            eprintln!(
                "login {i} ({}) at {:?} took {:.1} s:\n{}",
                if knock { "knock" } else { "no knock" },
                std::time::SystemTime::now(),
                took.as_secs_f64(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            let tags = emu
                .droplet(droplet)
                .and_then(|d| d["tags"].as_array().map(Vec::len))
                .unwrap_or(0);
            let chunks = emu
                .tags()
                .iter()
                .any(|t| t.to_ascii_lowercase().starts_with("codext"));
            if tags == 1 && !chunks && w.state()["users"].as_object().is_some_and(|u| u.is_empty())
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (took, count(SERVER_TOKEN) - s0, count(AGENT_TOKEN) - a0)
    };
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
    println!("DigitalOcean login, 150-250 ms per API call, {n} logins one after another (starting at least 8 s apart), each way:");
    println!(
        "  baseline, the same login with the user armed by hand (no API): median {:.1} s",
        base[base.len() / 2].as_secs_f64()
    );
    for knock in [false, true] {
        let before_routes = emu.calls().len();
        let mut times = Vec::new();
        let (mut server_calls, mut agent_calls) = (Vec::new(), Vec::new());
        for i in 0..n {
            // Logins start at least 8 s apart: one server's ~23 calls a
            // login back to back (a login every ~4 s) would exceed the
            // token's 250 requests a minute, and what would be measured is
            // the client holding itself to 225 a minute.
            let began = Instant::now();
            let (took, sc, ac) = login(i, knock);
            std::thread::sleep(Duration::from_secs(8).saturating_sub(began.elapsed()));
            times.push(took);
            server_calls.push(sc);
            agent_calls.push(ac);
        }
        let mut routes: std::collections::BTreeMap<(String, String), usize> = Default::default();
        for c in &emu.calls()[before_routes..] {
            let side = if c.token.as_deref() == Some(SERVER_TOKEN) {
                "server"
            } else {
                "agent"
            };
            *routes
                .entry((side.to_string(), emu.route(&c.method, &c.path)))
                .or_default() += 1;
        }
        times.sort();
        let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
        println!(
            "  {}: connect to command done: median {:.1} s, p90 {:.1} s, min {:.1} s, max {:.1} s",
            if knock {
                "agent knocking (codext connect)"
            } else {
                "without the knock (--no-knock)"
            },
            pct(50).as_secs_f64(),
            pct(90).as_secs_f64(),
            times[0].as_secs_f64(),
            times[times.len() - 1].as_secs_f64()
        );
        let refused = emu.calls()[before_routes..]
            .iter()
            .filter(|c| c.status == 429)
            .count();
        println!(
            "    API calls per login (incl. tidying afterwards): server {:.1}, agent {:.1}, both {:.1}; {refused} 429s",
            mean(&server_calls),
            mean(&agent_calls),
            mean(&server_calls) + mean(&agent_calls)
        );
        for ((side, route), count) in &routes {
            println!(
                "      {side} {route}: {:.1} a login",
                *count as f64 / n as f64
            );
        }
    }
    // Idle: let the hot window pass, then count a minute.
    std::thread::sleep(Duration::from_secs(65));
    let s0 = count(SERVER_TOKEN);
    std::thread::sleep(Duration::from_secs(60));
    let idle = count(SERVER_TOKEN) - s0;
    println!(
        "  server calls at idle: {idle} a minute, {} an hour ({:.1} % of 5,000)",
        idle * 60,
        idle as f64 * 6000.0 / 5000.0
    );
    // The first login at a server idle for over a minute, each way.
    for knock in [false, true] {
        let (took, sc, ac) = login(0, knock);
        println!(
            "  first login at an idle server, {}: {:.1} s ({sc} + {ac} API calls)",
            if knock {
                "agent knocking"
            } else {
                "without the knock"
            },
            took.as_secs_f64()
        );
        std::thread::sleep(Duration::from_secs(65));
    }
    if std::env::var_os("CODEXT_BENCH_VERBOSE").is_some() {
        eprintln!(
            "--- channel log ---\n{}",
            std::fs::read_to_string(format!("{WORK}/channel.log")).unwrap_or_default()
        );
    }
    let _ = channel.kill();
    let _ = channel.wait();
    emu.assert_no_violations();
}
