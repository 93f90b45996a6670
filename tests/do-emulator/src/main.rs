//! `do-emulator`: serve the DigitalOcean API emulator until killed, for shell scripts and the
//! demo.
//!
//! ```text
//! do-emulator --listen 127.0.0.1:PORT --token TOKEN [TOKEN...] [--token TOKEN]
//!             [--droplet NAME:IPV4[:TAG,TAG...]]... [--rename-delay-ms N]
//!             [--rate-per-hour N] [--rate-per-minute N] [--keys-per-minute N]
//!             [--spec PATH] [--strict-tag-case] [--latency-ms MIN[-MAX]] [--time-scale N]
//!             [--verbose]
//! ```
//!
//! Prints `listening http://127.0.0.1:PORT droplet=<id>` (the first droplet, the one the
//! metadata service reports; a droplet `droplet-1` at 203.0.113.10 is created when none is
//! given) and serves until killed. The control API is under `/_emulator/`.

use std::io::Write;
use std::time::Duration;

use codext_do_emulator::{Emulator, EmulatorConfig};

fn usage() -> ! {
    eprintln!(
        "usage: do-emulator --listen ADDR --token TOKEN... [--droplet NAME:IPV4[:TAG,...]]... \
         [--rename-delay-ms N] [--rate-per-hour N] [--rate-per-minute N] [--keys-per-minute N] \
         [--spec PATH] [--strict-tag-case] [--latency-ms MIN[-MAX]] [--time-scale N] [--verbose]"
    );
    std::process::exit(2)
}

fn number<T: std::str::FromStr>(flag: &str, v: Option<String>) -> T {
    match v.as_deref().map(str::parse) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("do-emulator: {flag} needs a number");
            usage()
        }
    }
}

fn main() {
    let mut cfg = EmulatorConfig::default();
    let mut droplets: Vec<(String, String, Vec<String>)> = Vec::new();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let next = |i: &mut usize| -> Option<String> {
        *i += 1;
        args.get(*i).cloned()
    };
    while i < args.len() {
        let arg = args[i].clone();
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let value = |i: &mut usize| inline.clone().or_else(|| next(i));
        match flag.as_str() {
            "--listen" => {
                cfg.listen = value(&mut i)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--token" => {
                let first = value(&mut i).unwrap_or_else(|| usage());
                cfg.tokens.push(first);
                while inline.is_none() && args.get(i + 1).is_some_and(|a| !a.starts_with("--")) {
                    i += 1;
                    cfg.tokens.push(args[i].clone());
                }
            }
            "--droplet" => {
                let v = value(&mut i).unwrap_or_else(|| usage());
                let mut parts = v.splitn(3, ':');
                let name = parts.next().unwrap_or_default().to_string();
                let ip = parts.next().unwrap_or_else(|| usage()).to_string();
                let tags = parts
                    .next()
                    .map(|t| {
                        t.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default();
                droplets.push((name, ip, tags));
            }
            "--rename-delay-ms" => {
                cfg.rename_delay = Duration::from_millis(number(&flag, value(&mut i)))
            }
            "--rate-per-hour" => cfg.rate_limit_per_hour = number(&flag, value(&mut i)),
            "--rate-per-minute" => cfg.rate_limit_per_minute = number(&flag, value(&mut i)),
            "--keys-per-minute" => cfg.keys_list_per_minute = number(&flag, value(&mut i)),
            "--spec" => cfg.spec_path = Some(value(&mut i).unwrap_or_else(|| usage()).into()),
            "--strict-tag-case" => cfg.strict_tag_case = true,
            "--latency-ms" => {
                let v = value(&mut i).unwrap_or_else(|| usage());
                let (lo, hi) = v.split_once('-').unwrap_or((&v, &v));
                let lo: u64 = number(&flag, Some(lo.to_string()));
                let hi: u64 = number(&flag, Some(hi.to_string()));
                cfg.latency = (Duration::from_millis(lo), Duration::from_millis(hi.max(lo)));
            }
            "--time-scale" => cfg.time_scale = number(&flag, value(&mut i)),
            "--verbose" | "-v" => cfg.log_requests = true,
            "--help" | "-h" => usage(),
            other => {
                eprintln!("do-emulator: unknown argument {other}");
                usage()
            }
        }
        i += 1;
    }
    if cfg.tokens.is_empty() {
        eprintln!("do-emulator: at least one --token is needed");
        usage()
    }
    if droplets.is_empty() {
        droplets.push(("droplet-1".into(), "203.0.113.10".into(), Vec::new()));
    }
    let emu = match Emulator::start(cfg) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("do-emulator: {e}");
            std::process::exit(1)
        }
    };
    let mut first = None;
    for (name, ip, tags) in &droplets {
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        let id = emu.add_droplet(name, ip, &tags);
        first.get_or_insert(id);
    }
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "listening {} droplet={}",
        emu.base_url(),
        first.unwrap_or_default()
    );
    let _ = out.flush();
    loop {
        std::thread::park();
    }
}
