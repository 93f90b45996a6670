//! The client itself: what it keeps between requests (the agent, the
//! token, the pacer, the counters), and the budget it reports.

use super::config::ApiConfig;
use super::token_guard::origin_of;
use crate::clock::SharedClock;
use crate::pacing::Pacer;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use zeroize::Zeroizing;

/// The token's rate-limit budget as the last answer reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// `ratelimit-limit`: requests an hour.
    pub limit: u64,
    /// `ratelimit-remaining`: left in the sliding hour.
    pub remaining: u64,
    /// `ratelimit-reset`: Unix time the oldest counted request expires.
    pub reset: u64,
}

/// A blocking DigitalOcean API client; share it between threads by
/// reference or `Arc` (pacing is per client).
pub struct Client {
    pub(super) agent: ureq::Agent,
    pub(super) api_url: String,
    pub(super) origin: Option<String>,
    pub(super) token: Zeroizing<String>,
    pub(super) max_wait: Duration,
    pub(super) keys_spacing: Duration,
    pub(super) keys_per_page: u32,
    pub(super) backoff: Duration,
    pub(super) pacer: Mutex<Pacer>,
    pub(super) clock: SharedClock,
    pub(super) calls: AtomicU64,
    pub(super) budget: Mutex<Option<Budget>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("api_url", &self.api_url)
            .field("token", &"***")
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `cfg`; no request is sent yet.
    pub fn new(cfg: ApiConfig) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout(cfg.timeout)
            // The API does not redirect; following one could only send the
            // request (and, were ureq to keep it, the token) elsewhere.
            .redirects(0)
            .user_agent(concat!("codext/", env!("CARGO_PKG_VERSION")))
            .build();
        let api_url = cfg.api_url.trim_end_matches('/').to_owned();
        Client {
            agent,
            origin: origin_of(&api_url),
            api_url,
            token: cfg.token,
            max_wait: cfg.max_wait,
            keys_spacing: cfg.keys_spacing,
            keys_per_page: cfg.keys_per_page.clamp(1, 200),
            backoff: cfg.backoff,
            pacer: Mutex::new(Pacer::with_minute_cap(cfg.per_minute)),
            clock: cfg.clock,
            calls: AtomicU64::new(0),
            budget: Mutex::new(None),
        }
    }

    /// The clock this client paces itself by.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Requests sent so far, retries included.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The token's budget as the last answer that carried all three
    /// `ratelimit-*` headers reported it.
    pub fn budget(&self) -> Option<Budget> {
        *self.budget.lock().unwrap_or_else(|e| e.into_inner())
    }
}
