//! A wake-up bell between two threads of one process: one side rings, the
//! other waits for a ring with a timeout. Rings while nobody waits are
//! kept (as one), so a ring during a pass is not lost.
//!
//! The helper rings its bell when an SSH attempt names an unknown codext
//! user (an agent knocking after posting its request), and the channel's
//! `wait` request listens on it; the fleet benchmark rings a channel's
//! bell directly. Nothing here decides whether a ring is worth an API
//! call: the channel's pacing does (`codext_do::budget::Pacing::wake`).

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A bell (see the module docs).
#[derive(Debug, Default)]
pub struct Bell {
    rung: Mutex<bool>,
    cond: Condvar,
}

impl Bell {
    /// A bell not yet rung.
    pub const fn new() -> Bell {
        Bell {
            rung: Mutex::new(false),
            cond: Condvar::new(),
        }
    }

    /// Rings: the waiter (or the next one) returns at once.
    pub fn ring(&self) {
        *self.rung.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cond.notify_all();
    }

    /// Waits up to `timeout` (real time) for a ring; true if one came (and
    /// takes it).
    pub fn listen(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut rung = self.rung.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if std::mem::take(&mut *rung) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            rung = match self.cond.wait_timeout(rung, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn given_a_ring_before_or_during_the_wait_then_the_wait_ends_and_takes_it() {
        let bell = Arc::new(Bell::new());
        assert!(!bell.listen(Duration::from_millis(10)));
        bell.ring();
        bell.ring();
        assert!(bell.listen(Duration::from_secs(5)));
        // Two rings while nobody listened are one.
        assert!(!bell.listen(Duration::from_millis(10)));
        let ringer = Arc::clone(&bell);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            ringer.ring();
        });
        let began = Instant::now();
        assert!(bell.listen(Duration::from_secs(10)));
        assert!(began.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
    }
}
