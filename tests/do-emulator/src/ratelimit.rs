//! Per-token rate limits as DigitalOcean applies them: a sliding hour and a sliding minute,
//! plus a separate per-minute limit for `GET /v2/account/keys`. Every answer carries
//! `ratelimit-limit` (the hourly limit), `ratelimit-remaining` (what is left of the hour) and
//! `ratelimit-reset` (Unix time when the oldest counted request expires).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::util::unix_now;
use crate::EmulatorConfig;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

/// Requests counted per token.
#[derive(Debug, Default)]
pub struct RateLimiter {
    all: HashMap<String, VecDeque<Instant>>,
    keys_list: HashMap<String, VecDeque<Instant>>,
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

fn secs_until(oldest: Instant, window: Duration, now: Instant) -> u64 {
    let left = (oldest + window).saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

impl RateLimiter {
    /// Count a request of `token` if the limits allow it.
    pub fn check(
        &mut self,
        token: &str,
        keys_list: bool,
        cfg: &EmulatorConfig,
    ) -> Result<Headers, Refused> {
        let now = Instant::now();
        let q = self.all.entry(token.to_string()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= HOUR) {
            q.pop_front();
        }
        let kq = self.keys_list.entry(token.to_string()).or_default();
        while kq.front().is_some_and(|t| now.duration_since(*t) >= MINUTE) {
            kq.pop_front();
        }
        let minute_start = q.iter().position(|t| now.duration_since(*t) < MINUTE);
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
        let headers = Self::headers_of(q, cfg, now);
        match retry {
            Some(r) => Err(Refused {
                headers,
                retry_after: r.max(1),
            }),
            None => Ok(headers),
        }
    }

    /// The headers for a token without counting a request.
    pub fn peek(&self, token: Option<&str>, cfg: &EmulatorConfig) -> Headers {
        let empty = VecDeque::new();
        let q = token.and_then(|t| self.all.get(t)).unwrap_or(&empty);
        Self::headers_of(q, cfg, Instant::now())
    }

    fn headers_of(q: &VecDeque<Instant>, cfg: &EmulatorConfig, now: Instant) -> Headers {
        let reset = match q.front() {
            Some(t) => unix_now() + secs_until(*t, HOUR, now),
            None => unix_now(),
        };
        Headers {
            limit: cfg.rate_limit_per_hour,
            remaining: cfg.rate_limit_per_hour.saturating_sub(q.len() as u32),
            reset,
        }
    }
}
