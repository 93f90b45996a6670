//! The removal lanes: a queue that holds each user at most once, and a few
//! workers that take from it.
//!
//! * **Once per user.** Asking again for a user already waiting or being
//!   removed changes nothing (the reaper asks on every pass while an entry
//!   is `removing`): the queue can never fill with one stuck user.
//! * **Failures wait their turn.** A failed attempt is retried only when
//!   the reaper finds its wait over (`Entry::removal_due`, doubling up to
//!   five minutes), and a retry is taken only while another worker stays
//!   free for a first attempt: a user whose removal keeps failing never
//!   holds up another's.
//! * **Side by side.** [`WORKERS`] removals run at once: different users'
//!   kills take turns only for the killer's pass itself (milliseconds),
//!   their `userdel`s for the account lock, and their sweeps not at all.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Condvar, Mutex};

/// Removals that run at once.
pub const WORKERS: usize = 3;

/// The queue (see the module's text).
#[derive(Debug, Default)]
pub struct Queue {
    lanes: Mutex<Lanes>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct Lanes {
    /// Users waiting, in the order asked.
    waiting: VecDeque<String>,
    /// Users a worker is removing now.
    running: BTreeSet<String>,
    /// Users whose last attempt in this process failed: their next one is
    /// a retry.
    failed: BTreeSet<String>,
    /// Retries running now.
    retries_running: usize,
}

impl Lanes {
    /// The next user a worker may take: the first one waiting for a first
    /// attempt, else the first retry if a worker would still be free for
    /// a first attempt.
    fn next(&mut self) -> Option<String> {
        let first = self.waiting.iter().position(|u| !self.failed.contains(u));
        let at = first.or_else(|| {
            (self.retries_running + 1 < WORKERS && !self.waiting.is_empty()).then_some(0)
        })?;
        let user = self.waiting.remove(at)?;
        if self.failed.contains(&user) {
            self.retries_running += 1;
        }
        self.running.insert(user.clone());
        Some(user)
    }
}

impl Queue {
    /// Asks for `user`'s removal; nothing changes if it is already
    /// waiting or running.
    pub fn push(&self, user: &str) {
        let Ok(mut lanes) = self.lanes.lock() else {
            return;
        };
        if lanes.running.contains(user) || lanes.waiting.iter().any(|u| u == user) {
            return;
        }
        lanes.waiting.push_back(user.to_owned());
        drop(lanes);
        self.ready.notify_all();
    }

    /// Waits for a user to remove (see [`Lanes::next`]); `None` only if
    /// the queue's lock is poisoned.
    pub fn take(&self) -> Option<String> {
        let mut lanes = self.lanes.lock().ok()?;
        loop {
            if let Some(user) = lanes.next() {
                return Some(user);
            }
            lanes = self.ready.wait(lanes).ok()?;
        }
    }

    /// A worker finished `user`'s attempt; `failed` when it did not remove
    /// the account.
    pub fn done(&self, user: &str, failed: bool) {
        let Ok(mut lanes) = self.lanes.lock() else {
            return;
        };
        lanes.running.remove(user);
        if lanes.failed.contains(user) {
            lanes.retries_running = lanes.retries_running.saturating_sub(1);
        }
        if failed {
            lanes.failed.insert(user.to_owned());
        } else {
            lanes.failed.remove(user);
        }
        drop(lanes);
        self.ready.notify_all();
    }

    /// How many users wait and run.
    #[cfg(test)]
    pub fn len(&self) -> (usize, usize) {
        self.lanes
            .lock()
            .map(|l| (l.waiting.len(), l.running.len()))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_user_asked_for_many_times_then_it_waits_once() {
        let q = Queue::default();
        for _ in 0..100 {
            q.push("user-aaaaaaaaaaaa");
        }
        assert_eq!(q.len(), (1, 0));
        let u = q.take().unwrap();
        // Asked again while running: still once.
        q.push(&u);
        assert_eq!(q.len(), (0, 1));
        q.done(&u, false);
        assert_eq!(q.len(), (0, 0));
    }

    #[test]
    fn given_a_failing_user_then_first_attempts_go_first_and_one_worker_stays_free_for_them() {
        let q = Queue::default();
        let stuck = [
            "user-000000000001",
            "user-000000000002",
            "user-000000000003",
        ];
        for s in stuck {
            q.push(s);
            let u = q.take().unwrap();
            q.done(&u, true);
        }
        // All three are retries now, and a fresh user arrives after them.
        for s in stuck {
            q.push(s);
        }
        q.push("user-00000000000f");
        assert_eq!(
            q.take().as_deref(),
            Some("user-00000000000f"),
            "the first attempt jumps the retries"
        );
        // Retries may take every worker but one.
        let mut running = Vec::new();
        let lanes = &q.lanes;
        while let Some(u) = lanes.lock().unwrap().next() {
            running.push(u);
        }
        assert_eq!(running.len(), WORKERS - 1, "{running:?}");
        // A new first attempt still finds its worker.
        q.push("user-0000000000ee");
        assert_eq!(
            lanes.lock().unwrap().next().as_deref(),
            Some("user-0000000000ee")
        );
        // A retry that now succeeds is a first attempt again next time.
        q.done(&running[0], false);
        assert!(!lanes.lock().unwrap().failed.contains(&running[0]));
    }
}
