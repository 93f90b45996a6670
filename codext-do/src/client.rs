//! A small blocking client for the DigitalOcean API v2 operations codext
//! needs: read a droplet, manage tags on it, list and add account SSH keys;
//! and the droplet metadata service's `id`.
//!
//! What it guarantees:
//! * the token goes only into the `Authorization` header of requests to the
//!   configured API origin: redirects are not followed, a pagination link to
//!   another host is refused, and no error, log line or `Debug` output
//!   contains it;
//! * it obeys the rate limits (see [`super::pacing`]): it waits for
//!   `ratelimit-reset` when `ratelimit-remaining` reaches 0, honours a 429's
//!   `retry-after`, and spaces `GET /v2/account/keys` (10 a minute) by
//!   itself; a wait longer than [`ApiConfig::max_wait`] is an
//!   [`Error::RateLimited`] instead;
//! * 5xx answers and transport failures are retried with exponential
//!   backoff (three retries), other 4xx are not retried and become
//!   [`Error::Api`] with DigitalOcean's `id` and `message`;
//! * a 2xx answer that is not the documented JSON is asked for once more,
//!   then becomes [`Error::ApiFormat`]; nothing here panics on bad input.
//!
//! Every operation is safe to repeat (creating an existing tag or key is
//! not an error), which is what makes the retries safe.

mod config;
mod endpoints;
mod handle;
mod metadata;
mod token_guard;
mod transport;

pub use config::{ApiConfig, DEFAULT_API_URL, DEFAULT_METADATA_URL};
pub use handle::{Budget, Client};
pub use metadata::metadata_droplet_id;
pub use transport::MAX_RETRIES;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_config_and_client_then_debug_hides_token() {
        let cfg = ApiConfig::new("http://127.0.0.1:9", "dop_v1_s3cr3t");
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
        let c = Client::new(cfg);
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("127.0.0.1:9"));
    }
}
