//! When the next pass runs: a budget, not a fixed interval.
//!
//! Every DigitalOcean answer says how much of the token's hourly budget is
//! left (`ratelimit-limit`, `ratelimit-remaining`, `ratelimit-reset`), and
//! every server sharing the token spends from the same budget. The pause
//! before the next pass is the longest of:
//! * the *base*: `poll_busy` while a puzzle is out or a user armed, or for
//!   `hot_for` after anything happened on the droplet (a request, an
//!   answer, a publication); `poll_idle` otherwise;
//! * the *share*: once this server has spent `share` of the hourly limit
//!   within the last hour, it polls no faster than that share sustains at
//!   the calls a pass has been costing (bursts below the share are free);
//! * the *pressure*: once less than half the budget is left, the pause grows
//!   as the remainder shrinks, so servers sharing a token slow down together
//!   instead of exhausting it;
//! * the *reserve*: with `reserve` requests or fewer left, nothing runs until
//!   the oldest counted request has expired (at least `poll_idle`), so
//!   publishing puzzles and answers always has requests left.
//!
//! Pure: tested with made-up budgets.

use codext_do::Budget;
use std::time::Duration;

/// The polling policy (from the helper's `hello`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Pause while busy or hot.
    pub busy: Duration,
    /// Pause otherwise.
    pub idle: Duration,
    /// How long to stay fast after something happened.
    pub hot_for: Duration,
    /// Share of the token's hourly budget this server may spend (0–1].
    pub share: f64,
    /// Requests always kept for publishing.
    pub reserve: u64,
}

/// Longest pause ever chosen.
pub const MAX_PAUSE: Duration = Duration::from_secs(600);

/// The pause before the next pass. `hot`: something is in flight or
/// happened within `hot_for`; `calls_per_pass`: what a pass has been
/// costing (at least 1); `spent_last_hour`: this server's calls in the
/// last hour; `now_unix`: the clock, for `ratelimit-reset`.
pub fn next_pause(
    p: &Policy,
    hot: bool,
    budget: Option<Budget>,
    calls_per_pass: f64,
    spent_last_hour: u64,
    now_unix: u64,
) -> Duration {
    let base = if hot { p.busy } else { p.idle };
    let Some(b) = budget.filter(|b| b.limit > 0) else {
        return base;
    };
    let cpp = calls_per_pass.max(1.0);
    if b.remaining <= p.reserve {
        let until_reset = Duration::from_secs(b.reset.saturating_sub(now_unix));
        return until_reset.max(p.idle).min(MAX_PAUSE);
    }
    let limit = b.limit as f64;
    let allowed = limit * p.share.clamp(0.001, 1.0);
    let sustained = Duration::from_secs_f64(3600.0 * cpp / allowed);
    let share = if spent_last_hour as f64 + cpp > allowed {
        sustained
    } else {
        Duration::ZERO
    };
    let spendable = (b.remaining - p.reserve) as f64;
    let half = limit / 2.0;
    let pressure = if spendable < half {
        sustained.mul_f64(half / spendable.max(1.0))
    } else {
        Duration::ZERO
    };
    base.max(share).max(pressure).min(MAX_PAUSE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            busy: Duration::from_secs(1),
            idle: Duration::from_secs(15),
            hot_for: Duration::from_secs(60),
            share: 0.5,
            reserve: 250,
        }
    }

    fn budget(remaining: u64) -> Option<Budget> {
        Some(Budget {
            limit: 5000,
            remaining,
            reset: 1000,
        })
    }

    #[test]
    fn given_no_budget_then_base_interval() {
        assert_eq!(
            next_pause(&policy(), true, None, 1.0, 0, 0),
            Duration::from_secs(1)
        );
        assert_eq!(
            next_pause(&policy(), false, None, 1.0, 0, 0),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn given_full_budget_then_bursts_are_free_until_the_share_is_spent() {
        let p = policy();
        // Below the share (2,500 an hour): the base interval.
        assert_eq!(
            next_pause(&p, true, budget(5000), 20.0, 100, 0),
            Duration::from_secs(1)
        );
        // Share spent: 0.5 × 5000 an hour at 1 call a pass is a pass every 1.44 s.
        assert_eq!(
            next_pause(&p, true, budget(5000), 1.0, 2500, 0),
            Duration::from_secs_f64(1.44)
        );
        // Idle is slower than the share allows anyway.
        assert_eq!(
            next_pause(&p, false, budget(5000), 1.0, 2500, 0),
            Duration::from_secs(15)
        );
        // Expensive passes slow down.
        assert!(next_pause(&p, true, budget(5000), 5.0, 2500, 0) > Duration::from_secs(7));
    }

    #[test]
    fn given_budget_draining_then_pause_grows_monotonically() {
        let mut last = Duration::ZERO;
        for remaining in [5000, 3000, 2000, 1000, 600, 300] {
            let d = next_pause(&policy(), true, budget(remaining), 1.0, 0, 0);
            assert!(d >= last, "{remaining}: {d:?} < {last:?}");
            last = d;
        }
        assert!(last > Duration::from_secs(60), "{last:?}");
    }

    #[test]
    fn given_reserve_reached_then_wait_for_the_reset_at_least_idle() {
        assert_eq!(
            next_pause(&policy(), true, budget(250), 1.0, 0, 900),
            Duration::from_secs(100)
        );
        assert_eq!(
            next_pause(&policy(), true, budget(10), 1.0, 0, 999),
            Duration::from_secs(15)
        );
        assert_eq!(next_pause(&policy(), true, budget(0), 1.0, 0, 0), MAX_PAUSE);
    }
}
