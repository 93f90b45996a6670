//! The counters: one `attempts_summary` line per source and window for
//! strangers' attempts, and one `refusals_summary` line per request, name
//! and result and window for refused attempts at names codext knows,
//! instead of one line per attempt.

use super::{Counted, Pending, Stranger, OTHER_SOURCES_TRACKED, SOURCE_MAX};
use crate::config::AuditConfig;
use codext_core::time;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};

/// The counters for the current window.
#[derive(Debug, Default)]
pub(super) struct Summary {
    pub(super) start: Option<u64>,
    pub(super) sources: BTreeMap<String, Counts>,
    pub(super) others: Counts,
    pub(super) other_sources: HashSet<String>,
    pub(super) other_saturated: bool,
    /// Refused attempts at known names: (request, user, key, result).
    pub(super) refusals: BTreeMap<RefusalKey, Tally>,
    /// Those beyond the per-window cap of distinct keys, together.
    pub(super) other_refusals: Tally,
    pub(super) other_refusal_keys: u64,
}

/// What a refusal line is about: request, user, key, result.
pub(super) type RefusalKey = (String, Option<String>, Option<String>, String);

/// How often something was refused in a window, and from where.
#[derive(Debug, Default, Clone)]
pub(super) struct Tally {
    pub(super) count: u64,
    pub(super) sources: HashSet<String>,
    pub(super) sources_saturated: bool,
    pub(super) last_source: String,
}

impl Tally {
    fn add(&mut self, source: &str) {
        self.count += 1;
        if self.sources.len() < OTHER_SOURCES_TRACKED {
            self.sources.insert(source.to_owned());
        } else if !self.sources.contains(source) {
            self.sources_saturated = true;
        }
        self.last_source.clear();
        self.last_source.push_str(source);
    }
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

    /// Counts one refused attempt at a known name (see [`Counted`]).
    pub(super) fn count_refusal(&mut self, now: u64, c: &Counted<'_>, cap: usize) {
        self.start.get_or_insert(now);
        let short = |s: &str| -> String { s.chars().take(SOURCE_MAX).collect() };
        let key: RefusalKey = (
            short(c.request),
            c.user.map(short),
            c.key.map(|k| k.chars().take(128).collect()),
            c.result.chars().take(128).collect(),
        );
        let source = short(c.source);
        if let Some(t) = self.refusals.get_mut(&key) {
            t.add(&source);
        } else if self.refusals.len() < cap {
            let mut t = Tally::default();
            t.add(&source);
            self.refusals.insert(key, t);
        } else {
            self.other_refusal_keys += 1;
            self.other_refusals.add(&source);
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
                defer: true,
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
        let mut refusal = |key: Option<&RefusalKey>, t: &Tally| {
            let mut f = Map::new();
            let opt = |v: Option<&String>| v.map_or(Value::Null, |s| Value::from(s.as_str()));
            f.insert("request".into(), opt(key.map(|k| &k.0)));
            f.insert("user".into(), opt(key.and_then(|k| k.1.as_ref())));
            f.insert("key".into(), opt(key.and_then(|k| k.2.as_ref())));
            f.insert("result".into(), opt(key.map(|k| &k.3)));
            f.insert("count".into(), t.count.into());
            f.insert("sources".into(), (t.sources.len() as u64).into());
            f.insert("sources_at_least".into(), t.sources_saturated.into());
            f.insert("last_source".into(), t.last_source.clone().into());
            f.insert("window_start".into(), time::rfc3339(start).into());
            f.insert("window_secs".into(), window.into());
            if key.is_none() {
                f.insert("other_refusals".into(), old.other_refusal_keys.into());
            }
            out.push(Pending {
                event: "refusals_summary".into(),
                fields: f,
                time: now,
                defer: true,
            });
        };
        for (key, t) in &old.refusals {
            refusal(Some(key), t);
        }
        if old.other_refusals.count > 0 {
            refusal(None, &old.other_refusals);
        }
        out
    }
}
