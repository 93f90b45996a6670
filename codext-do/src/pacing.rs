//! When the client may send its next request: the rate-limit bookkeeping of
//! [`crate::Client`], kept free of I/O and clocks so it is tested with
//! made-up instants.
//!
//! DigitalOcean (see its API description, "Rate Limit") sends on every
//! answer `ratelimit-remaining` (requests left in the sliding hour) and
//! `ratelimit-reset` (Unix time at which the oldest counted request expires,
//! freeing a slot); a `429` carries `retry-after` in seconds. The account's
//! `GET /v2/account/keys` is further limited to 10 a minute, which the client
//! avoids by spacing those requests itself rather than by running into 429s.
//! The token's 250 requests a minute are reported by no header: the client
//! sends at most [`MINUTE_CAP`] of its own in any minute (a server's logins
//! one after another publish in bursts that would meet the limit; what
//! other clients of the token spend, `crate::budget` paces against).
//!
//! Instants are the monotonic time of the client's [`crate::clock::Clock`].

use std::collections::VecDeque;
use std::time::Duration;

/// Requests one client sends in any 60 s at most: 90 % of DigitalOcean's
/// 250 a minute.
pub(crate) const MINUTE_CAP: usize = 225;
const MINUTE: Duration = Duration::from_secs(60);

/// The rate-limit headers of one answer (absent or unparsable: `None`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    /// `ratelimit-remaining`.
    pub remaining: Option<u64>,
    /// `ratelimit-reset`, Unix seconds.
    pub reset: Option<u64>,
    /// `retry-after`, seconds.
    pub retry_after: Option<u64>,
}

/// Per-client pacing state.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    /// No request before this (rate limit exhausted, or a 429's retry-after).
    not_before: Option<Duration>,
    /// No account-keys listing before this.
    next_keys_list: Option<Duration>,
    /// When this client's requests of the last minute were sent.
    minute: VecDeque<Duration>,
    /// At most this many in any minute (0: [`MINUTE_CAP`]).
    minute_cap: usize,
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Wait used after a 429 that names no `retry-after` and no usable reset.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);

impl Pacer {
    /// A pacer sending at most `cap` requests in any minute.
    pub fn with_minute_cap(cap: usize) -> Pacer {
        Pacer {
            minute_cap: cap,
            ..Pacer::default()
        }
    }

    /// How long to wait before sending a request at `now`, or `Err(wait)`
    /// when that wait would exceed `max_wait`. A keys listing reserves its
    /// slot here, so concurrent callers of one client queue up `spacing`
    /// apart instead of all going at once.
    pub fn reserve(
        &mut self,
        now: Duration,
        keys_list: bool,
        spacing: Duration,
        max_wait: Duration,
    ) -> Result<Duration, Duration> {
        let mut at = now;
        if let Some(t) = self.not_before {
            at = at.max(t);
        }
        if keys_list {
            if let Some(t) = self.next_keys_list {
                at = at.max(t);
            }
        }
        while self
            .minute
            .front()
            .is_some_and(|t| now.saturating_sub(*t) >= MINUTE)
        {
            self.minute.pop_front();
        }
        let cap = if self.minute_cap == 0 {
            MINUTE_CAP
        } else {
            self.minute_cap
        };
        if let Some(t) = self.minute.iter().rev().nth(cap - 1) {
            at = at.max(*t + MINUTE);
        }
        let wait = at.saturating_sub(now);
        if wait > max_wait {
            return Err(wait);
        }
        if keys_list {
            self.next_keys_list = Some(at + spacing);
        }
        self.minute.push_back(at);
        Ok(wait)
    }

    /// Takes in the headers of an answer with `status`, received at `now`
    /// (`unix_now` since the epoch). For a 429, returns how long to wait
    /// before retrying; every later request of this client waits as well.
    pub fn observe(
        &mut self,
        now: Duration,
        unix_now: Duration,
        status: u16,
        limits: Limits,
    ) -> Option<Duration> {
        let until_reset = limits
            .reset
            .map(|r| Duration::from_secs(r).saturating_sub(unix_now))
            .filter(|d| !d.is_zero());
        if status == 429 {
            // retry-after is the server's own word on this refusal; the
            // reset time only says when the *hourly* window frees a slot.
            let wait = match (limits.retry_after, limits.remaining, until_reset) {
                (Some(s), _, _) => Duration::from_secs(s),
                (None, Some(0), Some(d)) => d,
                _ => DEFAULT_RETRY,
            };
            self.hold_until(now + wait);
            return Some(wait);
        }
        if let (Some(0), Some(d)) = (limits.remaining, until_reset) {
            self.hold_until(now + d);
        }
        None
    }

    fn hold_until(&mut self, t: Duration) {
        self.not_before = Some(self.not_before.map_or(t, |old| old.max(t)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const BIG: Duration = Duration::from_secs(60);

    fn limits(remaining: u64, reset: u64) -> Limits {
        Limits {
            remaining: Some(remaining),
            reset: Some(reset),
            retry_after: None,
        }
    }

    #[test]
    fn given_remaining_left_then_no_wait() {
        let mut p = Pacer::default();
        let t0 = Duration::from_secs(100);
        assert_eq!(p.observe(t0, S(1000), 200, limits(3, 1030)), None);
        assert_eq!(p.reserve(t0, false, S(6), BIG), Ok(Duration::ZERO));
    }

    #[test]
    fn given_remaining_zero_then_waits_until_reset() {
        let mut p = Pacer::default();
        let t0 = Duration::from_secs(100);
        p.observe(t0, S(1000), 200, limits(0, 1030));
        assert_eq!(p.reserve(t0, false, S(6), BIG), Ok(S(30)));
        assert_eq!(p.reserve(t0 + S(10), false, S(6), BIG), Ok(S(20)));
        assert_eq!(p.reserve(t0 + S(31), false, S(6), BIG), Ok(Duration::ZERO));
        // Sub-second precision of the local clock is kept.
        let mut p = Pacer::default();
        p.observe(t0, Duration::from_millis(1_000_250), 204, limits(0, 1002));
        assert_eq!(
            p.reserve(t0, false, S(6), BIG),
            Ok(Duration::from_millis(1750))
        );
    }

    #[test]
    fn given_reset_beyond_max_wait_then_refused_with_the_wait() {
        let mut p = Pacer::default();
        let t0 = Duration::from_secs(100);
        p.observe(t0, S(1000), 200, limits(0, 4600));
        assert_eq!(p.reserve(t0, false, S(6), BIG), Err(S(3600)));
    }

    #[test]
    fn given_reset_in_the_past_then_no_wait() {
        let mut p = Pacer::default();
        let t0 = Duration::from_secs(100);
        p.observe(t0, S(1000), 200, limits(0, 990));
        assert_eq!(p.reserve(t0, false, S(6), BIG), Ok(Duration::ZERO));
    }

    #[test]
    fn given_429_then_retry_after_wins_over_hourly_reset() {
        let mut p = Pacer::default();
        let t0 = Duration::from_secs(100);
        let l = Limits {
            retry_after: Some(2),
            ..limits(0, 4600)
        };
        assert_eq!(p.observe(t0, S(1000), 429, l), Some(S(2)));
        assert_eq!(p.reserve(t0, false, S(6), BIG), Ok(S(2)));
        // Without retry-after: the reset; without either: a default.
        let mut p = Pacer::default();
        assert_eq!(p.observe(t0, S(1000), 429, limits(0, 1005)), Some(S(5)));
        let mut p = Pacer::default();
        assert_eq!(
            p.observe(t0, S(1000), 429, Limits::default()),
            Some(DEFAULT_RETRY)
        );
    }

    #[test]
    fn given_keys_lists_then_spaced_and_slots_reserved() {
        let mut p = Pacer::default();
        let t0 = Duration::from_secs(100);
        assert_eq!(p.reserve(t0, true, S(6), BIG), Ok(Duration::ZERO));
        // Other requests are not held back by a listing.
        assert_eq!(p.reserve(t0, false, S(6), BIG), Ok(Duration::ZERO));
        // Two more listings asked at once queue 6 s apart.
        assert_eq!(p.reserve(t0 + S(1), true, S(6), BIG), Ok(S(5)));
        assert_eq!(p.reserve(t0 + S(1), true, S(6), BIG), Ok(S(11)));
        // A refused reservation does not take a slot.
        assert_eq!(p.reserve(t0, true, S(6), S(10)), Err(S(18)));
        assert_eq!(p.reserve(t0 + S(20), true, S(6), BIG), Ok(Duration::ZERO));
    }

    #[test]
    fn given_a_minute_of_requests_at_the_cap_then_the_next_waits_for_the_oldest_to_age() {
        let mut p = Pacer::default();
        let t0 = Duration::from_secs(100);
        for _ in 0..MINUTE_CAP {
            assert_eq!(p.reserve(t0, false, S(6), BIG), Ok(Duration::ZERO));
        }
        assert_eq!(p.reserve(t0 + S(10), false, S(6), BIG), Ok(S(50)));
        // A minute later the window is free again.
        assert_eq!(p.reserve(t0 + S(120), false, S(6), BIG), Ok(Duration::ZERO));
    }

    #[test]
    fn given_durations_then_ceil_secs_rounds_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(S(3)), 3);
        assert_eq!(ceil_secs(Duration::from_millis(3001)), 4);
    }
}
