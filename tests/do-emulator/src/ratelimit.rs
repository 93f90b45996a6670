//! Per-token rate limits as DigitalOcean applies them: a sliding hour and a sliding minute,
//! plus a separate per-minute limit for `GET /v2/account/keys`. Every answer carries
//! `ratelimit-limit` (the hourly limit), `ratelimit-remaining` (what is left of the hour) and
//! `ratelimit-reset` (Unix time when the oldest counted request expires).
//!
//! Time is the emulator's [`SimClock`]: with a time scale above 1 the
//! windows pass that much faster, and `ratelimit-reset` and `retry-after`
//! are in the scaled clock's seconds.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::util::SimClock;
use crate::EmulatorConfig;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

/// Requests counted per token.
#[derive(Debug, Default)]
pub struct RateLimiter {
    all: HashMap<String, VecDeque<Duration>>,
    keys_list: HashMap<String, VecDeque<Duration>>,
}

/// The three rate-limit headers.
#[derive(Debug, Clone, Copy)]
pub struct Headers {
    pub limit: u32,
    pub remaining: u32,
    pub reset: u64,
}

/// A refused request: headers and the `retry-after` seconds.
#[derive(Debug, Clone, Copy)]
pub struct Refused {
    pub headers: Headers,
    pub retry_after: u64,
}

fn secs_until(oldest: Duration, window: Duration, now: Duration) -> u64 {
    let left = (oldest + window).saturating_sub(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

impl RateLimiter {
    /// Count a request of `token` if the limits allow it.
    pub fn check(
        &mut self,
        token: &str,
        keys_list: bool,
        cfg: &EmulatorConfig,
        clock: &SimClock,
    ) -> Result<Headers, Refused> {
        let now = clock.now();
        let unix = clock.unix();
        let q = self.all.entry(token.to_string()).or_default();
        while q.front().is_some_and(|t| now.saturating_sub(*t) >= HOUR) {
            q.pop_front();
        }
        let kq = self.keys_list.entry(token.to_string()).or_default();
        while kq.front().is_some_and(|t| now.saturating_sub(*t) >= MINUTE) {
            kq.pop_front();
        }
        let minute_start = q.iter().position(|t| now.saturating_sub(*t) < MINUTE);
        let in_minute = minute_start.map_or(0, |p| q.len() - p);
        let mut retry = None;
        if q.len() >= cfg.rate_limit_per_hour as usize {
            retry = q.front().map(|t| secs_until(*t, HOUR, now));
        } else if in_minute >= cfg.rate_limit_per_minute as usize {
            retry = minute_start.map(|p| secs_until(q[p], MINUTE, now));
        } else if keys_list && kq.len() >= cfg.keys_list_per_minute as usize {
            retry = kq.front().map(|t| secs_until(*t, MINUTE, now));
        }
        if retry.is_none() {
            q.push_back(now);
            if keys_list {
                kq.push_back(now);
            }
        }
        let headers = Self::headers_of(q, cfg, now, unix);
        match retry {
            Some(r) => Err(Refused {
                headers,
                retry_after: r.max(1),
            }),
            None => Ok(headers),
        }
    }

    /// The headers for a token without counting a request.
    pub fn peek(&self, token: Option<&str>, cfg: &EmulatorConfig, clock: &SimClock) -> Headers {
        let empty = VecDeque::new();
        let q = token.and_then(|t| self.all.get(t)).unwrap_or(&empty);
        Self::headers_of(q, cfg, clock.now(), clock.unix())
    }

    fn headers_of(
        q: &VecDeque<Duration>,
        cfg: &EmulatorConfig,
        now: Duration,
        unix: u64,
    ) -> Headers {
        let reset = match q.front() {
            Some(t) => unix + secs_until(*t, HOUR, now),
            None => unix,
        };
        Headers {
            limit: cfg.rate_limit_per_hour,
            remaining: cfg.rate_limit_per_hour.saturating_sub(q.len() as u32),
            reset,
        }
    }
}
