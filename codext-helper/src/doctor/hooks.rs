//! The checks the recording and profiles modules own
//! (`crate::recording::host::doctor`, `crate::profiles::doctor`), added to
//! the report as ok, warn or fail lines.

use super::report::Report;
use crate::config::Config;

/// The checks other modules own, added to the report.
pub(super) fn hook_checks(r: &mut Report, cfg: &Config) {
    // [recording] hook: the recorder, the real shell, the socket, the store.
    for (check, fail, detail, advice) in crate::recording::host::doctor(cfg) {
        match fail {
            None => r.ok(check, detail),
            Some(true) => r.fail(check, detail, advice),
            Some(false) => r.warn(check, detail, advice),
        }
    }
    // [profiles] hook: the gate's sshd drop-in, groups, sudo
    // rules, docker.
    let live = live_users(cfg);
    for (check, fail, detail, advice) in crate::profiles::doctor::doctor(cfg, &live) {
        match fail {
            None => r.ok(check, detail),
            Some(true) => r.fail(check, detail, advice),
            Some(false) => r.warn(check, detail, advice),
        }
    }
}

/// The live grants' users (an empty list before any state exists: reading
/// the state would create its folder).
fn live_users(cfg: &Config) -> Vec<String> {
    if !cfg.state_dir.is_dir() {
        return Vec::new();
    }
    crate::lifecycle::Helper::new(cfg.clone())
        .and_then(|h| h.status())
        .map(|v| {
            v.into_iter()
                .filter(|e| e.is_live())
                .map(|e| e.user().to_string())
                .collect()
        })
        .unwrap_or_default()
}
