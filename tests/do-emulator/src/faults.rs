//! Faults a test can queue: rate-limit bursts, server errors, a "pending event" on the next
//! droplet action, slow answers and truncated JSON bodies.
//!
//! Each fault answers the next `count` matching requests. Without a filter a fault matches any
//! `/v2/...` request (a `PendingEvent` only droplet-action posts); a filter narrows it to a
//! method and/or a path prefix (a prefix of `/metadata` reaches the metadata service too).

use std::time::Duration;

use serde_json::Value;

/// Which requests a fault applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultFilter {
    /// HTTP method (any case); `None`: any.
    pub method: Option<String>,
    /// Path prefix, e.g. `/v2/droplets`; `None`: any `/v2/` path.
    pub path_prefix: Option<String>,
}

/// A queued fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer `429 too_many_requests` with `retry-after`.
    TooManyRequests {
        /// How many requests.
        count: u32,
        /// Value of `retry-after`.
        retry_after_secs: u64,
        /// Which requests.
        filter: Option<FaultFilter>,
    },
    /// Answer `status` (5xx) with an error body.
    ServerError {
        /// How many requests.
        count: u32,
        /// Status code.
        status: u16,
        /// Which requests.
        filter: Option<FaultFilter>,
    },
    /// Answer the next droplet action posts `422 Droplet already has a pending event.`
    PendingEvent {
        /// How many requests.
        count: u32,
        /// Which requests (further narrowing droplet-action posts).
        filter: Option<FaultFilter>,
    },
    /// Wait before answering normally.
    Slow {
        /// How many requests.
        count: u32,
        /// How long to wait.
        delay: Duration,
        /// Which requests.
        filter: Option<FaultFilter>,
    },
    /// Answer 200 with a truncated JSON body (the request is still carried out).
    MalformedJson {
        /// How many requests.
        count: u32,
        /// Which requests.
        filter: Option<FaultFilter>,
    },
}

impl Fault {
    /// `count` × 429 with `retry-after: retry_after_secs`.
    pub fn too_many_requests(count: u32, retry_after_secs: u64) -> Fault {
        Fault::TooManyRequests {
            count,
            retry_after_secs,
            filter: None,
        }
    }

    /// `count` × `status`.
    pub fn server_error(count: u32, status: u16) -> Fault {
        Fault::ServerError {
            count,
            status,
            filter: None,
        }
    }

    /// `count` × 422 pending event on droplet actions.
    pub fn pending_event(count: u32) -> Fault {
        Fault::PendingEvent {
            count,
            filter: None,
        }
    }

    /// `count` × answer after `delay`.
    pub fn slow(count: u32, delay: Duration) -> Fault {
        Fault::Slow {
            count,
            delay,
            filter: None,
        }
    }

    /// `count` × truncated JSON.
    pub fn malformed_json(count: u32) -> Fault {
        Fault::MalformedJson {
            count,
            filter: None,
        }
    }

    /// Restrict to a method (`""`: any) and a path prefix (`""`: any `/v2/` path).
    pub fn only(mut self, method: &str, path_prefix: &str) -> Fault {
        let f = FaultFilter {
            method: (!method.is_empty()).then(|| method.to_string()),
            path_prefix: (!path_prefix.is_empty()).then(|| path_prefix.to_string()),
        };
        match &mut self {
            Fault::TooManyRequests { filter, .. }
            | Fault::ServerError { filter, .. }
            | Fault::PendingEvent { filter, .. }
            | Fault::Slow { filter, .. }
            | Fault::MalformedJson { filter, .. } => *filter = Some(f),
        }
        self
    }

    /// Short name, as recorded in [`crate::CallRecord::fault`].
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::TooManyRequests { .. } => "too_many_requests",
            Fault::ServerError { .. } => "server_error",
            Fault::PendingEvent { .. } => "pending_event",
            Fault::Slow { .. } => "slow",
            Fault::MalformedJson { .. } => "malformed_json",
        }
    }

    pub(crate) fn count_mut(&mut self) -> &mut u32 {
        match self {
            Fault::TooManyRequests { count, .. }
            | Fault::ServerError { count, .. }
            | Fault::PendingEvent { count, .. }
            | Fault::Slow { count, .. }
            | Fault::MalformedJson { count, .. } => count,
        }
    }

    fn filter(&self) -> Option<&FaultFilter> {
        match self {
            Fault::TooManyRequests { filter, .. }
            | Fault::ServerError { filter, .. }
            | Fault::PendingEvent { filter, .. }
            | Fault::Slow { filter, .. }
            | Fault::MalformedJson { filter, .. } => filter.as_ref(),
        }
    }

    /// Whether this fault applies to a request.
    pub(crate) fn matches(&self, method: &str, path: &str, is_droplet_action_post: bool) -> bool {
        if matches!(self, Fault::PendingEvent { .. }) && !is_droplet_action_post {
            return false;
        }
        let filter = self.filter();
        let method_ok = filter
            .and_then(|f| f.method.as_deref())
            .is_none_or(|m| m.eq_ignore_ascii_case(method));
        let path_ok = match filter.and_then(|f| f.path_prefix.as_deref()) {
            Some(prefix) => path.starts_with(prefix),
            None => path.starts_with("/v2/"),
        };
        method_ok && path_ok
    }

    /// Parse the control API's JSON form:
    /// `{"kind": "too_many_requests"|"server_error"|"pending_event"|"slow"|"malformed_json",
    ///   "count": N, "retry_after_secs": N, "status": N, "delay_ms": N,
    ///   "method": "GET", "path_prefix": "/v2/droplets"}`.
    pub fn from_json(v: &Value) -> Result<Fault, String> {
        let count = v.get("count").and_then(Value::as_u64).unwrap_or(1) as u32;
        let kind = v
            .get("kind")
            .and_then(Value::as_str)
            .ok_or("missing \"kind\"")?;
        let fault = match kind {
            "too_many_requests" => Fault::too_many_requests(
                count,
                v.get("retry_after_secs")
                    .and_then(Value::as_u64)
                    .unwrap_or(1),
            ),
            "server_error" => Fault::server_error(
                count,
                v.get("status").and_then(Value::as_u64).unwrap_or(500) as u16,
            ),
            "pending_event" => Fault::pending_event(count),
            "slow" => Fault::slow(
                count,
                Duration::from_millis(v.get("delay_ms").and_then(Value::as_u64).unwrap_or(1000)),
            ),
            "malformed_json" => Fault::malformed_json(count),
            other => return Err(format!("unknown fault kind {other:?}")),
        };
        let method = v.get("method").and_then(Value::as_str).unwrap_or("");
        let prefix = v.get("path_prefix").and_then(Value::as_str).unwrap_or("");
        Ok(if method.is_empty() && prefix.is_empty() {
            fault
        } else {
            fault.only(method, prefix)
        })
    }
}
