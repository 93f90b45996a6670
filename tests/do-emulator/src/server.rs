//! The HTTP side: one thread accepts requests (tiny_http), each request is answered on a
//! thread of its own. An API request goes through: spec validation of the request, bearer
//! authentication, rate limiting, injected faults, the handler, spec validation of the
//! response, and the call record. `/metadata/v1/...` needs no token and is not validated;
//! `/_emulator/...` is the control API (not validated, not recorded).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};

use crate::faults::Fault;
use crate::ratelimit::{self, RateLimiter};
use crate::spec::{Match, Spec};
use crate::state::State;
use crate::{CallRecord, EmulatorConfig};

/// State shared by the server threads and the [`crate::Emulator`] handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: EmulatorConfig,
    pub clock: crate::util::SimClock,
    pub spec: Arc<Spec>,
    pub state: Mutex<State>,
    pub faults: Mutex<Vec<Fault>>,
    pub violations: Mutex<Vec<String>>,
    pub calls: Mutex<Vec<CallRecord>>,
    pub rate: Mutex<RateLimiter>,
    pub base_url: String,
    pub stopping: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn lock_state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn violation(&self, msg: String) {
        lock(&self.violations).push(msg);
    }

    pub fn state_json(&self) -> Value {
        let mut st = self.lock_state();
        st.tick();
        let ids: Vec<u64> = st.droplets.iter().map(|d| d.id).collect();
        let droplets: Vec<Value> = ids.iter().filter_map(|id| st.droplet_json(*id)).collect();
        let actions: Vec<Value> = st
            .actions
            .iter()
            .filter_map(|a| st.action_json(a.id))
            .collect();
        let tags: Vec<Value> = st
            .tags
            .iter()
            .filter_map(|t| st.tag_json(&t.name, &self.base_url))
            .collect();
        let keys: Vec<Value> = st.keys.iter().map(State::key_json).collect();
        json!({
            "droplets": droplets, "actions": actions, "tags": tags, "keys": keys,
            "metadata_droplet": st.metadata_droplet
        })
    }
}

/// An answer being built.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: serde_json::to_vec(v).unwrap_or_default(),
        }
    }

    fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn text(status: u16, s: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: s.as_bytes().to_vec(),
        }
    }

    fn error(status: u16, id: &str, message: &str, request_id: &str) -> Reply {
        Reply::json(
            status,
            &json!({"id": id, "message": message, "request_id": request_id}),
        )
    }

    fn header(mut self, name: &str, value: String) -> Reply {
        self.headers.push((name.to_string(), value));
        self
    }
}

/// Accept requests until the emulator stops.
pub(crate) fn serve(shared: Arc<Shared>, http: Arc<tiny_http::Server>) {
    while !shared.stopping.load(Ordering::SeqCst) {
        match http.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(req)) => {
                let shared = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("do-emulator-req".into())
                    .spawn(move || handle(&shared, req));
                if spawned.is_err() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Ok(None) => {}
            Err(_) => {
                if shared.stopping.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn send(req: tiny_http::Request, reply: Reply) {
    let mut resp = tiny_http::Response::from_data(reply.body)
        .with_status_code(tiny_http::StatusCode(reply.status));
    for (n, v) in reply.headers {
        if let Ok(h) = tiny_http::Header::from_bytes(n.as_bytes(), v.as_bytes()) {
            resp.add_header(h);
        }
    }
    let _ = req.respond(resp);
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                crate::spec::percent_decode(&k.replace('+', " ")),
                crate::spec::percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// Incoming request, read fully.
struct Incoming {
    method: String,
    path: String,
    query: String,
    token: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

fn handle(shared: &Shared, mut req: tiny_http::Request) {
    let method = req.method().as_str().to_ascii_uppercase();
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let mut body = Vec::new();
    let _ = req.as_reader().read_to_end(&mut body);
    let header = |name: &str| {
        req.headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str().to_string())
    };
    let token = header("Authorization").map(|a| {
        let a = a.trim();
        match a.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
                rest.trim().to_string()
            }
            _ => a.to_string(),
        }
    });
    let inc = Incoming {
        method,
        path: path.to_string(),
        query: query.to_string(),
        token,
        content_type: header("Content-Type"),
        body,
    };
    if inc.path.starts_with("/_emulator/") || inc.path == "/_emulator" {
        let reply = control(shared, &inc);
        send(req, reply);
        return;
    }
    // Read as soon as the request is in, before the emulated latency: the
    // client has just sent it and holds its socket (one that gave up
    // later would show as an orphan, whose uid column is 0).
    let peer_uid = req
        .remote_addr()
        .and_then(|peer| crate::util::tcp_peer_uid(*peer, shared_addr(&shared.base_url)?));
    let (reply, fault) = if inc.path.starts_with("/metadata/") {
        metadata(shared, &inc)
    } else {
        // The real API is a network away: each call takes a while.
        let (lo, hi) = shared.config.latency;
        if !hi.is_zero() {
            let spread = hi.saturating_sub(lo).as_millis() as u64;
            let extra = if spread == 0 {
                0
            } else {
                shared.lock_state().rng.next_u64() % (spread + 1)
            };
            std::thread::sleep(shared.clock.real(lo + Duration::from_millis(extra)));
        }
        api(shared, &inc)
    };
    if shared.config.log_requests {
        eprintln!(
            "do-emulator: {} {}{}{} -> {}{}",
            inc.method,
            inc.path,
            if inc.query.is_empty() { "" } else { "?" },
            inc.query,
            reply.status,
            fault
                .as_deref()
                .map(|f| format!(" (fault {f})"))
                .unwrap_or_default()
        );
    }
    lock(&shared.calls).push(CallRecord {
        method: inc.method.clone(),
        path: inc.path.clone(),
        query: inc.query.clone(),
        status: reply.status,
        token: inc.token.clone(),
        fault,
        peer_uid,
    });
    send(req, reply);
}

/// Take the first queued fault matching the request (decrementing it).
fn take_fault(shared: &Shared, method: &str, path: &str, action_post: bool) -> Option<Fault> {
    let mut faults = lock(&shared.faults);
    let pos = faults
        .iter()
        .position(|f| f.matches(method, path, action_post))?;
    let f = faults[pos].clone();
    let c = faults[pos].count_mut();
    *c = c.saturating_sub(1);
    if *c == 0 {
        faults.remove(pos);
    }
    Some(f)
}

fn metadata(shared: &Shared, inc: &Incoming) -> (Reply, Option<String>) {
    let fault = take_fault(shared, &inc.method, &inc.path, false)
        .filter(|f| !matches!(f, Fault::PendingEvent { .. }));
    let name = fault.as_ref().map(|f| f.kind().to_string());
    match &fault {
        Some(Fault::TooManyRequests { .. }) => {
            return (Reply::text(429, "Too Many Requests"), name)
        }
        Some(Fault::ServerError { status, .. }) => return (Reply::text(*status, "error"), name),
        Some(Fault::Slow { delay, .. }) => std::thread::sleep(*delay),
        _ => {}
    }
    let mut st = shared.lock_state();
    st.tick();
    let Some(d) = st.metadata_droplet.and_then(|id| st.droplet(id)).cloned() else {
        return (Reply::text(404, "not found"), name);
    };
    let mut reply = match (inc.method.as_str(), inc.path.trim_end_matches('/')) {
        ("GET", "/metadata/v1/id") => Reply::text(200, &d.id.to_string()),
        ("GET", "/metadata/v1/hostname") => Reply::text(200, &d.name),
        ("GET", "/metadata/v1/region") => Reply::text(200, crate::state::REGION),
        ("GET", "/metadata/v1/tags") => Reply::text(200, &d.tags.join("\n")),
        ("GET", "/metadata/v1/interfaces/public/0/ipv4/address") => {
            Reply::text(200, &d.public_ipv4)
        }
        ("GET", "/metadata/v1.json") | ("GET", "/metadata/v1") => Reply::json(
            200,
            &json!({"droplet_id": d.id, "hostname": d.name, "region": crate::state::REGION,
                    "tags": d.tags,
                    "interfaces": {"public": [{"ipv4": {"ip_address": d.public_ipv4}}]}}),
        ),
        _ => Reply::text(404, "not found"),
    };
    if matches!(fault, Some(Fault::MalformedJson { .. })) {
        reply.status = 200;
        reply.body.truncate(reply.body.len() / 2);
    }
    (reply, name)
}

fn api(shared: &Shared, inc: &Incoming) -> (Reply, Option<String>) {
    let request_id = shared.lock_state().rng.uuid();
    let where_ = format!("{} {}", inc.method, inc.path);
    let query = parse_query(&inc.query);
    let matched = shared.spec.find(&inc.method, &inc.path);
    let (op, params) = match matched {
        Match::Found(op, params) => {
            for v in shared.spec.validate_request(
                op,
                &params,
                &query,
                inc.content_type.as_deref(),
                &inc.body,
            ) {
                shared.violation(format!("{where_}: request: {v}"));
            }
            (Some(op), params)
        }
        Match::MethodNotAllowed(allowed) => {
            shared.violation(format!(
                "{where_}: request: method {} is not an operation of {} in the OpenAPI description (allowed: {})",
                inc.method,
                inc.path,
                allowed.join(", ")
            ));
            (None, HashMap::new())
        }
        Match::NotFound => {
            shared.violation(format!(
                "{where_}: request: path is not in the OpenAPI description"
            ));
            (None, HashMap::new())
        }
    };
    let cfg = &shared.config;
    let rate_headers = |reply: Reply, h: ratelimit::Headers| {
        reply
            .header("ratelimit-limit", h.limit.to_string())
            .header("ratelimit-remaining", h.remaining.to_string())
            .header("ratelimit-reset", h.reset.to_string())
    };
    let finish = |reply: Reply, validate: bool| -> Reply {
        if validate {
            if let Some(op) = op {
                for v in
                    shared
                        .spec
                        .validate_response(op, reply.status, &reply.headers, &reply.body)
                {
                    shared.violation(format!("{where_}: response {}: {v}", reply.status));
                }
            }
        }
        reply
    };

    // Authentication.
    let token = match &inc.token {
        Some(t) if cfg.tokens.iter().any(|k| k == t) => t.clone(),
        _ => {
            let h = lock(&shared.rate).peek(None, cfg, &shared.clock);
            let reply = Reply::error(
                401,
                "unauthorized",
                "Unable to authenticate you",
                &request_id,
            );
            return (finish(rate_headers(reply, h), true), None);
        }
    };

    // Rate limits.
    let template = op.map(|o| o.template.as_str()).unwrap_or("");
    let keys_list = inc.method == "GET" && template == "/v2/account/keys";
    let headers = match lock(&shared.rate).check(&token, keys_list, cfg, &shared.clock) {
        Ok(h) => h,
        Err(refused) => {
            let reply = Reply::error(
                429,
                "too_many_requests",
                "API Rate limit exceeded.",
                &request_id,
            )
            .header("retry-after", refused.retry_after.to_string());
            return (finish(rate_headers(reply, refused.headers), true), None);
        }
    };

    // Scopes of a custom-scoped token (after the rate limit: a refused
    // call still counts).
    if let (Some(held), Some(op)) = (cfg.token_scopes.get(&token), op) {
        if op.scopes.iter().any(|s| !held.contains(s)) {
            let reply = Reply::error(
                403,
                "forbidden",
                "You are not authorized to perform this operation",
                &request_id,
            );
            return (finish(rate_headers(reply, headers), true), None);
        }
    }

    // Faults.
    let action_post = inc.method == "POST" && template == "/v2/droplets/{droplet_id}/actions";
    let fault = take_fault(shared, &inc.method, &inc.path, action_post);
    let fault_name = fault.as_ref().map(|f| f.kind().to_string());
    match &fault {
        Some(Fault::TooManyRequests {
            retry_after_secs, ..
        }) => {
            let reply = Reply::error(
                429,
                "too_many_requests",
                "API Rate limit exceeded.",
                &request_id,
            )
            .header("retry-after", retry_after_secs.to_string());
            let h = ratelimit::Headers {
                remaining: 0,
                ..headers
            };
            return (rate_headers(reply, h), fault_name);
        }
        Some(Fault::ServerError { status, .. }) => {
            let (id, msg) = match status {
                502 => ("bad_gateway", "Bad Gateway"),
                503 => ("service_unavailable", "Service Unavailable"),
                504 => ("gateway_timeout", "Gateway Timeout"),
                500..=599 => ("server_error", "Server Error"),
                _ => ("error", "Error"),
            };
            let reply = Reply::error(*status, id, msg, &request_id);
            return (rate_headers(reply, headers), fault_name);
        }
        Some(Fault::PendingEvent { .. }) => {
            let reply = Reply::error(
                422,
                "unprocessable_entity",
                "Droplet already has a pending event.",
                &request_id,
            );
            return (finish(rate_headers(reply, headers), true), fault_name);
        }
        Some(Fault::Slow { delay, .. }) => std::thread::sleep(*delay),
        _ => {}
    }

    let reply = match op {
        Some(op) => dispatch(shared, inc, &op.template, &params, &query, &request_id),
        None => match shared.spec.find(&inc.method, &inc.path) {
            Match::MethodNotAllowed(allowed) => {
                Reply::error(405, "method_not_allowed", "Method Not Allowed", &request_id)
                    .header("allow", allowed.join(", "))
            }
            _ => Reply::error(
                404,
                "not_found",
                "The resource you were accessing could not be found.",
                &request_id,
            ),
        },
    };
    let reply = rate_headers(reply, headers);
    if matches!(fault, Some(Fault::MalformedJson { .. })) {
        let mut reply = reply;
        reply.status = 200;
        if reply.body.is_empty() {
            reply.body = br#"{"droplet":{"id":"#.to_vec();
            reply.headers.push((
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            ));
        } else {
            let keep = (reply.body.len() / 2).max(1);
            reply.body.truncate(keep);
        }
        return (reply, fault_name);
    }
    (finish(reply, true), fault_name)
}

/// Check a response against the description (for [`crate::Emulator::check_response`]).
pub(crate) fn check_response(
    spec: &Spec,
    method: &str,
    path: &str,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<String> {
    let (path, _) = path.split_once('?').unwrap_or((path, ""));
    match spec.find(method, path) {
        Match::Found(op, _) => {
            let headers: Vec<(String, String)> = headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            spec.validate_response(op, status, &headers, body)
                .into_iter()
                .map(|v| format!("{method} {path}: response {status}: {v}"))
                .collect()
        }
        _ => vec![format!(
            "{method} {path}: not an operation of the OpenAPI description"
        )],
    }
}

const NOT_FOUND: &str = "The resource you were accessing could not be found.";

/// Page through `items` as DigitalOcean does.
fn paginate(
    base_url: &str,
    path: &str,
    query: &[(String, String)],
    total: usize,
) -> (std::ops::Range<usize>, Value) {
    let get = |n: &str| {
        query
            .iter()
            .find(|(k, _)| k == n)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    let per_page = get("per_page").unwrap_or(20).clamp(1, 200);
    let page = get("page").unwrap_or(1).max(1);
    let last = total.div_ceil(per_page).max(1);
    let start = ((page - 1) * per_page).min(total);
    let end = (start + per_page).min(total);
    let url = |p: usize| format!("{base_url}{path}?page={p}&per_page={per_page}");
    let mut pages = serde_json::Map::new();
    if page > 1 {
        pages.insert("first".into(), url(1).into());
        pages.insert("prev".into(), url((page - 1).min(last)).into());
    }
    if page < last {
        pages.insert("last".into(), url(last).into());
        pages.insert("next".into(), url(page + 1).into());
    }
    let links = if pages.is_empty() {
        json!({})
    } else {
        json!({ "pages": pages })
    };
    (start..end, links)
}

fn is_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

fn is_tag_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b':')
}

fn dispatch(
    shared: &Shared,
    inc: &Incoming,
    template: &str,
    params: &HashMap<String, String>,
    query: &[(String, String)],
    rid: &str,
) -> Reply {
    let not_found = || Reply::error(404, "not_found", NOT_FOUND, rid);
    let unprocessable = |m: &str| Reply::error(422, "unprocessable_entity", m, rid);
    let param_u64 = |n: &str| params.get(n).and_then(|v| v.parse::<u64>().ok());
    let body: Option<Value> = serde_json::from_slice(&inc.body).ok();
    let bad_json = || Reply::error(400, "bad_request", "Unable to parse the request body.", rid);
    let base = &shared.base_url;
    let mut st = shared.lock_state();
    st.tick();
    let check_tag_case = |st: &State, given: &str| {
        if shared.config.strict_tag_case {
            if let Some(t) = st.tag(given) {
                if t.name != given {
                    shared.violation(format!(
                        "{} {}: request: tag {given:?} is not in its canonical capitalization {:?}",
                        inc.method, inc.path, t.name
                    ));
                }
            }
        }
    };
    match (inc.method.as_str(), template) {
        ("GET", "/v2/droplets/{droplet_id}") => {
            match param_u64("droplet_id").and_then(|id| st.droplet_json(id)) {
                Some(d) => Reply::json(200, &json!({ "droplet": d })),
                None => not_found(),
            }
        }
        ("GET", "/v2/droplets/{droplet_id}/actions") => {
            let Some(id) = param_u64("droplet_id").filter(|id| st.droplet(*id).is_some()) else {
                return not_found();
            };
            let ids: Vec<u64> = st
                .actions
                .iter()
                .filter(|a| a.droplet_id == id)
                .map(|a| a.id)
                .collect();
            let (range, links) = paginate(base, &inc.path, query, ids.len());
            let actions: Vec<Value> = ids[range]
                .iter()
                .filter_map(|a| st.action_json(*a))
                .collect();
            Reply::json(
                200,
                &json!({"actions": actions, "links": links, "meta": {"total": ids.len()}}),
            )
        }
        ("POST", "/v2/droplets/{droplet_id}/actions") => {
            let Some(id) = param_u64("droplet_id").filter(|id| st.droplet(*id).is_some()) else {
                return not_found();
            };
            let Some(body) = body else { return bad_json() };
            let kind = body.get("type").and_then(Value::as_str).unwrap_or("");
            const TYPES: &[&str] = &[
                "enable_backups",
                "disable_backups",
                "reboot",
                "power_cycle",
                "shutdown",
                "power_off",
                "power_on",
                "restore",
                "password_reset",
                "resize",
                "rebuild",
                "rename",
                "change_kernel",
                "enable_ipv6",
                "snapshot",
            ];
            if !TYPES.contains(&kind) {
                return unprocessable("The action type is invalid.");
            }
            let new_name = if kind == "rename" {
                let name = body.get("name").and_then(Value::as_str).unwrap_or("");
                if !is_hostname(name) {
                    return unprocessable(
                        "Name: Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)",
                    );
                }
                Some(name.to_string())
            } else {
                None
            };
            if st.pending_action(id).is_some() {
                return unprocessable("Droplet already has a pending event.");
            }
            let action = st.start_action(id, kind, new_name, shared.config.rename_delay);
            match st.action_json(action) {
                Some(a) => Reply::json(201, &json!({ "action": a })),
                None => not_found(),
            }
        }
        ("GET", "/v2/droplets/{droplet_id}/actions/{action_id}") => {
            let droplet = param_u64("droplet_id");
            match param_u64("action_id").and_then(|a| st.action(a).cloned()) {
                Some(a) if Some(a.droplet_id) == droplet => match st.action_json(a.id) {
                    Some(a) => Reply::json(200, &json!({ "action": a })),
                    None => not_found(),
                },
                _ => not_found(),
            }
        }
        ("GET", "/v2/actions/{action_id}") => {
            match param_u64("action_id").and_then(|a| st.action_json(a)) {
                Some(a) => Reply::json(200, &json!({ "action": a })),
                None => not_found(),
            }
        }
        ("GET", "/v2/tags") => {
            let names: Vec<String> = st.tags.iter().map(|t| t.name.clone()).collect();
            let (range, links) = paginate(base, &inc.path, query, names.len());
            let tags: Vec<Value> = names[range]
                .iter()
                .filter_map(|n| st.tag_json(n, base))
                .collect();
            Reply::json(
                200,
                &json!({"tags": tags, "links": links, "meta": {"total": names.len()}}),
            )
        }
        ("POST", "/v2/tags") => {
            let Some(body) = body else {
                // 400 on this operation is declared with another error shape; 422 keeps the
                // usual one.
                return unprocessable("Unable to parse the request body.");
            };
            let Some(name) = body.get("name").and_then(Value::as_str) else {
                return unprocessable("name is required and must be a string");
            };
            if !is_tag_name(name) {
                return unprocessable(
                    "name: Tags may contain letters, numbers, colons, dashes, and underscores, and be at most 255 characters",
                );
            }
            let canonical = st.ensure_tag(name);
            match st.tag_json(&canonical, base) {
                Some(t) => Reply::json(201, &json!({ "tag": t })),
                None => not_found(),
            }
        }
        ("GET", "/v2/tags/{tag_id}") => {
            let name = params.get("tag_id").cloned().unwrap_or_default();
            check_tag_case(&st, &name);
            match st.tag_json(&name, base) {
                Some(t) => Reply::json(200, &json!({ "tag": t })),
                None => not_found(),
            }
        }
        ("DELETE", "/v2/tags/{tag_id}") => {
            let name = params.get("tag_id").cloned().unwrap_or_default();
            check_tag_case(&st, &name);
            if st.delete_tag(&name) {
                Reply::empty(204)
            } else {
                not_found()
            }
        }
        ("POST", "/v2/tags/{tag_id}/resources") | ("DELETE", "/v2/tags/{tag_id}/resources") => {
            let name = params.get("tag_id").cloned().unwrap_or_default();
            check_tag_case(&st, &name);
            let Some(canonical) = st.tag(&name).map(|t| t.name.clone()) else {
                return not_found();
            };
            let Some(body) = body else { return bad_json() };
            let Some(resources) = body.get("resources").and_then(Value::as_array) else {
                return unprocessable("resources is required");
            };
            let mut ids = Vec::new();
            for r in resources {
                let kind = r.get("resource_type").and_then(Value::as_str).unwrap_or("");
                let id = r.get("resource_id").and_then(|v| match v {
                    Value::String(s) => s.parse::<u64>().ok(),
                    Value::Number(n) => n.as_u64(),
                    _ => None,
                });
                match (kind, id) {
                    ("droplet", Some(id)) if st.droplet(id).is_some() => ids.push(id),
                    ("droplet", _) => return not_found(),
                    ("image" | "volume" | "volume_snapshot", _) => return not_found(),
                    _ => return unprocessable("resource_type is invalid"),
                }
            }
            for id in ids {
                if let Some(d) = st.droplet_mut(id) {
                    if inc.method == "POST" {
                        if !d.tags.contains(&canonical) {
                            d.tags.push(canonical.clone());
                        }
                    } else {
                        d.tags.retain(|t| t != &canonical);
                    }
                }
            }
            Reply::empty(204)
        }
        ("GET", "/v2/account/keys") => {
            let (range, links) = paginate(base, &inc.path, query, st.keys.len());
            let keys: Vec<Value> = st.keys[range].iter().map(State::key_json).collect();
            Reply::json(
                200,
                &json!({"ssh_keys": keys, "links": links, "meta": {"total": st.keys.len()}}),
            )
        }
        ("POST", "/v2/account/keys") => {
            let Some(body) = body else { return bad_json() };
            let name = body.get("name").and_then(Value::as_str).unwrap_or("");
            let public_key = body.get("public_key").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                return unprocessable("Name is required");
            }
            match st.add_key(name, public_key) {
                Ok(k) => Reply::json(201, &json!({ "ssh_key": State::key_json(k) })),
                Err(m) => unprocessable(m),
            }
        }
        ("GET", "/v2/account/keys/{ssh_key_identifier}") => {
            let ident = params
                .get("ssh_key_identifier")
                .cloned()
                .unwrap_or_default();
            match st.key_index(&ident) {
                Some(i) => Reply::json(200, &json!({"ssh_key": State::key_json(&st.keys[i])})),
                None => not_found(),
            }
        }
        ("PUT", "/v2/account/keys/{ssh_key_identifier}") => {
            let ident = params
                .get("ssh_key_identifier")
                .cloned()
                .unwrap_or_default();
            let Some(i) = st.key_index(&ident) else {
                return not_found();
            };
            let Some(body) = body else { return bad_json() };
            if let Some(name) = body.get("name").and_then(Value::as_str) {
                st.keys[i].name = name.to_string();
            }
            Reply::json(200, &json!({"ssh_key": State::key_json(&st.keys[i])}))
        }
        ("DELETE", "/v2/account/keys/{ssh_key_identifier}") => {
            let ident = params
                .get("ssh_key_identifier")
                .cloned()
                .unwrap_or_default();
            match st.key_index(&ident) {
                Some(i) => {
                    st.keys.remove(i);
                    Reply::empty(204)
                }
                None => not_found(),
            }
        }
        (m, t) => {
            shared.violation(format!(
                "{} {}: emulator: operation {m} {t} is in the description but not emulated",
                inc.method, inc.path
            ));
            not_found()
        }
    }
}

fn control(shared: &Shared, inc: &Incoming) -> Reply {
    let body: Option<Value> = serde_json::from_slice(&inc.body).ok();
    match (inc.method.as_str(), inc.path.trim_end_matches('/')) {
        ("GET", "/_emulator/violations") => Reply::json(200, &json!(*lock(&shared.violations))),
        ("DELETE", "/_emulator/violations") => {
            lock(&shared.violations).clear();
            Reply::empty(204)
        }
        ("GET", "/_emulator/calls") => {
            let calls: Vec<Value> = lock(&shared.calls)
                .iter()
                .map(CallRecord::to_json)
                .collect();
            Reply::json(200, &Value::Array(calls))
        }
        ("GET", "/_emulator/state") => Reply::json(200, &shared.state_json()),
        ("GET", "/_emulator/faults") => {
            let faults: Vec<Value> = lock(&shared.faults)
                .iter_mut()
                .map(|f| json!({"kind": f.kind(), "count": *f.count_mut()}))
                .collect();
            Reply::json(200, &Value::Array(faults))
        }
        ("POST", "/_emulator/faults") => {
            let items = match body {
                Some(Value::Array(a)) => a,
                Some(v @ Value::Object(_)) => vec![v],
                _ => return Reply::json(400, &json!({"error": "expected a JSON object or array"})),
            };
            let mut parsed = Vec::new();
            for i in &items {
                match Fault::from_json(i) {
                    Ok(f) => parsed.push(f),
                    Err(e) => return Reply::json(400, &json!({ "error": e })),
                }
            }
            let n = parsed.len();
            lock(&shared.faults).extend(parsed);
            Reply::json(201, &json!({ "queued": n }))
        }
        ("DELETE", "/_emulator/faults") => {
            lock(&shared.faults).clear();
            Reply::empty(204)
        }
        ("POST", "/_emulator/droplets") => {
            let b = body.unwrap_or(Value::Null);
            let name = b.get("name").and_then(Value::as_str).unwrap_or("droplet");
            let ipv4 = b
                .get("ipv4")
                .and_then(Value::as_str)
                .unwrap_or("203.0.113.10");
            let tags: Vec<&str> = b
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let id = shared.lock_state().add_droplet(name, ipv4, &tags);
            Reply::json(201, &json!({ "id": id }))
        }
        ("POST", "/_emulator/metadata") => {
            match body
                .as_ref()
                .and_then(|b| b.get("droplet_id"))
                .and_then(Value::as_u64)
            {
                Some(id) => {
                    shared.lock_state().metadata_droplet = Some(id);
                    Reply::empty(204)
                }
                None => Reply::json(400, &json!({"error": "expected {\"droplet_id\": N}"})),
            }
        }
        _ => Reply::json(404, &json!({"error": "unknown control endpoint"})),
    }
}

/// The served address, from the base URL.
fn shared_addr(base_url: &str) -> Option<std::net::SocketAddr> {
    base_url.strip_prefix("http://")?.parse().ok()
}
