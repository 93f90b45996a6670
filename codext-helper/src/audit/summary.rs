//! The strangers' counters: one `attempts_summary` line per source and
//! window instead of one line per attempt.

use super::{Pending, Stranger, OTHER_SOURCES_TRACKED, SOURCE_MAX};
use crate::config::AuditConfig;
use codext_core::time;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};

/// The strangers' counters for the current window.
#[derive(Debug, Default)]
pub(super) struct Summary {
    pub(super) start: Option<u64>,
    pub(super) sources: BTreeMap<String, Counts>,
    pub(super) others: Counts,
    pub(super) other_sources: HashSet<String>,
    pub(super) other_saturated: bool,
}

#[derive(Debug, Default, Clone)]
pub(super) struct Counts {
    pub(super) unknown_user: u64,
    pub(super) rate_limited: u64,
    pub(super) last_user: String,
}

impl Counts {
    pub(super) fn add(&mut self, what: Stranger, user: &str) {
        match what {
            Stranger::UnknownUser => self.unknown_user += 1,
            Stranger::RateLimited => self.rate_limited += 1,
        }
        self.last_user.clear();
        self.last_user.push_str(user);
    }
}

impl Summary {
    pub(super) fn count(&mut self, now: u64, what: Stranger, user: &str, source: &str, cap: usize) {
        self.start.get_or_insert(now);
        let source: String = source.chars().take(SOURCE_MAX).collect();
        let user: String = user.chars().take(SOURCE_MAX).collect();
        if let Some(c) = self.sources.get_mut(&source) {
            c.add(what, &user);
        } else if self.sources.len() < cap {
            let mut c = Counts::default();
            c.add(what, &user);
            self.sources.insert(source, c);
        } else {
            self.others.add(what, &user);
            if self.other_sources.len() < OTHER_SOURCES_TRACKED {
                self.other_sources.insert(source);
            } else if !self.other_sources.contains(&source) {
                self.other_saturated = true;
            }
        }
    }

    /// The summary lines of the window, if it has ended by `now`; starts a
    /// new one.
    pub(super) fn take_due(&mut self, now: u64, cfg: &AuditConfig) -> Vec<Pending> {
        let window = cfg.summary_window.as_secs().max(1);
        let Some(start) = self.start.filter(|s| now >= s + window) else {
            return Vec::new();
        };
        let old = std::mem::take(self);
        let mut out = Vec::new();
        let mut line = |source: Value, c: &Counts, extra: Option<(u64, bool)>| {
            let mut f = Map::new();
            f.insert("source".into(), source);
            f.insert("window_start".into(), time::rfc3339(start).into());
            f.insert("window_secs".into(), window.into());
            f.insert("unknown_user".into(), c.unknown_user.into());
            f.insert("rate_limited".into(), c.rate_limited.into());
            f.insert("last_user".into(), c.last_user.clone().into());
            if let Some((n, saturated)) = extra {
                f.insert("other_sources".into(), n.into());
                f.insert("other_sources_at_least".into(), saturated.into());
            }
            out.push(Pending {
                event: "attempts_summary".into(),
                fields: f,
                time: now,
            });
        };
        for (source, c) in &old.sources {
            line(source.clone().into(), c, None);
        }
        if old.others.unknown_user + old.others.rate_limited > 0 {
            line(
                Value::Null,
                &old.others,
                Some((old.other_sources.len() as u64, old.other_saturated)),
            );
        }
        out
    }
}
