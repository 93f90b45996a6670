//! The checks of the accounts codext hands out: the uid range holds only
//! codext's accounts, and how many uids are quarantined.

use super::report::Report;
use crate::config::Config;

pub(super) fn uid_check(r: &mut Report, cfg: &Config) {
    let (min, max) = (cfg.accounts.uid_min, cfg.accounts.uid_max);
    // Only read the state when it exists: opening it would create the folder.
    let ours: Vec<String> = if cfg.state_dir.is_dir() {
        crate::lifecycle::Helper::new(cfg.clone())
            .and_then(|h| h.status())
            .map(|v| v.into_iter().map(|e| e.user().to_string()).collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    // /etc/passwd, and every NSS source (LDAP, sssd, userdb…) by uid.
    let mut held: Vec<(String, u32)> = crate::accounts::passwd_file_entries()
        .into_iter()
        .filter_map(|(name, uid)| {
            Some((name, uid.as_raw())).filter(|(_, u)| (min..=max).contains(u))
        })
        .collect();
    for uid in min..=max {
        if let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
            if !held.iter().any(|(n, _)| *n == u.name) {
                held.push((u.name, uid));
            }
        }
    }
    let foreign: Vec<String> = held
        .into_iter()
        .filter(|(name, _)| !ours.contains(name))
        .map(|(name, uid)| format!("{name} ({uid})"))
        .collect();
    let systemd_overlap = [(60001u32, 60513u32), (61184, 65519)]
        .iter()
        .any(|(a, b)| min <= *b && *a <= max);
    if systemd_overlap {
        r.fail(
            "uids",
            format!("{min}..={max} overlaps systemd's reserved ranges (60001-60513, 61184-65519)"),
            "choose accounts.uid_min..uid_max below 60001",
        );
    } else if !foreign.is_empty() {
        r.fail(
            "uids",
            format!(
                "accounts not made by codext hold uids in {min}..={max}: {}",
                foreign.join(", ")
            ),
            "move them out of the range or choose another accounts.uid_min..uid_max in helper.toml",
        );
    } else {
        r.ok(
            "uids",
            format!("{min}..={max} holds only codext's accounts and is clear of systemd's ranges"),
        );
    }
}

/// Quarantined uids (their last holders left files the sweep could not
/// remove): a warning while some remain free, a failure when none does.
pub(super) fn quarantine_check(r: &mut Report, cfg: &Config) {
    // Only read the state when it exists: opening it would create the folder.
    if !cfg.state_dir.is_dir() {
        r.ok("quarantine", "no state yet: no uid is quarantined");
        return;
    }
    let held = match crate::lifecycle::Helper::new(cfg.clone()).and_then(|h| h.quarantined()) {
        Ok(held) => held,
        Err(e) => {
            r.fail(
                "quarantine",
                format!("cannot read the state: {e}"),
                "see the helper's log",
            );
            return;
        }
    };
    let range = u64::from(cfg.accounts.uid_max - cfg.accounts.uid_min) + 1;
    let uids: Vec<String> = held.keys().map(u32::to_string).collect();
    let advice = "look with `codext-helper quarantine list`, remove what is left, then \
                  `codext-helper quarantine release UID`";
    if held.is_empty() {
        r.ok("quarantine", "no uid is quarantined");
    } else if held.len() as u64 >= range {
        r.fail(
            "quarantine",
            format!(
                "every uid of the range is quarantined ({}): no login can be issued",
                uids.join(", ")
            ),
            advice,
        );
    } else {
        r.warn(
            "quarantine",
            format!(
                "{} uid(s) quarantined, never handed out until released: {}",
                held.len(),
                uids.join(", ")
            ),
            advice,
        );
    }
}
