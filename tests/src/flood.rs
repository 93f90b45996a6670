//! Driving the helper's socket directly, as many PAM modules at once would:
//! `authenticate` requests for random names codext never issued, from one
//! or many source addresses (the `rhost` field), and single timed
//! requests for a known user. For the audit-trail tests and benchmark.

use codext_wire::{read_frame, write_frame, Reply, ReplyStatus, Request, Secret, UserName};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The helper's socket in the sandbox.
pub const SOCKET: &str = "/run/codext/helper.sock";

/// One `authenticate` request; the reply's status (`None`: the helper
/// closed the connection) and how long it took.
pub fn authenticate(user: &str, password: &str, rhost: &str) -> (Option<ReplyStatus>, Duration) {
    let start = Instant::now();
    let status = (|| {
        let user = UserName::parse(user).ok()?;
        let req = Request::Authenticate {
            service: "sshd".into(),
            user,
            rhost: rhost.into(),
            password: Secret::copy_from(password.as_bytes()),
        };
        let mut s = UnixStream::connect(SOCKET).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write_frame(&mut s, &req.encode().ok()?).ok()?;
        let frame = read_frame(&mut s).ok()?;
        Some(Reply::decode(&frame).ok()?.status)
    })();
    (status, start.elapsed())
}

/// What a flood got back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Flood {
    /// Requests sent.
    pub sent: u64,
    /// Replies `Denied`.
    pub denied: u64,
    /// Anything else (closed, other status).
    pub other: u64,
}

/// `n` requests for random unknown names, the `i`-th from source
/// `198.18.x.y` number `first + i % sources`, over `threads` connections
/// at a time; `per_second` paces them (0: as fast as the helper answers).
pub fn flood(n: u64, first: u64, sources: u64, threads: usize, per_second: u64) -> Flood {
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let denied = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let seed = Arc::new(AtomicUsize::new(
        std::process::id() as usize ^ Instant::now().elapsed().subsec_nanos() as usize,
    ));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (next, denied, other, seed) = (
                Arc::clone(&next),
                Arc::clone(&denied),
                Arc::clone(&other),
                Arc::clone(&seed),
            );
            std::thread::spawn(move || {
                let mut x = (seed.fetch_add(t + 1, Ordering::SeqCst) as u64)
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    | 1;
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    if let Some(ns) = (i * 1_000_000_000).checked_div(per_second) {
                        let due = start + Duration::from_nanos(ns);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    // xorshift: names nobody issued.
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let b = x.to_le_bytes();
                    let user = UserName::from_random([b[0], b[1], b[2], b[3], b[4], b[5]]);
                    let s = first + i % sources.max(1);
                    let rhost = format!("198.18.{}.{}", s / 256, s % 256);
                    match authenticate(user.as_str(), "not-a-token", &rhost).0 {
                        Some(ReplyStatus::Denied) => denied.fetch_add(1, Ordering::SeqCst),
                        _ => other.fetch_add(1, Ordering::SeqCst),
                    };
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    Flood {
        sent: n,
        denied: denied.load(Ordering::SeqCst),
        other: other.load(Ordering::SeqCst),
    }
}
