//! Knocks: an SSH attempt at an unknown codext name (`user-<hex>` that
//! is neither pending nor armed nor live) rings this bell, and the
//! channel's `wait` request ([`wait`]) hears it and polls the API at once
//! instead of at its idle pace. An agent knocks right after posting its
//! request or its answer, so a login at an idle server need not wait for
//! the next idle poll.
//!
//! A knock carries nothing and changes nothing here: anyone who can reach
//! the SSH port can knock, so the channel decides whether a knock is worth
//! an API call (a small bucket refilled from its budget share,
//! `codext_do::budget::Pacing::wake`). Rings while the channel is busy are
//! kept as one. Kept apart from the audit trail's counting of unknown
//! names (strangers must not grow the trail): this only rings.

use codext_core::bell::Bell;
use std::time::Duration;

static BELL: Bell = Bell::new();

/// An SSH attempt named an unknown codext user: ring.
pub fn knock() {
    BELL.ring();
}

/// Waits up to `timeout` for a knock (the channel's `wait` request).
pub fn wait(timeout: Duration) -> bool {
    BELL.listen(timeout)
}
