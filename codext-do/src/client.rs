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

use crate::clock::{self, SharedClock};
use crate::error::{Error, Result};
use crate::models::{
    parse_created_key, parse_droplet, parse_error, parse_keys_page, parse_tag_name,
    parse_tags_page, Droplet, SshKey,
};
use crate::pacing::{ceil_secs, Limits, Pacer};
use crate::tags::is_valid_tag;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use zeroize::Zeroizing;

/// DigitalOcean's API.
pub const DEFAULT_API_URL: &str = "https://api.digitalocean.com";
/// Droplet metadata service, reachable from inside a droplet without token.
pub const DEFAULT_METADATA_URL: &str = "http://169.254.169.254/metadata/v1";
/// Retries after a 5xx or a transport failure.
pub const MAX_RETRIES: u32 = 3;
/// Retries after successive 429s for one request.
const MAX_RATE_RETRIES: u32 = 5;
/// Pages of keys followed at most (200 keys a page).
const MAX_PAGES: usize = 1000;
/// Tags a page of `GET /v2/tags` (the API's most).
const TAGS_PER_PAGE: u32 = 200;
/// Longest error body quoted in an error.
const MAX_QUOTED: usize = 200;

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
    agent: ureq::Agent,
    api_url: String,
    origin: Option<String>,
    token: Zeroizing<String>,
    max_wait: Duration,
    keys_spacing: Duration,
    keys_per_page: u32,
    backoff: Duration,
    pacer: Mutex<Pacer>,
    clock: SharedClock,
    calls: AtomicU64,
    budget: Mutex<Option<Budget>>,
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

/// `scheme://authority` of an http(s) URL, lowercased.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// `text` with every occurrence of the token replaced, and cut short.
fn scrub(text: &str, token: &str) -> String {
    let text = if token.len() >= 4 {
        text.replace(token, "***")
    } else {
        text.to_owned()
    };
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_QUOTED)
        .collect();
    if text.chars().count() > MAX_QUOTED {
        out.push('…');
    }
    out
}

/// The decoded blob of an OpenSSH public key line (`type base64 [comment]`).
fn key_blob(line: &str) -> Option<Vec<u8>> {
    let mut parts = line.split_whitespace();
    let _kind = parts.next()?;
    data_encoding::BASE64.decode(parts.next()?.as_bytes()).ok()
}

fn check_tag(tag: &str) -> Result<()> {
    if is_valid_tag(tag) {
        Ok(())
    } else {
        Err(Error::TagName(format!("{tag:?}")))
    }
}

fn header_u64(resp: &ureq::Response, name: &str) -> Option<u64> {
    resp.header(name)?.trim().parse().ok()
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

    /// `GET /v2/droplets/{id}`.
    pub fn droplet(&self, id: u64) -> Result<Droplet> {
        let url = format!("{}/v2/droplets/{id}", self.api_url);
        self.call_json("GET", &url, None, false, |b| {
            parse_droplet(b).filter(|d| d.id == id)
        })
    }

    /// `POST /v2/tags`: creates the tag, or finds it if it exists. Returns
    /// the name as the API reports it, which is the capitalization of the
    /// tag's first creation; use that name to address the tag.
    pub fn create_tag(&self, name: &str) -> Result<String> {
        check_tag(name)?;
        let url = format!("{}/v2/tags", self.api_url);
        let body = json!({ "name": name });
        self.call_json("POST", &url, Some(&body), false, |b| {
            parse_tag_name(b).filter(|n| n.eq_ignore_ascii_case(name))
        })
    }

    fn tag_resources(&self, method: &str, tag: &str, droplet: u64) -> Result<()> {
        check_tag(tag)?;
        let url = format!("{}/v2/tags/{tag}/resources", self.api_url);
        let body = json!({ "resources": [
            { "resource_id": droplet.to_string(), "resource_type": "droplet" }
        ]});
        self.send(method, &url, Some(&body), false).map(|_| ())
    }

    /// `POST /v2/tags/{tag}/resources`: attaches an existing tag to a
    /// droplet (attaching it twice is not an error).
    pub fn tag_droplet(&self, tag: &str, droplet: u64) -> Result<()> {
        self.tag_resources("POST", tag, droplet)
    }

    /// `DELETE /v2/tags/{tag}/resources`: detaches a tag from a droplet.
    pub fn untag_droplet(&self, tag: &str, droplet: u64) -> Result<()> {
        self.tag_resources("DELETE", tag, droplet)
    }

    /// `DELETE /v2/tags/{tag}`: deletes the tag, detaching it everywhere.
    /// A tag that does not exist (404) counts as deleted. Like the other tag
    /// calls, it should be given the name the API reports (the description
    /// asks for the canonical capitalization in paths).
    pub fn delete_tag(&self, tag: &str) -> Result<()> {
        check_tag(tag)?;
        let url = format!("{}/v2/tags/{tag}", self.api_url);
        match self.send("DELETE", &url, None, false) {
            Ok(_) | Err(Error::Api { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates the tag (an existing one is fine) and attaches it to the
    /// droplet under the name the API reports.
    pub fn attach_new_tag(&self, tag: &str, droplet: u64) -> Result<()> {
        let canonical = self.create_tag(tag)?;
        self.tag_droplet(&canonical, droplet)
    }

    /// `GET /v2/account/keys`, every page. Each page is one of the 10
    /// listings a minute, so consecutive pages are spaced.
    pub fn list_keys(&self) -> Result<Vec<SshKey>> {
        let url = format!(
            "{}/v2/account/keys?per_page={}",
            self.api_url, self.keys_per_page
        );
        self.every_page(url, true, "SSH keys", parse_keys_page)
    }

    /// `GET /v2/tags`, every page (200 tags a page): the names of every
    /// tag of the account, attached to something or not.
    pub fn list_tags(&self) -> Result<Vec<String>> {
        let url = format!("{}/v2/tags?per_page={}", self.api_url, TAGS_PER_PAGE);
        self.every_page(url, false, "tags", parse_tags_page)
    }

    /// Every page of a listing from `url`. Pages follow `links.pages.next`
    /// as given, but only on the API's own origin.
    fn every_page<T>(
        &self,
        mut url: String,
        keys: bool,
        what: &str,
        parse: impl Fn(&str) -> Option<(Vec<T>, Option<String>)>,
    ) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        for _ in 0..MAX_PAGES {
            let (page, next) = self.call_json("GET", &url, None, keys, &parse)?;
            items.extend(page);
            let Some(next) = next else {
                return Ok(items);
            };
            if self.origin.is_none() || origin_of(&next) != self.origin {
                return Err(Error::ApiFormat(format!(
                    "links.pages.next points away from {}: {}; refusing to send the token there",
                    self.api_url,
                    scrub(&next, &self.token)
                )));
            }
            if !seen.insert(next.clone()) {
                return Err(Error::ApiFormat(
                    "links.pages.next loops back to a page already read".into(),
                ));
            }
            url = next;
        }
        Err(Error::ApiFormat(format!(
            "more than {MAX_PAGES} pages of {what}"
        )))
    }

    /// `POST /v2/account/keys`. Returns the key and whether it was already
    /// on the account (DigitalOcean answers 422 "already in use" then; the
    /// key is found by its blob in [`Client::list_keys`]). A key whose
    /// creation answer was garbled, so that the retry met "already in use",
    /// also counts as existing.
    pub fn create_key(&self, name: &str, public_key: &str) -> Result<(SshKey, bool)> {
        let url = format!("{}/v2/account/keys", self.api_url);
        let body = json!({ "name": name, "public_key": public_key.trim() });
        match self.call_json("POST", &url, Some(&body), false, parse_created_key) {
            Ok(k) => Ok((k, false)),
            Err(Error::Api {
                status: 422,
                message,
                ..
            }) if message.to_ascii_lowercase().contains("already in use") => {
                let blob = key_blob(public_key).ok_or_else(|| {
                    Error::Core(codext_core::Error::KeyFormat(
                        "the public key is not an OpenSSH key line".into(),
                    ))
                })?;
                self.list_keys()?
                    .into_iter()
                    .find(|k| key_blob(&k.public_key).as_deref() == Some(blob.as_slice()))
                    .map(|k| (k, true))
                    .ok_or_else(|| {
                        Error::ApiFormat(
                            "the key is \"already in use\" but not in the account's key list"
                                .into(),
                        )
                    })
            }
            Err(e) => Err(e),
        }
    }

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
    fn send(
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
    fn call_json<T>(
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

/// `GET {metadata_url}/id`: the id of the droplet this runs on, from the
/// droplet metadata service (no token; only reachable from the droplet).
/// Transport failures, 429 and 5xx are retried like API requests.
pub fn metadata_droplet_id(metadata_url: &str, timeout: Duration) -> Result<u64> {
    let agent = ureq::AgentBuilder::new()
        .timeout(timeout)
        .redirects(0)
        .build();
    let url = format!("{}/id", metadata_url.trim_end_matches('/'));
    let mut failures = 0u32;
    loop {
        let problem = match agent.get(&url).call() {
            Ok(resp) if resp.status() == 200 => {
                let text = resp
                    .into_string()
                    .map_err(|e| Error::Http(format!("GET {url}: reading the answer: {e}")))?;
                return text.trim().parse::<u64>().map_err(|_| {
                    Error::ApiFormat(format!(
                        "GET {url}: not a droplet id: {:?}",
                        scrub(&text, "")
                    ))
                });
            }
            Ok(resp) | Err(ureq::Error::Status(_, resp))
                if !(resp.status() == 429 || resp.status() >= 500) =>
            {
                return Err(Error::Http(format!(
                    "GET {url}: HTTP {}: is this a DigitalOcean droplet with its metadata service?",
                    resp.status()
                )));
            }
            Ok(resp) | Err(ureq::Error::Status(_, resp)) => format!("HTTP {}", resp.status()),
            Err(ureq::Error::Transport(t)) => t.to_string(),
        };
        if failures >= MAX_RETRIES {
            return Err(Error::Http(format!(
                "GET {url}: {problem} (still failing after {MAX_RETRIES} retries): is this a DigitalOcean droplet?"
            )));
        }
        std::thread::sleep(Duration::from_millis(500u64 << failures));
        failures += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_urls_then_origin_is_scheme_and_authority() {
        assert_eq!(
            origin_of("https://API.digitalocean.com/v2/account/keys?page=2").as_deref(),
            Some("https://api.digitalocean.com")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080?x").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_ne!(
            origin_of("https://api.digitalocean.com.evil.example/v2"),
            origin_of("https://api.digitalocean.com")
        );
        assert_eq!(origin_of("https://user@evil.example/"), None);
        assert_eq!(origin_of("ftp://host/"), None);
        assert_eq!(origin_of("/v2/account/keys"), None);
        assert_eq!(origin_of("https:///x"), None);
    }

    #[test]
    fn given_token_in_text_then_scrubbed_and_cut() {
        assert_eq!(scrub("a secret-token b", "secret-token"), "a *** b");
        assert_eq!(scrub("abc", ""), "abc");
        assert_eq!(scrub("line\nbreak", ""), "linebreak");
        let long = "x".repeat(500);
        assert_eq!(scrub(&long, "").chars().count(), MAX_QUOTED + 1);
    }

    #[test]
    fn given_key_lines_then_blobs_compare_without_comment() {
        let a =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlp/71cd1AH2BQ7xZqaxlPCKYIP719oeFO4zLn5OMmd a";
        let b = "ssh-ed25519  AAAAC3NzaC1lZDI1NTE5AAAAIPlp/71cd1AH2BQ7xZqaxlPCKYIP719oeFO4zLn5OMmd";
        assert!(key_blob(a).is_some());
        assert_eq!(key_blob(a), key_blob(b));
        assert_eq!(key_blob("ssh-rsa !!!"), None);
        assert_eq!(key_blob("ssh-rsa"), None);
    }

    #[test]
    fn given_config_and_client_then_debug_hides_token() {
        let cfg = ApiConfig::new("http://127.0.0.1:9", "dop_v1_s3cr3t");
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
        let c = Client::new(cfg);
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("127.0.0.1:9"));
    }

    #[test]
    fn given_invalid_tag_then_refused_before_any_request() {
        let c = Client::new(ApiConfig::new("http://127.0.0.1:9", "t"));
        for bad in ["", "a b", "a/b", "a?b"] {
            assert!(matches!(c.create_tag(bad), Err(Error::TagName(_))));
            assert!(matches!(c.delete_tag(bad), Err(Error::TagName(_))));
            assert!(matches!(c.tag_droplet(bad, 1), Err(Error::TagName(_))));
        }
        assert_eq!(c.calls(), 0);
    }
}
