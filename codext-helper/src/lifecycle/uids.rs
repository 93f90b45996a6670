//! The temporary users' uid range and the choice of the next uid.
//!
//! A uid comes back as late as possible: first the never-used ones (from a
//! cursor on, wrapping), then the one given back the longest ago. A uid is
//! what the kernel and every file on the machine know a user by: whatever
//! of its last holder escaped teardown (a descriptor held by another
//! process, a key linked into another keyring) reaches the next holder,
//! so the next holder should come as late as the range allows. Unanswered
//! puzzles take and give back uids too: a flood of them wraps the range
//! only after every uid had its turn, and a uid removed a moment ago is
//! the last to be handed out again.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The uids temporary users get: `min..=max` from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    min: u32,
    max: u32,
}

/// What [`UidRange::choose`] chooses among.
#[derive(Debug)]
pub struct Pool<'a> {
    /// uids of users in the state (any phase).
    pub in_use: &'a BTreeSet<u32>,
    /// uids held back because their last holder left something behind.
    pub quarantined: &'a BTreeSet<u32>,
    /// When each uid was last given back (seconds since the epoch).
    pub freed: &'a BTreeMap<u32, u64>,
    /// Where the never-used uids start (uids below it that `freed` does
    /// not name were handed out before `freed` was kept).
    pub cursor: Option<u32>,
}

impl UidRange {
    /// `min..=max`; `None` when empty.
    pub fn new(min: u32, max: u32) -> Option<UidRange> {
        (min <= max).then_some(UidRange { min, max })
    }

    /// The range of `cfg` (checked non-empty when the config loaded).
    pub fn of(cfg: &crate::config::Config) -> UidRange {
        let (min, max) = (cfg.accounts.uid_min, cfg.accounts.uid_max);
        UidRange {
            min: min.min(max),
            max,
        }
    }

    /// True when `uid` is in the range: an account codext may have made.
    pub fn contains(&self, uid: u32) -> bool {
        (self.min..=self.max).contains(&uid)
    }

    /// The uid after `uid`, wrapping.
    pub fn after(&self, uid: u32) -> u32 {
        if uid >= self.max {
            self.min
        } else {
            uid + 1
        }
    }

    /// The next uid: free in `pool` and not `taken` (by NSS or
    /// `/etc/passwd`); never-used ones first from the cursor, then the one
    /// freed the longest ago (ties by number). Returns it and whether it
    /// was never used; `None` when every uid is taken.
    pub fn choose(&self, pool: &Pool<'_>, taken: impl Fn(u32) -> bool) -> Option<(u32, bool)> {
        let cursor = pool
            .cursor
            .filter(|c| self.contains(*c))
            .unwrap_or(self.min);
        let mut order: Vec<((u8, u64), u32)> = (self.min..=self.max)
            .filter(|u| !pool.in_use.contains(u) && !pool.quarantined.contains(u))
            .map(|u| {
                let key = match pool.freed.get(&u) {
                    Some(at) => (1, *at),
                    // Handed out before `freed` was kept: long ago.
                    None if u < cursor => (1, 0),
                    None => (0, u64::from(u - cursor)),
                };
                (key, u)
            })
            .collect();
        order.sort_unstable();
        order
            .into_iter()
            .find(|(_, u)| !taken(*u))
            .map(|(key, u)| (u, key.0 == 0))
    }
}

impl fmt::Display for UidRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model of the state's uid bookkeeping: issue takes a uid, expiry
    /// gives it back at a time.
    #[derive(Default)]
    struct Model {
        in_use: BTreeSet<u32>,
        quarantined: BTreeSet<u32>,
        freed: BTreeMap<u32, u64>,
        cursor: Option<u32>,
    }

    impl Model {
        fn issue(&mut self, range: UidRange) -> u32 {
            let pool = Pool {
                in_use: &self.in_use,
                quarantined: &self.quarantined,
                freed: &self.freed,
                cursor: self.cursor,
            };
            let (uid, never) = range.choose(&pool, |_| false).expect("a free uid");
            if never {
                self.cursor = Some(range.after(uid));
            }
            self.in_use.insert(uid);
            uid
        }
        fn free(&mut self, uid: u32, at: u64) {
            self.in_use.remove(&uid);
            self.freed.insert(uid, at);
        }
    }

    #[test]
    fn given_3000_unanswered_puzzles_in_a_1000_uid_range_then_the_uid_free_the_longest_comes_next()
    {
        let range = UidRange::new(59_000, 59_999).unwrap();
        let mut m = Model::default();
        // A long-lived account holds one uid until half-way; around it,
        // puzzles are issued and expire unanswered, a few at a time.
        let a = m.issue(range);
        let mut live: std::collections::VecDeque<u32> = Default::default();
        let mut handed = Vec::new();
        let mut free_before_a = BTreeSet::new();
        for k in 0..3000u64 {
            if k == 1500 {
                free_before_a = (59_000..=59_999)
                    .filter(|u| !m.in_use.contains(u))
                    .collect();
                m.free(a, k);
            }
            // Three puzzles out at a time: the oldest expires.
            if live.len() == 3 {
                let gone = live.pop_front().unwrap();
                m.free(gone, k);
            }
            let uid = m.issue(range);
            live.push_back(uid);
            handed.push(uid);
        }
        let first: BTreeSet<u32> = handed[..999].iter().copied().collect();
        assert_eq!(
            first.len(),
            999,
            "a uid came back before every uid had its turn"
        );
        assert!(!first.contains(&a));
        let back = (1500..3000)
            .find(|k| handed[*k] == a)
            .expect("never handed out again");
        let between: BTreeSet<u32> = handed[1500..back].iter().copied().collect();
        assert!(
            free_before_a.is_subset(&between),
            "uid {a}, freed at step 1500, came back at step {back} before {} of the {} uids free before it",
            free_before_a.difference(&between).count(),
            free_before_a.len()
        );
        // And in general: every uid handed out after the first round is
        // the one freed the longest ago among those free.
        let mut m = Model::default();
        let mut live: std::collections::VecDeque<u32> = Default::default();
        for k in 0..3000u64 {
            if live.len() == 5 {
                let gone = live.pop_front().unwrap();
                m.free(gone, k);
            }
            let oldest = (59_000..=59_999)
                .filter(|u| !m.in_use.contains(u))
                .min_by_key(|u| (m.freed.get(u).map_or((0, u64::from(*u)), |t| (1, *t)), *u));
            let uid = m.issue(range);
            assert_eq!(Some(uid), oldest, "step {k}");
            live.push_back(uid);
        }
    }

    #[test]
    fn given_uids_taken_or_quarantined_then_they_are_skipped_and_a_full_range_gives_none() {
        let range = UidRange::new(10, 12).unwrap();
        let in_use = BTreeSet::from([10]);
        let quarantined = BTreeSet::from([11]);
        let freed = BTreeMap::new();
        let pool = Pool {
            in_use: &in_use,
            quarantined: &quarantined,
            freed: &freed,
            cursor: None,
        };
        assert_eq!(range.choose(&pool, |_| false), Some((12, true)));
        assert_eq!(range.choose(&pool, |u| u == 12), None);
        assert_eq!(range.after(12), 10);
        assert!(range.contains(10) && !range.contains(13));
        assert_eq!(UidRange::new(5, 4), None);
        // A cursor from the earlier scheme: uids below it were used.
        let freed = BTreeMap::from([(12, 100)]);
        let none = BTreeSet::new();
        let pool = Pool {
            in_use: &none,
            quarantined: &none,
            freed: &freed,
            cursor: Some(11),
        };
        assert_eq!(
            range.choose(&pool, |_| false),
            Some((11, true)),
            "never used first"
        );
        let pool = Pool {
            cursor: Some(13),
            ..pool
        };
        assert_eq!(
            range.choose(&pool, |_| false),
            Some((10, true)),
            "a cursor out of range starts at min"
        );
    }
}
