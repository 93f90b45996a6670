//! `channel-probe SOCKET`: plays a (compromised) channel process against
//! the helper's channel socket. Reads lines from stdin, one per request,
//! all on one connection, and prints one line per reply (the reply's JSON,
//! or `closed` / `error …`):
//! * a JSON object: sent as it is;
//! * `flood N`: N `live` requests back to back, as fast as the helper
//!   answers; prints `flood sent=N refused_rate_limited=R other=O ms=T`.
//!
//! Test support only.

use codext_wire::{read_frame, write_frame};
use std::io::BufRead;
use std::os::unix::net::UnixStream;
use std::time::Instant;

fn exchange(s: &mut UnixStream, body: &[u8]) -> Option<String> {
    if let Err(e) = write_frame(s, body) {
        println!("error write: {e}");
        return None;
    }
    match read_frame(s) {
        Ok(f) => Some(String::from_utf8_lossy(&f).into_owned()),
        Err(codext_wire::FrameError::Truncated) => {
            println!("closed");
            None
        }
        Err(e) => {
            println!("error {e}");
            None
        }
    }
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/run/codext-channel/helper.sock".into());
    let mut s = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            println!("error connect: {e}");
            return;
        }
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if let Some(n) = line.strip_prefix("flood ") {
            let n: usize = n.trim().parse().unwrap_or(0);
            let (mut limited, mut other) = (0usize, 0usize);
            let start = Instant::now();
            for _ in 0..n {
                match exchange(&mut s, br#"{"verb":"live"}"#) {
                    Some(r) if r.contains("\"rate_limited\"") => limited += 1,
                    Some(_) => other += 1,
                    None => return,
                }
            }
            println!(
                "flood sent={n} refused_rate_limited={limited} other={other} ms={}",
                start.elapsed().as_millis()
            );
            continue;
        }
        match exchange(&mut s, line.as_bytes()) {
            Some(r) => println!("{r}"),
            None => return,
        }
    }
}
