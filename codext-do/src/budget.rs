//! When the next poll runs: a budget, not a fixed interval. Used by the
//! server's channel between its passes and by the agent between its reads
//! of the droplet.
//!
//! Every DigitalOcean answer says how much of the token's hourly budget is
//! left (`ratelimit-limit`, `ratelimit-remaining`, `ratelimit-reset`), and
//! every server sharing the token spends from the same budget. The pause
//! before the next poll is the longest of:
//! * the *base*: `busy` while a login is in flight (a puzzle out, a user
//!   armed) or for `hot_for` after anything happened (a request, an
//!   answer, a publication); `idle` otherwise;
//! * the *share*: once this poller has spent `share` of the hourly limit
//!   within the last hour, it polls no faster than that share sustains at
//!   the calls a poll has been costing (bursts below the share are free);
//! * the *pressure*: once less than half the budget is left, the pause grows
//!   as the remainder shrinks, so servers sharing a token slow down together
//!   instead of exhausting it. A login in flight whose last step was within
//!   [`FLIGHT_WINDOW`] ([`Mode::Flight`]) is exempt: its few polls finish a login
//!   someone is waiting for, and stop by themselves; everything else
//!   (idle polling, the hot tail after a login) yields;
//! * the *jitter*: idle pauses vary by ±10 % so pollers that started together
//!   drift apart;
//! * the *reserve*: with `reserve` requests or fewer left, the pressure is
//!   at its height (the longest pause), and a login in flight polls only
//!   when the oldest counted request has expired (at least `idle` apart),
//!   so publishing puzzles and answers always has requests left;
//! * the *minute*: the token also allows only 250 requests a minute, which
//!   no header reports. [`Pacing`] measures how fast the token's budget is
//!   draining (the fall of `ratelimit-remaining` over the last minute, every
//!   poller's calls together); above [`MINUTE_TARGET`] (80 % of 250 a
//!   minute) the pause stretches by the excess, so a fleet that starts at
//!   once spreads itself out instead of meeting 429s (a login in flight is
//!   exempt, as from the pressure). Under pressure, or when the token drains
//!   faster than twice this poller's own calls (others share it), the
//!   target is also no more than what is left above the reserve can sustain
//!   until
//!   `ratelimit-reset` ([`drain_target`]): in a token's first hour nothing
//!   expires, and the budget must last until something does.
//!
//! With `N` pollers at idle on one token of limit `L` and reserve `R` (and
//! a share of 50 %), the pressure settles where the fleet's polls use what
//! is above the reserve: `N · 3600 / P = (L − R) − x` with
//! `P = 3600 / x` (x: requests left above the reserve), so every poller
//! polls about every `P ≈ 3600 · (N + 1) / (L − R)` seconds (`L` = 5,000,
//! `R` = 250: 16 s for 20 servers, 77 s for 100).
//!
//! [`next_pause`] is pure (tested with made-up budgets); [`Pacing`] keeps
//! what it needs between polls.

use crate::Budget;
use std::collections::VecDeque;
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

/// Token-wide drain, requests a second, above which pollers stretch their
/// pauses: 80 % of DigitalOcean's 250 a minute.
pub const MINUTE_TARGET: f64 = 0.8 * 250.0 / 60.0;
/// The drain is measured over this long at most, and only once the
/// observations span [`DRAIN_MIN_SPAN`].
const DRAIN_WINDOW: Duration = Duration::from_secs(60);
const DRAIN_MIN_SPAN: Duration = Duration::from_secs(5);

/// Longest pause ever chosen: what a login at a server of a saturated
/// fleet may wait for its first poll. (It also bounds a fleet: 5,000 an
/// hour carry at most ~100 servers' polls at this pace with room left for
/// logins.)
pub const MAX_PAUSE: Duration = Duration::from_secs(180);
/// A login in flight is exempt from the pressure this long after its last
/// step (a publication, an answer): long enough for an agent to read the
/// puzzle and answer, short enough that a login nobody finishes does not
/// poll fast on the fleet's budget.
pub const FLIGHT_WINDOW: Duration = Duration::from_secs(20);

/// What the poller is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing in flight, nothing happened within `hot_for`.
    Idle,
    /// Something happened within `hot_for`, or a login has been in flight
    /// longer than [`FLIGHT_WINDOW`] since its last step: fast, but yields
    /// to pressure.
    Hot,
    /// A login in flight whose last step was within [`FLIGHT_WINDOW`]:
    /// fast, and exempt from pressure (not from the share or the reserve).
    Flight,
}

/// The pause before the next pass. `calls_per_pass`: what a pass has been
/// costing (at least 1); `spent_last_hour`: this poller's calls in the
/// last hour; `now_unix`: the clock, for `ratelimit-reset`.
pub fn next_pause(
    p: &Policy,
    mode: Mode,
    budget: Option<Budget>,
    calls_per_pass: f64,
    spent_last_hour: u64,
    now_unix: u64,
) -> Duration {
    let base = if mode == Mode::Idle { p.idle } else { p.busy };
    let Some(b) = budget.filter(|b| b.limit > 0) else {
        return base;
    };
    let cpp = calls_per_pass.max(1.0);
    if b.remaining <= p.reserve && mode == Mode::Flight {
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
    // At or below the reserve this is the pressure at one request left:
    // the longest pause. (Waiting only "until the oldest request expires"
    // let a fleet's idle polls take every slot a sliding window frees, and
    // its publications then ate the reserve to nothing.)
    let spendable = b.remaining.saturating_sub(p.reserve) as f64;
    let half = limit / 2.0;
    let pressure = if spendable < half && mode != Mode::Flight {
        sustained.mul_f64(half / spendable.max(1.0))
    } else {
        Duration::ZERO
    };
    base.max(share).max(pressure).min(MAX_PAUSE)
}

/// The token-wide drain (requests a second) the pollers aim below:
/// [`MINUTE_TARGET`], and under pressure (less than half the limit left) or
/// when `shared` (others spend more of the token than this poller) no
/// faster than what is left above the reserve lasts until
/// `ratelimit-reset` (in a sliding hour that is filled evenly the reset is
/// near and this allows much; early in the hour, before anything expires,
/// it spreads what is left over the time until something does).
pub fn drain_target(p: &Policy, budget: Option<Budget>, now_unix: u64, shared: bool) -> f64 {
    match budget {
        Some(b) if b.limit > 0 && (shared || b.remaining < b.limit / 2) => {
            let spendable = b.remaining.saturating_sub(p.reserve) as f64;
            let until_reset = b.reset.saturating_sub(now_unix).max(1) as f64;
            MINUTE_TARGET.min(spendable / until_reset)
        }
        _ => MINUTE_TARGET,
    }
}

/// What one pass saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Something happened (a request, an answer, a publication).
    pub happened: bool,
    /// A login is in flight (a puzzle out, a user armed).
    pub in_flight: bool,
}

/// A poller's pacing state between passes: when something last happened,
/// what a pass costs (smoothed), and its calls within the last hour.
#[derive(Debug, Clone)]
pub struct Pacing {
    policy: Policy,
    last_activity: Option<Duration>,
    calls_per_pass: f64,
    spent: VecDeque<(Duration, u64)>,
    /// `ratelimit-remaining` as seen after each pass of the last minute.
    seen: VecDeque<(Duration, u64)>,
}

const HOUR: Duration = Duration::from_secs(3600);

impl Pacing {
    /// Fresh state for `policy`.
    pub fn new(policy: Policy) -> Pacing {
        Pacing {
            policy,
            last_activity: None,
            calls_per_pass: 1.0,
            spent: VecDeque::new(),
            seen: VecDeque::new(),
        }
    }

    /// This poller's own calls a second over the span of [`Pacing::drain`].
    fn own_rate(&self, now: Duration) -> f64 {
        let Some((t0, _)) = self.seen.front() else {
            return 0.0;
        };
        let span = now.saturating_sub(*t0).as_secs_f64().max(1.0);
        let calls: u64 = self
            .spent
            .iter()
            .filter(|(t, _)| t > t0)
            .map(|(_, c)| c)
            .sum();
        calls as f64 / span
    }

    /// The token's net drain (requests a second, every poller's together)
    /// over the last minute, once the observations span a few seconds.
    pub fn drain(&self) -> Option<f64> {
        let (t0, r0) = *self.seen.front()?;
        let (t1, r1) = *self.seen.back()?;
        let span = t1.saturating_sub(t0);
        (span >= DRAIN_MIN_SPAN).then(|| r0.saturating_sub(r1) as f64 / span.as_secs_f64())
    }

    /// The policy (the helper may change it between passes).
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// Records a pass that ended at `now` (monotonic) having cost `cost`
    /// API calls and seen `activity`; returns the pause before the next
    /// one given the last `budget` reported and the Unix time `now_unix`.
    pub fn after_pass(
        &mut self,
        now: Duration,
        now_unix: u64,
        cost: u64,
        activity: Activity,
        budget: Option<Budget>,
    ) -> Duration {
        self.calls_per_pass = 0.8 * self.calls_per_pass + 0.2 * cost as f64;
        self.spent.push_back((now, cost));
        while self
            .spent
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) > HOUR)
        {
            self.spent.pop_front();
        }
        if activity.happened {
            self.last_activity = Some(now);
        }
        let since = self.last_activity.map(|t| now.saturating_sub(t));
        let recent = since.is_some_and(|d| d < self.policy.hot_for);
        let urgent = since.is_some_and(|d| d < FLIGHT_WINDOW.min(self.policy.hot_for));
        let mode = match (activity.in_flight, recent, urgent) {
            (true, _, true) => Mode::Flight,
            (true, _, false) | (false, true, _) => Mode::Hot,
            (false, false, _) => Mode::Idle,
        };
        if let Some(b) = budget {
            self.seen.push_back((now, b.remaining));
            while self
                .seen
                .front()
                .is_some_and(|(t, _)| now.saturating_sub(*t) > DRAIN_WINDOW)
            {
                self.seen.pop_front();
            }
        }
        let spent: u64 = self.spent.iter().map(|(_, c)| c).sum();
        let pause = next_pause(
            &self.policy,
            mode,
            budget,
            self.calls_per_pass,
            spent,
            now_unix,
        );
        // Others share the token when it drains faster than twice this
        // poller's own calls explain.
        let own = self.own_rate(now);
        let shared = self.drain().is_some_and(|d| d > 2.0 * own);
        let target = drain_target(&self.policy, budget, now_unix, shared);
        let pause = match self.drain() {
            Some(rate) if rate > target && mode != Mode::Flight => {
                pause.mul_f64(rate / target.max(1e-3)).min(MAX_PAUSE)
            }
            _ => pause,
        };
        if mode == Mode::Idle {
            // ±10 %: servers that started together (a fleet's boot, the
            // end of an outage) drift apart instead of polling in step.
            let r = codext_core::random::bytes::<2>().map_or(0.5, |b| {
                f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX)
            });
            pause.mul_f64(0.9 + 0.2 * r)
        } else {
            pause
        }
    }
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

    /// Within the ±10 % jitter of idle pauses.
    fn near(got: Duration, want: Duration) {
        assert!(
            got >= want.mul_f64(0.9) && got <= want.mul_f64(1.1),
            "{got:?} is not {want:?} ± 10 %"
        );
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
            next_pause(&policy(), Mode::Hot, None, 1.0, 0, 0),
            Duration::from_secs(1)
        );
        assert_eq!(
            next_pause(&policy(), Mode::Idle, None, 1.0, 0, 0),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn given_full_budget_then_bursts_are_free_until_the_share_is_spent() {
        let p = policy();
        // Below the share (2,500 an hour): the base interval.
        assert_eq!(
            next_pause(&p, Mode::Hot, budget(5000), 20.0, 100, 0),
            Duration::from_secs(1)
        );
        // Share spent: 0.5 × 5000 an hour at 1 call a pass is a pass every 1.44 s.
        assert_eq!(
            next_pause(&p, Mode::Hot, budget(5000), 1.0, 2500, 0),
            Duration::from_secs_f64(1.44)
        );
        // Idle is slower than the share allows anyway.
        assert_eq!(
            next_pause(&p, Mode::Idle, budget(5000), 1.0, 2500, 0),
            Duration::from_secs(15)
        );
        // Expensive passes slow down.
        assert!(next_pause(&p, Mode::Hot, budget(5000), 5.0, 2500, 0) > Duration::from_secs(7));
    }

    #[test]
    fn given_budget_draining_then_pause_grows_monotonically() {
        let mut last = Duration::ZERO;
        for remaining in [5000, 3000, 2000, 1000, 600, 300, 251, 250, 100, 0] {
            let d = next_pause(&policy(), Mode::Hot, budget(remaining), 1.0, 0, 0);
            assert!(d >= last, "{remaining}: {d:?} < {last:?}");
            last = d;
        }
        assert!(last > Duration::from_secs(60), "{last:?}");
    }

    #[test]
    fn given_reserve_reached_then_the_longest_pause_and_a_login_in_flight_waits_for_the_reset() {
        for remaining in [251, 250, 10, 0] {
            assert_eq!(
                next_pause(&policy(), Mode::Hot, budget(remaining), 1.0, 0, 900),
                MAX_PAUSE
            );
            assert_eq!(
                next_pause(&policy(), Mode::Idle, budget(remaining), 1.0, 0, 900),
                MAX_PAUSE
            );
        }
        // A login in flight waits until the oldest request expires, at
        // least the idle period.
        assert_eq!(
            next_pause(&policy(), Mode::Flight, budget(250), 1.0, 0, 900),
            Duration::from_secs(100)
        );
        assert_eq!(
            next_pause(&policy(), Mode::Flight, budget(10), 1.0, 0, 999),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn given_pressure_then_a_login_in_flight_keeps_its_pace_and_idle_yields() {
        let p = policy();
        assert_eq!(
            next_pause(&p, Mode::Flight, budget(400), 1.0, 0, 0),
            Duration::from_secs(1)
        );
        assert!(next_pause(&p, Mode::Hot, budget(400), 1.0, 0, 0) > Duration::from_secs(20));
        // The share still holds in flight.
        assert_eq!(
            next_pause(&p, Mode::Flight, budget(400), 1.0, 2500, 0),
            Duration::from_secs_f64(1.44)
        );
    }

    #[test]
    fn given_passes_then_pacing_is_in_flight_only_while_recent_and_counts_the_hour() {
        let mut pacing = Pacing::new(policy());
        let s = Duration::from_secs;
        let flight = Activity {
            happened: true,
            in_flight: true,
        };
        let waiting = Activity {
            happened: false,
            in_flight: true,
        };
        // Under pressure: in flight and recent keeps the busy pace.
        assert_eq!(pacing.after_pass(s(0), 0, 1, flight, budget(400)), s(1));
        assert_eq!(pacing.after_pass(s(15), 0, 1, waiting, budget(400)), s(1));
        // A puzzle nobody answers stops being urgent after FLIGHT_WINDOW.
        assert!(pacing.after_pass(s(21), 0, 1, waiting, budget(400)) > s(20));
        // Idle without pressure: the idle pace.
        near(
            pacing.after_pass(s(200), 0, 1, Activity::default(), budget(5000)),
            s(15),
        );
        // The hour's spending: 2,500 calls an hour ago no longer count.
        let mut pacing = Pacing::new(policy());
        pacing.after_pass(s(0), 0, 2500, Activity::default(), budget(5000));
        assert!(pacing.after_pass(s(1), 0, 1, flight, budget(5000)) > s(1));
        assert_eq!(pacing.after_pass(s(3700), 0, 1, flight, budget(5000)), s(1));
    }

    #[test]
    fn given_the_token_draining_faster_than_the_minute_allows_then_idle_polls_stretch() {
        let s = Duration::from_secs;
        let idle = Activity::default();
        let mut pacing = Pacing::new(policy());
        assert_eq!(pacing.drain(), None);
        // 400 requests in 15 s by the whole fleet: 26.7 a second.
        near(pacing.after_pass(s(0), 0, 1, idle, budget(4600)), s(15));
        let stretched = pacing.after_pass(s(15), 0, 1, idle, budget(4200));
        assert!((pacing.drain().unwrap() - 400.0 / 15.0).abs() < 1e-9);
        near(stretched, s(15).mul_f64(400.0 / 15.0 / MINUTE_TARGET));
        // A login in flight keeps its pace.
        let flight = Activity {
            happened: true,
            in_flight: true,
        };
        assert_eq!(pacing.after_pass(s(16), 0, 1, flight, budget(4190)), s(1));
        // A slow drain changes nothing; a budget refilling is no drain.
        let mut pacing = Pacing::new(policy());
        pacing.after_pass(s(0), 0, 1, idle, budget(4000));
        near(pacing.after_pass(s(30), 0, 1, idle, budget(3950)), s(15));
        near(pacing.after_pass(s(60), 0, 1, idle, budget(4500)), s(15));
    }

    #[test]
    fn given_pressure_early_in_the_hour_then_the_drain_target_spreads_the_rest_until_the_reset() {
        let p = policy();
        // Plenty left: the minute's target.
        assert_eq!(drain_target(&p, budget(4000), 0, false), MINUTE_TARGET);
        // 1,250 above the reserve, 1,000 s to the reset: 1.25 a second.
        assert_eq!(drain_target(&p, budget(1500), 0, false), 1.25);
        // A reset close by allows up to the minute's target.
        assert_eq!(drain_target(&p, budget(1500), 999, false), MINUTE_TARGET);
        assert_eq!(drain_target(&p, budget(200), 0, false), 0.0);
        // Shared with others: the spread applies before the pressure does.
        assert_eq!(drain_target(&p, budget(3000), 0, true), 2.75);
        assert_eq!(drain_target(&p, budget(3000), 0, false), MINUTE_TARGET);
    }
}
