//! How to reach the API: its address, the token, the timeouts and the
//! pacing asked for.

use crate::clock::{self, SharedClock};
use std::fmt;
use std::time::Duration;
use zeroize::Zeroizing;

/// DigitalOcean's API.
pub const DEFAULT_API_URL: &str = "https://api.digitalocean.com";
/// Droplet metadata service, reachable from inside a droplet without token.
pub const DEFAULT_METADATA_URL: &str = "http://169.254.169.254/metadata/v1";

/// How to reach the API.
pub struct ApiConfig {
    /// Base URL without `/v2`, e.g. `https://api.digitalocean.com`.
    pub api_url: String,
    /// The personal access token.
    pub token: Zeroizing<String>,
    /// Per request (connect, send, receive).
    pub timeout: Duration,
    /// Longest single wait for a rate limit; beyond it the call fails with
    /// [`Error::RateLimited`].
    pub max_wait: Duration,
    /// Least time between two `GET /v2/account/keys` (DigitalOcean allows
    /// 10 a minute; pages count).
    pub keys_spacing: Duration,
    /// Keys per page when listing (1–200).
    pub keys_per_page: u32,
    /// First backoff after a 5xx or transport failure; doubled each retry.
    pub backoff: Duration,
    /// Requests this client sends in any 60 s at most (DigitalOcean
    /// allows a token 250 a minute; the default keeps 10 % of it).
    pub per_minute: usize,
    /// The clock waits are measured and slept by (the real one but in
    /// simulations).
    pub clock: SharedClock,
}

impl ApiConfig {
    /// The defaults (15 s timeout, 60 s longest wait, 6 s between key
    /// listings, 200 keys a page, 0.5 s first backoff) for `api_url`.
    pub fn new(api_url: impl Into<String>, token: impl Into<String>) -> ApiConfig {
        ApiConfig {
            api_url: api_url.into(),
            token: Zeroizing::new(token.into()),
            timeout: Duration::from_secs(15),
            max_wait: Duration::from_secs(60),
            keys_spacing: Duration::from_secs(6),
            keys_per_page: 200,
            backoff: Duration::from_millis(500),
            per_minute: crate::pacing::MINUTE_CAP,
            clock: clock::system(),
        }
    }
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("api_url", &self.api_url)
            .field("token", &"***")
            .field("timeout", &self.timeout)
            .field("max_wait", &self.max_wait)
            .field("keys_spacing", &self.keys_spacing)
            .field("keys_per_page", &self.keys_per_page)
            .field("backoff", &self.backoff)
            .field("per_minute", &self.per_minute)
            .finish()
    }
}
