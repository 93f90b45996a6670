//! A stateful emulator of the parts of the DigitalOcean API v2 that codext uses, served over
//! plain HTTP on loopback, which validates every request it receives and every response it
//! sends against DigitalOcean's official OpenAPI description.
//!
//! ```no_run
//! use codext_do_emulator::{Emulator, EmulatorConfig};
//! let emu = Emulator::start(EmulatorConfig::with_tokens(&["server-token"])).unwrap();
//! let id = emu.add_droplet("box", "203.0.113.7", &["codext"]);
//! // ... point the HTTP client at emu.base_url() ...
//! emu.assert_no_violations();
//! # let _ = id;
//! ```

pub mod faults;
mod ratelimit;
mod server;
pub mod spec;
pub mod state;
pub mod subset;
pub mod util;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

pub use faults::{Fault, FaultFilter};

/// How an emulator behaves. `Default` accepts no token; see [`EmulatorConfig::with_tokens`].
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Bearer tokens accepted by the API.
    pub tokens: Vec<String>,
    /// How long a droplet action (rename) stays `in-progress`.
    pub rename_delay: Duration,
    /// The OpenAPI description; `None`: `$DO_OPENAPI_SPEC`, else the vendored subset
    /// ([`spec::Spec::load_default`]).
    pub spec_path: Option<PathBuf>,
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Requests per token per hour (DigitalOcean: 5000).
    pub rate_limit_per_hour: u32,
    /// Requests per token per minute (DigitalOcean: 250).
    pub rate_limit_per_minute: u32,
    /// `GET /v2/account/keys` requests per token per minute (DigitalOcean: 10).
    pub keys_list_per_minute: u32,
    /// Seed for tag shuffling and request ids; `None`: from the clock.
    pub seed: Option<u64>,
    /// Record a violation when a tag is addressed in a path with another capitalization than
    /// its canonical one (the description says the canonical one must be used; the lookup
    /// itself ignores case either way).
    pub strict_tag_case: bool,
    /// Print one line per answered request on stderr.
    pub log_requests: bool,
    /// Each API call (not the metadata service, not the control API) is
    /// answered after a delay drawn uniformly from this range (zero: at
    /// once); benchmarks use e.g. 150–250 ms, closer to the real API than
    /// loopback.
    pub latency: (Duration, Duration),
    /// Custom-scoped tokens (DigitalOcean's fine-grained tokens): token →
    /// the scopes it holds. A call whose operation needs a scope (its
    /// `security` entry in the description) that the token lacks gets 403
    /// `forbidden`. Tokens not listed have full access.
    pub token_scopes: std::collections::BTreeMap<String, Vec<String>>,
    /// How much faster than real time the rate-limit windows pass (1: real
    /// time). At 60 the hour is a real minute and the minute a real second;
    /// `ratelimit-reset` and `retry-after` are in the scaled clock's
    /// seconds, and the latency above is scaled down likewise, so clients
    /// must pace by the same clock ([`Emulator::clock_origin`]).
    pub time_scale: f64,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            tokens: Vec::new(),
            rename_delay: Duration::from_millis(300),
            spec_path: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            rate_limit_per_hour: 5000,
            rate_limit_per_minute: 250,
            keys_list_per_minute: 10,
            seed: None,
            strict_tag_case: false,
            log_requests: false,
            latency: (Duration::ZERO, Duration::ZERO),
            token_scopes: std::collections::BTreeMap::new(),
            time_scale: 1.0,
        }
    }
}

impl EmulatorConfig {
    /// The defaults, accepting these tokens.
    pub fn with_tokens(tokens: &[&str]) -> EmulatorConfig {
        EmulatorConfig {
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            ..EmulatorConfig::default()
        }
    }
}

/// One request the emulator answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// HTTP method.
    pub method: String,
    /// Path without query string.
    pub path: String,
    /// Query string (without `?`), possibly empty.
    pub query: String,
    /// Status code sent.
    pub status: u16,
    /// Bearer token presented, if any.
    pub token: Option<String>,
    /// The injected fault that shaped the answer, if any.
    pub fault: Option<String>,
    /// The uid owning the client's socket (from `/proc/net/tcp`, on
    /// loopback: the client runs on this machine), if it could be found.
    pub peer_uid: Option<u32>,
}

impl CallRecord {
    /// As JSON (for the control API).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "method": self.method, "path": self.path, "query": self.query,
            "status": self.status, "token": self.token, "fault": self.fault,
            "peer_uid": self.peer_uid
        })
    }
}

/// A running emulator; dropping it stops the server.
pub struct Emulator {
    shared: Arc<server::Shared>,
    http: Option<Arc<tiny_http::Server>>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Load the description (once per process) and start serving.
    pub fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        let spec = match &config.spec_path {
            Some(p) => spec::Spec::load(p)?,
            None => spec::Spec::load_default()?,
        };
        let http = tiny_http::Server::http(config.listen)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let addr = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("not an IP listener"))?;
        let http = Arc::new(http);
        let base_url = format!("http://{addr}");
        let seed = config.seed.unwrap_or_else(util::Rng::clock_seed);
        let clock = util::SimClock::new(config.time_scale);
        let shared = Arc::new(server::Shared {
            clock,
            state: Mutex::new(state::State::new(seed)),
            faults: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
            rate: Mutex::new(ratelimit::RateLimiter::default()),
            config,
            spec,
            base_url,
            stopping: std::sync::atomic::AtomicBool::new(false),
        });
        let thread = {
            let shared = shared.clone();
            let http = http.clone();
            std::thread::Builder::new()
                .name("do-emulator".into())
                .spawn(move || server::serve(shared, http))?
        };
        Ok(Emulator {
            shared,
            http: Some(http),
            thread: Some(thread),
            addr,
        })
    }

    /// `http://127.0.0.1:PORT`; the API is under `/v2/...`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// `http://127.0.0.1:PORT/metadata/v1`; `GET {metadata_url}/id` gives the droplet id.
    pub fn metadata_url(&self) -> String {
        format!("{}/metadata/v1", self.shared.base_url)
    }

    /// The clock's origin: the real instant it started, the Unix time
    /// then, and its scale (for a client's `codext_do::ScaledClock`).
    pub fn clock_origin(&self) -> (std::time::Instant, Duration, f64) {
        self.shared.clock.origin()
    }

    /// `METHOD /v2/template/{param}` of an API call (its operation in the
    /// description), for counting calls per route; the plain path when it
    /// is not an operation.
    pub fn route(&self, method: &str, path: &str) -> String {
        match self.shared.spec.find(method, path) {
            spec::Match::Found(op, _) => format!("{method} {}", op.template),
            _ => format!("{method} {path}"),
        }
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Add a droplet (its tags are created if needed); the first one added is the one the
    /// metadata service reports, see [`Emulator::set_metadata_droplet`].
    pub fn add_droplet(&self, name: &str, public_ipv4: &str, tags: &[&str]) -> u64 {
        self.shared
            .lock_state()
            .add_droplet(name, public_ipv4, tags)
    }

    /// Make the metadata service report this droplet.
    pub fn set_metadata_droplet(&self, id: u64) {
        self.shared.lock_state().metadata_droplet = Some(id);
    }

    /// The droplet as `GET /v2/droplets/{id}` would show it now.
    pub fn droplet(&self, id: u64) -> Option<Value> {
        let mut st = self.shared.lock_state();
        st.tick();
        st.droplet_json(id)
    }

    /// The action as `GET /v2/actions/{id}` would show it now.
    pub fn action(&self, id: u64) -> Option<Value> {
        let mut st = self.shared.lock_state();
        st.tick();
        st.action_json(id)
    }

    /// Queue a fault; faults are consumed in the order queued.
    pub fn inject(&self, fault: Fault) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(fault);
    }

    /// Every request or response so far that did not match the description.
    pub fn violations(&self) -> Vec<String> {
        self.shared
            .violations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forget the violations recorded so far.
    pub fn clear_violations(&self) {
        self.shared
            .violations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Panic listing the violations, if any.
    #[track_caller]
    pub fn assert_no_violations(&self) {
        let v = self.violations();
        if !v.is_empty() {
            panic!(
                "DigitalOcean emulator saw {} violation(s) of the OpenAPI description:\n  {}",
                v.len(),
                v.join("\n  ")
            );
        }
    }

    /// Every request answered so far (control-API requests excluded).
    pub fn calls(&self) -> Vec<CallRecord> {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The SSH keys of the account, as the API shows them.
    pub fn keys(&self) -> Vec<Value> {
        self.shared
            .lock_state()
            .keys
            .iter()
            .map(state::State::key_json)
            .collect()
    }

    /// Creates a tag attached to nothing (as `POST /v2/tags` would);
    /// returns its canonical name.
    pub fn add_tag(&self, name: &str) -> String {
        self.shared.lock_state().ensure_tag(name)
    }

    /// The tags of the account (canonical names).
    pub fn tags(&self) -> Vec<String> {
        self.shared
            .lock_state()
            .tags
            .iter()
            .map(|t| t.name.clone())
            .collect()
    }

    /// Everything the account holds, as the control API's `GET /_emulator/state` shows it.
    pub fn state_json(&self) -> Value {
        self.shared.state_json()
    }

    /// Check a response the emulator would send for `method path` against the description,
    /// returning the violations it would record (empty if it conforms).
    pub fn check_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<String> {
        server::check_response(&self.shared.spec, method, path, status, headers, body)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shared
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(http) = &self.http {
            http.unblock();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Dropping the last handle wakes tiny_http's accept thread, which then closes the
        // listener; wait (briefly) until it has, so the port is free when `drop` returns.
        drop(self.http.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            match std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)) {
                Ok(_) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break,
            }
        }
    }
}
