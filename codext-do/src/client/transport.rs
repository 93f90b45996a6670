//! Sending one request: pacing, retries with backoff, the rate limits
//! the answers report, and the errors a failed request becomes.

use super::handle::{Budget, Client};
use super::token_guard::scrub;
use crate::error::{Error, Result};
use crate::models::parse_error;
use crate::pacing::{ceil_secs, Limits, Pacer};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::time::Duration;
use zeroize::Zeroizing;

/// Retries after a 5xx or a transport failure.
pub const MAX_RETRIES: u32 = 3;
/// Retries after successive 429s for one request.
const MAX_RATE_RETRIES: u32 = 5;

fn header_u64(resp: &ureq::Response, name: &str) -> Option<u64> {
    resp.header(name)?.trim().parse().ok()
}

impl Client {
    fn lock_pacer(&self) -> MutexGuard<'_, Pacer> {
        // A panic while holding the lock cannot leave the pacer inconsistent
        // (each update is one assignment), so a poisoned lock is still good.
        self.pacer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the rate limits to allow a request.
    fn pace(&self, keys_list: bool) -> Result<()> {
        let wait = self.lock_pacer().reserve(
            self.clock.now(),
            keys_list,
            self.keys_spacing,
            self.max_wait,
        );
        match wait {
            Ok(d) => {
                self.clock.sleep(d);
                Ok(())
            }
            Err(d) => Err(Error::RateLimited {
                wait_secs: ceil_secs(d),
            }),
        }
    }

    fn observe(&self, status: u16, resp: &ureq::Response) -> Option<Duration> {
        let limits = Limits {
            remaining: header_u64(resp, "ratelimit-remaining"),
            reset: header_u64(resp, "ratelimit-reset"),
            retry_after: header_u64(resp, "retry-after"),
        };
        if let (Some(limit), Some(remaining), Some(reset)) = (
            header_u64(resp, "ratelimit-limit"),
            limits.remaining,
            limits.reset,
        ) {
            *self.budget.lock().unwrap_or_else(|e| e.into_inner()) = Some(Budget {
                limit,
                remaining,
                reset,
            });
        }
        let unix = self.clock.unix();
        self.lock_pacer()
            .observe(self.clock.now(), unix, status, limits)
    }

    /// `METHOD path?query`, for error messages.
    fn describe(&self, method: &str, url: &str) -> String {
        let path = url.strip_prefix(&self.api_url).unwrap_or(url);
        format!("{method} {}", scrub(path, &self.token))
    }

    fn backoff_wait(&self, failures: u32) -> Duration {
        self.backoff.saturating_mul(1u32 << failures.min(16))
    }

    fn api_error(&self, status: u16, resp: ureq::Response, what: &str, note: &str) -> Error {
        let body = resp.into_string().unwrap_or_default();
        let parsed = parse_error(&body);
        let field = |f: &Option<String>| {
            f.as_deref()
                .map(|s| scrub(s, &self.token))
                .unwrap_or_default()
        };
        let mut message = field(&parsed.message);
        if message.is_empty() {
            message = scrub(&body, &self.token);
        }
        Error::Api {
            status,
            id: field(&parsed.id),
            message: format!("{what}: {message}{note}"),
            request_id: field(&parsed.request_id),
        }
    }

    /// Sends one request, with pacing and retries; the body of a 2xx answer.
    pub(super) fn send(
        &self,
        method: &str,
        url: &str,
        body: Option<&Value>,
        keys_list: bool,
    ) -> Result<String> {
        let what = self.describe(method, url);
        let mut failures = 0u32;
        let mut refusals = 0u32;
        loop {
            self.pace(keys_list)?;
            self.calls.fetch_add(1, Ordering::Relaxed);
            let auth = Zeroizing::new(format!("Bearer {}", self.token.as_str()));
            let req = self
                .agent
                .request(method, url)
                .set("Authorization", &auth)
                .set("Content-Type", "application/json")
                .set("Accept", "application/json");
            let result = match body {
                Some(b) => req.send_string(&b.to_string()),
                None => req.call(),
            };
            drop(auth);
            let transport_problem = match result {
                Ok(resp) | Err(ureq::Error::Status(_, resp)) => {
                    let status = resp.status();
                    let retry_wait = self.observe(status, &resp);
                    match status {
                        200..=299 => match resp.into_string() {
                            Ok(text) => return Ok(text),
                            Err(e) => format!("reading the answer: {e}"),
                        },
                        429 => {
                            let wait = retry_wait.unwrap_or(Duration::from_secs(1));
                            if wait > self.max_wait || refusals >= MAX_RATE_RETRIES {
                                return Err(Error::RateLimited {
                                    wait_secs: ceil_secs(wait),
                                });
                            }
                            refusals += 1;
                            // `pace` waits out the retry-after.
                            continue;
                        }
                        500..=599 if failures < MAX_RETRIES => {
                            self.clock.sleep(self.backoff_wait(failures));
                            failures += 1;
                            continue;
                        }
                        500..=599 => {
                            let note = format!(" (still failing after {MAX_RETRIES} retries)");
                            return Err(self.api_error(status, resp, &what, &note));
                        }
                        _ => return Err(self.api_error(status, resp, &what, "")),
                    }
                }
                Err(ureq::Error::Transport(t)) => scrub(&t.to_string(), &self.token),
            };
            if failures >= MAX_RETRIES {
                return Err(Error::Http(format!(
                    "{what}: {transport_problem} (still failing after {MAX_RETRIES} retries)"
                )));
            }
            self.clock.sleep(self.backoff_wait(failures));
            failures += 1;
        }
    }

    /// [`Client::send`], then the answer read by `parse` (a serde model);
    /// a 2xx answer that does not parse is asked for once more.
    pub(super) fn call_json<T>(
        &self,
        method: &str,
        url: &str,
        body: Option<&Value>,
        keys_list: bool,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T> {
        let mut problem = String::new();
        for _ in 0..2 {
            let text = self.send(method, url, body, keys_list)?;
            match parse(&text) {
                Some(t) => return Ok(t),
                None if serde_json::from_str::<Value>(&text).is_err() => {
                    problem = "not JSON".into()
                }
                None => problem = "a field is missing or of the wrong type".into(),
            }
        }
        Err(Error::ApiFormat(format!(
            "{}: {problem}, twice in a row",
            self.describe(method, url)
        )))
    }
}
