//! When the next poll runs: a budget, not a fixed interval. Used by the
//! server's channel between its passes and by the agent between its reads
//! of the droplet.
//!
//! Every DigitalOcean answer says how much of the token's hourly budget is
//! left (`ratelimit-limit`, `ratelimit-remaining`, `ratelimit-reset`), and
//! every server sharing the token spends from the same budget. The pause
//! before the next poll is the longest of:
//! * the *base*: `busy` while a login is in flight (a puzzle out, a user
//!   armed); otherwise the *fleet pace* (below), at least `idle`, and for
//!   `hot_for` after anything happened (a request, an answer, a
//!   publication) a tenth of the fleet pace, at least `busy` — unless the
//!   login that happened was announced by a wake (below): an agent that
//!   knocks knocks again next time, and the hot tail is for those that do
//!   not;
//! * the *fleet pace*: the poller estimates how many pollers share the
//!   token ([`fleet_size`]: the token's spending, every poller's calls
//!   together, against its own) and paces itself so that the whole fleet
//!   spends no more than `share` of what is above the reserve an hour:
//!   `F · 3600 · c / (share · (L − R))` seconds with `F` pollers, `c` calls
//!   a pass, limit `L` and reserve `R` (at most [`MAX_IDLE_PAUSE`]). A login
//!   that must not wait for that long is announced by a *wake* ([`Pacing::wake`]);
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
//!   minute) the pause stretches by the excess (a login in flight is
//!   exempt, as from the pressure). Under pressure the target is also no
//!   more than what is left above the reserve can sustain until
//!   `ratelimit-reset` ([`drain_target`]): in a token's first hour nothing
//!   expires, and the budget must last until something does.
//!
//! **Wakes.** A server learns of a login at once when the agent knocks (an
//! SSH attempt at an unknown codext name, which the helper passes on): a
//! wake ends the pause early. Wakes are rate-limited by a bucket of
//! [`WAKE_BURST`] that refills at [`WAKE_PART`] of the fleet's share,
//! divided among the fleet; a wake whose pass found something (a request,
//! an answer) gives its token back, so a stranger knocking on the SSH port
//! can make the server spend no more than that part of its share, while
//! agents' knocks always count.
//!
//! [`next_pause`] and [`fleet_size`] are pure (tested with made-up
//! budgets); [`Pacing`] keeps what it needs between polls.

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
    /// Share of the token's hourly budget this server may spend (0–1]; a
    /// fleet sharing the token spends that share of it together.
    pub share: f64,
    /// Requests always kept for publishing.
    pub reserve: u64,
}

/// Token-wide drain, requests a second, above which pollers stretch their
/// pauses: 80 % of DigitalOcean's 250 a minute.
pub const MINUTE_TARGET: f64 = 0.8 * 250.0 / 60.0;
/// The minute's drain is measured over this long at most, and only once
/// the observations span [`DRAIN_MIN_SPAN`].
const DRAIN_WINDOW: Duration = Duration::from_secs(60);
const DRAIN_MIN_SPAN: Duration = Duration::from_secs(5);
/// The fleet's size is estimated over this long (several idle pauses of a
/// large fleet).
const FLEET_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Longest pause chosen by the pressure or for the hot tail.
pub const MAX_PAUSE: Duration = Duration::from_secs(180);
/// Longest idle pause the fleet pace chooses (a fleet of 100 sharing a
/// token fits its idle polls at about 2.5 minutes; see the module docs).
pub const MAX_IDLE_PAUSE: Duration = Duration::from_secs(600);
/// The hot tail after a login polls this many times faster than the fleet
/// pace (at least `busy` apart).
pub const HOT_SPEEDUP: f64 = 10.0;
/// Wakes honoured in a burst.
pub const WAKE_BURST: f64 = 3.0;
/// Part of the fleet's share that wakes finding nothing may spend.
pub const WAKE_PART: f64 = 0.1;
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
    /// to pressure and to the fleet.
    Hot,
    /// A login in flight whose last step was within [`FLIGHT_WINDOW`]:
    /// fast, and exempt from pressure (not from the share or the reserve).
    Flight,
}

/// Requests an hour the whole fleet may spend: `share` of what is above
/// the reserve.
fn fleet_allowance(p: &Policy, b: &Budget) -> f64 {
    (b.limit.saturating_sub(p.reserve) as f64 * p.share.clamp(0.001, 1.0)).max(1.0)
}

/// The fleet pace: the pause at which `fleet` pollers, each spending
/// `calls_per_pass` a poll, spend the fleet's allowance an hour together.
pub fn fleet_pause(
    p: &Policy,
    budget: Option<Budget>,
    calls_per_pass: f64,
    fleet: f64,
) -> Duration {
    match budget.filter(|b| b.limit > 0) {
        Some(b) => Duration::from_secs_f64(
            (3600.0 * calls_per_pass.max(1.0) * fleet.max(1.0) / fleet_allowance(p, &b))
                .min(MAX_IDLE_PAUSE.as_secs_f64()),
        ),
        None => Duration::ZERO,
    }
}

/// How many pollers like this one the token's spending amounts to: the
/// token's spending rate over this poller's own, from two views that
/// agree in a token's first hour and take over from each other after it:
/// * `window`: the fall of `ratelimit-remaining` over the last minutes
///   against this poller's own calls then (`(token drain, own rate)`, a
///   second each; once requests expire from the sliding hour the fall
///   understates the spending);
/// * `hour`: what the token has spent in its sliding hour
///   (`limit − remaining`) against this poller's own calls within the hour
///   (`(token spent, own spent)`), once the poller has run for an hour.
///
/// At least 1: a poller alone on its token.
pub fn fleet_size(window: Option<(f64, f64)>, hour: Option<(u64, u64)>) -> f64 {
    let by_window = window
        .filter(|(_, own)| *own > 0.0)
        .map_or(0.0, |(drain, own)| drain / own);
    let by_hour = hour
        .filter(|(_, own)| *own > 0)
        .map_or(0.0, |(token, own)| token as f64 / own as f64);
    by_window.max(by_hour).max(1.0)
}

/// The pause before the next pass. `calls_per_pass`: what a pass has been
/// costing (at least 1); `spent_last_hour`: this poller's calls in the
/// last hour; `now_unix`: the clock, for `ratelimit-reset`; `fleet`: the
/// pollers sharing the token ([`fleet_size`]).
pub fn next_pause(
    p: &Policy,
    mode: Mode,
    budget: Option<Budget>,
    calls_per_pass: f64,
    spent_last_hour: u64,
    now_unix: u64,
    fleet: f64,
) -> Duration {
    let paced = fleet_pause(p, budget, calls_per_pass, fleet);
    let base = match mode {
        Mode::Idle => p.idle.max(paced),
        Mode::Hot => p.busy.max(paced.div_f64(HOT_SPEEDUP)).min(MAX_PAUSE),
        Mode::Flight => p.busy,
    };
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
        sustained.mul_f64(half / spendable.max(1.0)).min(MAX_PAUSE)
    } else {
        Duration::ZERO
    };
    let cap = if mode == Mode::Idle {
        MAX_IDLE_PAUSE
    } else {
        MAX_PAUSE
    };
    base.max(share).max(pressure).min(cap)
}

/// The token-wide drain (requests a second) the pollers aim below:
/// [`MINUTE_TARGET`], and under pressure (less than half the limit left)
/// no faster than what is left above the reserve lasts until
/// `ratelimit-reset` (in a sliding hour that is filled evenly the reset is
/// near and this allows much; early in the hour, before anything expires,
/// it spreads what is left over the time until something does).
pub fn drain_target(p: &Policy, budget: Option<Budget>, now_unix: u64) -> f64 {
    match budget {
        Some(b) if b.limit > 0 && b.remaining < b.limit / 2 => {
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
/// what a pass costs (smoothed), its calls within the last hour, the
/// budget as seen after each pass, and its wake bucket.
#[derive(Debug, Clone)]
pub struct Pacing {
    policy: Policy,
    last_activity: Option<Duration>,
    calls_per_pass: f64,
    spent: VecDeque<(Duration, u64)>,
    /// `ratelimit-remaining` as seen after each pass of [`FLEET_WINDOW`].
    seen: VecDeque<(Duration, u64)>,
    /// The last fleet estimate.
    fleet: f64,
    /// Wake tokens, and when they were last refilled.
    wakes: (f64, Option<Duration>),
    /// The pass under way was started by a wake.
    woken: bool,
    /// The last login began with a wake (no hot tail after it).
    knocked: bool,
    /// The last pass saw a login in flight.
    was_in_flight: bool,
    /// The last budget seen (for the wake bucket's refill).
    last_budget: Option<Budget>,
    /// The first pass.
    started: Option<Duration>,
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
            fleet: 1.0,
            wakes: (WAKE_BURST, None),
            woken: false,
            knocked: false,
            was_in_flight: false,
            last_budget: None,
            started: None,
        }
    }

    /// The pollers this one believes share its token (at least 1).
    pub fn fleet(&self) -> f64 {
        self.fleet
    }

    /// This poller's own calls from `t0` (exclusive) on.
    fn own_since(&self, t0: Duration) -> u64 {
        self.spent
            .iter()
            .filter(|(t, _)| *t > t0)
            .map(|(_, c)| c)
            .sum()
    }

    /// The token's net drain (requests a second, every poller's together)
    /// between the first observation at or after `from` and the last, once
    /// they span a few seconds; with the start of that span.
    fn drain_since(&self, from: Duration) -> Option<(f64, Duration, Duration)> {
        let (t0, r0) = *self.seen.iter().find(|(t, _)| *t >= from)?;
        let (t1, r1) = *self.seen.back()?;
        let span = t1.saturating_sub(t0);
        (span >= DRAIN_MIN_SPAN)
            .then(|| (r0.saturating_sub(r1) as f64 / span.as_secs_f64(), t0, span))
    }

    /// The token's net drain over the last minute (requests a second).
    pub fn drain(&self) -> Option<f64> {
        let now = self.seen.back()?.0;
        self.drain_since(now.saturating_sub(DRAIN_WINDOW))
            .map(|(d, _, _)| d)
    }

    /// The policy (the helper may change it between passes).
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    fn refill_wakes(&mut self, now: Duration) {
        let (tokens, last) = self.wakes;
        let per_hour = self.last_budget.filter(|b| b.limit > 0).map_or(
            WAKE_PART * 3600.0 / self.policy.busy.as_secs_f64().max(1.0),
            |b| WAKE_PART * fleet_allowance(&self.policy, &b),
        ) / self.fleet.max(1.0);
        let gained = last.map_or(0.0, |t| {
            now.saturating_sub(t).as_secs_f64() * per_hour / 3600.0
        });
        self.wakes = ((tokens + gained).min(WAKE_BURST), Some(now));
    }

    /// A wake arrived at `now` (an agent knocked): true when it may end the
    /// pause early, which takes a token from the wake bucket; the pass it
    /// starts gives the token back if it finds something
    /// ([`Pacing::after_pass`]).
    pub fn wake(&mut self, now: Duration) -> bool {
        self.refill_wakes(now);
        if self.wakes.0 >= 1.0 {
            self.wakes.0 -= 1.0;
            self.woken = true;
            true
        } else {
            false
        }
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
        if std::mem::take(&mut self.woken) && activity.happened {
            // An agent's knock: it does not count against the bucket.
            self.wakes.0 = (self.wakes.0 + 1.0).min(WAKE_BURST);
            self.knocked = true;
        } else if activity.happened && !self.was_in_flight {
            // A login found by polling: its agent does not knock.
            self.knocked = false;
        }
        self.was_in_flight = activity.in_flight;
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
            (true, _, false) => Mode::Hot,
            (false, true, _) if !self.knocked => Mode::Hot,
            (false, _, _) => Mode::Idle,
        };
        if let Some(b) = budget {
            self.seen.push_back((now, b.remaining));
            while self
                .seen
                .front()
                .is_some_and(|(t, _)| now.saturating_sub(*t) > FLEET_WINDOW)
            {
                self.seen.pop_front();
            }
            self.last_budget = Some(b);
        }
        let spent: u64 = self.spent.iter().map(|(_, c)| c).sum();
        // The fleet: the token's spending against this poller's own, over
        // the window (the fall of the remainder) and the hour.
        let window = self
            .drain_since(now.saturating_sub(FLEET_WINDOW))
            .map(|(drain, t0, span)| (drain, self.own_since(t0) as f64 / span.as_secs_f64()));
        // The hour's view only once this poller has seen a whole hour:
        // before that the token's hour holds calls it never saw (another
        // process's, this one's before a restart: each `codext connect` is
        // a fresh poller on the agent's token) and would count them as a
        // fleet.
        let started = *self.started.get_or_insert(now);
        let hour = budget
            .filter(|_| now.saturating_sub(started) >= HOUR)
            .map(|b| (b.limit.saturating_sub(b.remaining), spent));
        let estimate = fleet_size(window, hour);
        // Smoothed, so one odd observation does not swing the pace.
        self.fleet = if self.seen.len() < 3 {
            estimate
        } else {
            0.5 * self.fleet + 0.5 * estimate
        };
        let pause = next_pause(
            &self.policy,
            mode,
            budget,
            self.calls_per_pass,
            spent,
            now_unix,
            self.fleet,
        );
        let target = drain_target(&self.policy, budget, now_unix);
        let cap = if mode == Mode::Idle {
            MAX_IDLE_PAUSE
        } else {
            MAX_PAUSE
        };
        let pause = match self.drain() {
            Some(rate) if rate > target && mode != Mode::Flight => {
                pause.mul_f64(rate / target.max(1e-3)).min(cap.max(pause))
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
            next_pause(&policy(), Mode::Hot, None, 1.0, 0, 0, 1.0),
            Duration::from_secs(1)
        );
        assert_eq!(
            next_pause(&policy(), Mode::Idle, None, 1.0, 0, 0, 1.0),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn given_full_budget_then_bursts_are_free_until_the_share_is_spent() {
        let p = policy();
        // Below the share (2,500 an hour): the base interval.
        assert_eq!(
            next_pause(&p, Mode::Hot, budget(5000), 1.0, 100, 0, 1.0),
            Duration::from_secs(1)
        );
        // Share spent: 0.5 × 5000 an hour at 1 call a pass is a pass every 1.44 s.
        assert_eq!(
            next_pause(&p, Mode::Hot, budget(5000), 1.0, 2500, 0, 1.0),
            Duration::from_secs_f64(1.44)
        );
        // Idle is slower than the share allows anyway.
        assert_eq!(
            next_pause(&p, Mode::Idle, budget(5000), 1.0, 2500, 0, 1.0),
            Duration::from_secs(15)
        );
        // Expensive passes slow down.
        assert!(
            next_pause(&p, Mode::Hot, budget(5000), 5.0, 2500, 0, 1.0) > Duration::from_secs(7)
        );
    }

    #[test]
    fn given_budget_draining_then_pause_grows_monotonically() {
        let mut last = Duration::ZERO;
        for remaining in [5000, 3000, 2000, 1000, 600, 300, 251, 250, 100, 0] {
            let d = next_pause(&policy(), Mode::Hot, budget(remaining), 1.0, 0, 0, 1.0);
            assert!(d >= last, "{remaining}: {d:?} < {last:?}");
            last = d;
        }
        assert!(last > Duration::from_secs(60), "{last:?}");
    }

    #[test]
    fn given_reserve_reached_then_the_longest_pause_and_a_login_in_flight_waits_for_the_reset() {
        for remaining in [251, 250, 10, 0] {
            assert_eq!(
                next_pause(&policy(), Mode::Hot, budget(remaining), 1.0, 0, 900, 1.0),
                MAX_PAUSE
            );
            assert_eq!(
                next_pause(&policy(), Mode::Idle, budget(remaining), 1.0, 0, 900, 1.0),
                MAX_PAUSE
            );
        }
        // A login in flight waits until the oldest request expires, at
        // least the idle period.
        assert_eq!(
            next_pause(&policy(), Mode::Flight, budget(250), 1.0, 0, 900, 1.0),
            Duration::from_secs(100)
        );
        assert_eq!(
            next_pause(&policy(), Mode::Flight, budget(10), 1.0, 0, 999, 1.0),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn given_pressure_then_a_login_in_flight_keeps_its_pace_and_idle_yields() {
        let p = policy();
        assert_eq!(
            next_pause(&p, Mode::Flight, budget(400), 1.0, 0, 0, 1.0),
            Duration::from_secs(1)
        );
        assert!(next_pause(&p, Mode::Hot, budget(400), 1.0, 0, 0, 1.0) > Duration::from_secs(20));
        // The share still holds in flight.
        assert_eq!(
            next_pause(&p, Mode::Flight, budget(400), 1.0, 2500, 0, 1.0),
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
        // Idle without pressure, alone on the token: the idle pace.
        let mut pacing = Pacing::new(policy());
        near(
            pacing.after_pass(s(200), 0, 1, Activity::default(), budget(4999)),
            s(15),
        );
        // The hour's spending: 2,500 calls an hour ago no longer count.
        let mut pacing = Pacing::new(policy());
        pacing.after_pass(s(0), 0, 2500, Activity::default(), budget(5000));
        assert!(pacing.after_pass(s(1), 0, 1, flight, budget(5000)) > s(1));
        assert_eq!(pacing.after_pass(s(3700), 0, 1, flight, budget(5000)), s(1));
    }

    #[test]
    fn given_a_login_announced_by_a_knock_then_no_hot_tail_after_it_and_after_a_polled_login_one() {
        let s = Duration::from_secs;
        let flight = Activity {
            happened: true,
            in_flight: true,
        };
        let armed = Activity {
            happened: true,
            in_flight: false,
        };
        let quiet = Activity::default();
        // Found by polling: the request, then the answer; afterwards the
        // hot tail (a tenth of the fleet pace, at least busy).
        let mut pacing = Pacing::new(policy());
        assert_eq!(pacing.after_pass(s(0), 0, 8, flight, budget(4990)), s(1));
        assert_eq!(pacing.after_pass(s(2), 0, 8, armed, budget(4980)), s(1));
        let hot = pacing.after_pass(s(3), 0, 1, quiet, budget(4979));
        assert!(hot < s(5), "{hot:?}");
        // Announced by a knock: back to the idle pace once the user is armed.
        let mut pacing = Pacing::new(policy());
        assert!(pacing.wake(s(0)));
        assert_eq!(pacing.after_pass(s(1), 0, 8, flight, budget(4990)), s(1));
        near(pacing.after_pass(s(3), 0, 8, armed, budget(4980)), s(15));
        near(pacing.after_pass(s(18), 0, 1, quiet, budget(4979)), s(15));
        // The next login found by polling brings the hot tail back.
        assert_eq!(pacing.after_pass(s(33), 0, 8, flight, budget(4970)), s(1));
        assert_eq!(pacing.after_pass(s(35), 0, 8, armed, budget(4960)), s(1));
        assert!(pacing.after_pass(s(36), 0, 1, quiet, budget(4959)) < s(5));
    }

    #[test]
    fn given_the_token_draining_faster_than_the_minute_allows_then_idle_polls_stretch() {
        let s = Duration::from_secs;
        let idle = Activity::default();
        let mut pacing = Pacing::new(policy());
        assert_eq!(pacing.drain(), None);
        near(pacing.after_pass(s(0), 0, 1, idle, budget(4999)), s(15));
        // 400 requests in 15 s by the whole fleet (26.7 a second, far above
        // 250 a minute), 1 of them this poller's: the longest idle pause.
        let stretched = pacing.after_pass(s(15), 0, 1, idle, budget(4599));
        assert!((pacing.drain().unwrap() - 400.0 / 15.0).abs() < 1e-9);
        near(stretched, MAX_IDLE_PAUSE);
        // A login in flight keeps its pace.
        let flight = Activity {
            happened: true,
            in_flight: true,
        };
        assert_eq!(pacing.after_pass(s(16), 0, 1, flight, budget(4590)), s(1));
        // A slow drain of its own changes nothing; a budget refilling is
        // no drain.
        let mut pacing = Pacing::new(policy());
        pacing.after_pass(s(0), 0, 1, idle, budget(4999));
        near(pacing.after_pass(s(30), 0, 1, idle, budget(4998)), s(15));
        near(pacing.after_pass(s(60), 0, 1, idle, budget(4999)), s(15));
    }

    #[test]
    fn given_pressure_early_in_the_hour_then_the_drain_target_spreads_the_rest_until_the_reset() {
        let p = policy();
        // Plenty left: the minute's target.
        assert_eq!(drain_target(&p, budget(4000), 0), MINUTE_TARGET);
        // 1,250 above the reserve, 1,000 s to the reset: 1.25 a second.
        assert_eq!(drain_target(&p, budget(1500), 0), 1.25);
        // A reset close by allows up to the minute's target.
        assert_eq!(drain_target(&p, budget(1500), 999), MINUTE_TARGET);
        assert_eq!(drain_target(&p, budget(200), 0), 0.0);
        assert_eq!(drain_target(&p, budget(3000), 0), MINUTE_TARGET);
    }

    #[test]
    fn given_the_token_spent_by_others_then_the_fleet_size_is_its_share_of_the_spending() {
        // Alone: the token's spending is this poller's own.
        assert_eq!(fleet_size(Some((0.1, 0.1)), Some((300, 300))), 1.0);
        assert_eq!(fleet_size(None, None), 1.0);
        // A hundred alike: a hundred times its own.
        assert_eq!(fleet_size(Some((10.0, 0.1)), None), 100.0);
        // After the first hour the remainder stops falling (requests
        // expire as fast as they are made); the hour still tells.
        assert_eq!(fleet_size(Some((0.0, 0.1)), Some((4000, 40))), 100.0);
        // No own calls yet: nothing to compare with.
        assert_eq!(fleet_size(Some((5.0, 0.0)), Some((100, 0))), 1.0);
    }

    #[test]
    fn given_a_fleet_then_idle_polls_fit_the_share_and_the_hot_tail_shrinks_with_it() {
        let p = policy();
        // 2,375 an hour for the fleet (half of 5,000 − 250).
        assert_eq!(
            fleet_pause(&p, budget(5000), 1.0, 100.0),
            Duration::from_secs_f64(3600.0 * 100.0 / 2375.0)
        );
        // Alone the idle period is the floor.
        assert_eq!(
            next_pause(&p, Mode::Idle, budget(5000), 1.0, 0, 0, 1.0),
            Duration::from_secs(15)
        );
        let idle = next_pause(&p, Mode::Idle, budget(5000), 1.0, 0, 0, 100.0);
        assert_eq!(idle, Duration::from_secs_f64(3600.0 * 100.0 / 2375.0));
        // 100 pollers at that pace spend 2,375 an hour: within the share,
        // and 40 a minute, far below 250.
        let per_hour = 100.0 * 3600.0 / idle.as_secs_f64();
        assert!((per_hour - 2375.0).abs() < 1e-6, "{per_hour}");
        assert_eq!(
            next_pause(&p, Mode::Hot, budget(5000), 1.0, 0, 0, 100.0),
            idle.div_f64(HOT_SPEEDUP)
        );
        // A login in flight keeps its pace whatever the fleet.
        assert_eq!(
            next_pause(&p, Mode::Flight, budget(5000), 1.0, 0, 0, 100.0),
            Duration::from_secs(1)
        );
        // Never longer than the longest idle pause.
        assert_eq!(
            next_pause(&p, Mode::Idle, budget(5000), 1.0, 0, 0, 1e6),
            MAX_IDLE_PAUSE
        );
    }

    #[test]
    fn given_pollers_sharing_a_token_then_each_learns_the_fleet_from_the_remainders_fall() {
        let s = Duration::from_secs;
        let idle = Activity::default();
        let mut pacing = Pacing::new(policy());
        // Each pass costs 1; the token falls by 20 between passes 15 s
        // apart: 20 pollers alike.
        let mut remaining = 5000;
        let mut pause = s(15);
        for i in 0..6u64 {
            pause = pacing.after_pass(s(15 * i), 0, 1, idle, budget(remaining));
            remaining -= 20;
        }
        assert!((pacing.fleet() - 20.0).abs() < 2.0, "{}", pacing.fleet());
        near(
            pause,
            s(15).max(fleet_pause(
                &policy(),
                budget(remaining),
                1.0,
                pacing.fleet(),
            )),
        );
        assert!(pause > s(25), "{pause:?}");
    }

    #[test]
    fn given_a_fresh_poller_on_a_token_others_spent_earlier_then_it_is_not_taken_for_a_fleet() {
        // A new `codext connect` on an agent token that earlier logins
        // spent 1,000 of: alone now, so the busy pace.
        let s = Duration::from_secs;
        let mut pacing = Pacing::new(policy());
        let hot = Activity {
            happened: true,
            in_flight: false,
        };
        assert_eq!(pacing.after_pass(s(0), 0, 3, hot, budget(4000)), s(1));
        assert_eq!(pacing.after_pass(s(6), 0, 1, hot, budget(3999)), s(1));
        assert!(pacing.fleet() < 1.5, "{}", pacing.fleet());
    }

    #[test]
    fn given_wakes_then_a_burst_is_honoured_and_fruitless_ones_run_out_but_productive_ones_do_not()
    {
        let s = Duration::from_secs;
        let mut pacing = Pacing::new(policy());
        pacing.after_pass(s(0), 0, 1, Activity::default(), budget(5000));
        // Fruitless wakes: the burst, then no more until the bucket refills.
        for i in 0..3 {
            assert!(pacing.wake(s(1 + i)), "wake {i}");
            pacing.after_pass(s(1 + i), 0, 1, Activity::default(), budget(5000));
        }
        assert!(!pacing.wake(s(4)));
        // 10 % of 2,375 an hour for one server: one every 15.2 s.
        assert!(!pacing.wake(s(12)));
        assert!(pacing.wake(s(20)));
        pacing.after_pass(s(20), 0, 1, Activity::default(), budget(5000));
        // An agent's knock finds its request: the token comes back.
        let found = Activity {
            happened: true,
            in_flight: true,
        };
        let mut pacing = Pacing::new(policy());
        for i in 0..10 {
            assert!(pacing.wake(s(i)), "wake {i}");
            pacing.after_pass(s(i), 0, 3, found, budget(5000));
        }
    }
}
