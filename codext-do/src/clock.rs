//! The clock the client paces itself by: the real one, or one running
//! faster than real time for simulations (the fleet benchmark runs many
//! servers against an emulator whose rate-limit windows run at the same
//! speed, so an hour's budget is spent in minutes).
//!
//! Everything time-related in [`crate::Client`] and [`crate::budget`]
//! goes through a [`Clock`]: the monotonic time used for waits, the Unix
//! time compared with `ratelimit-reset`, and the sleeps themselves.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of time and a way to wait.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Monotonic time since the clock's start.
    fn now(&self) -> Duration;
    /// Time since the Unix epoch.
    fn unix(&self) -> Duration;
    /// Waits `d` of this clock's time.
    fn sleep(&self, d: Duration);
    /// The real time that `d` of this clock's time takes (for waits that
    /// are not sleeps: a condition variable's timeout).
    fn real(&self, d: Duration) -> Duration {
        d
    }
}

/// A clock shared by a client and whoever paces with it.
pub type SharedClock = Arc<dyn Clock>;

/// Real time.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
    fn unix(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
    fn sleep(&self, d: Duration) {
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }
}

/// The real clock.
pub fn system() -> SharedClock {
    Arc::new(SystemClock {
        start: Instant::now(),
    })
}

/// Time running `scale` times faster than real time from `start`, when
/// the Unix time was `unix_at_start` (for simulations only).
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    start: Instant,
    unix_at_start: Duration,
    scale: f64,
}

impl ScaledClock {
    /// A clock that reads `unix_at_start` at the real instant `start` and
    /// then runs `scale` (≥ 1) times faster.
    pub fn new(start: Instant, unix_at_start: Duration, scale: f64) -> ScaledClock {
        ScaledClock {
            start,
            unix_at_start,
            scale: scale.max(1.0),
        }
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> Duration {
        self.start.elapsed().mul_f64(self.scale)
    }
    fn unix(&self) -> Duration {
        self.unix_at_start + self.now()
    }
    fn sleep(&self, d: Duration) {
        if !d.is_zero() {
            std::thread::sleep(d.div_f64(self.scale));
        }
    }
    fn real(&self, d: Duration) -> Duration {
        d.div_f64(self.scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_scaled_clock_then_time_runs_faster_and_sleeps_shorter() {
        let c = ScaledClock::new(Instant::now(), Duration::from_secs(1000), 100.0);
        let real = Instant::now();
        c.sleep(Duration::from_secs(5));
        let took = real.elapsed();
        assert!(
            took >= Duration::from_millis(50) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert!(c.now() >= Duration::from_secs(5), "{:?}", c.now());
        assert!(c.unix() >= Duration::from_secs(1005));
    }
}
