//! End-to-end tests of the emulator through a real HTTP client (ureq), as the product's code
//! talks to it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use codext_do_emulator::{Emulator, EmulatorConfig, Fault};
use serde_json::{json, Value};

const SERVER: &str = "server-token";
const AGENT: &str = "agent-token";

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

fn call(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> Resp {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .build();
    let mut req = agent.request(method, url);
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let result = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: transport error {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| {
            resp.header(&n)
                .map(|v| (n.to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    let body = resp.into_string().expect("body");
    Resp {
        status,
        headers,
        body,
    }
}

fn start() -> Emulator {
    let mut cfg = EmulatorConfig::with_tokens(&[SERVER, AGENT]);
    cfg.rename_delay = Duration::from_millis(150);
    Emulator::start(cfg).expect("emulator starts")
}

fn start_with(f: impl FnOnce(&mut EmulatorConfig)) -> Emulator {
    let mut cfg = EmulatorConfig::with_tokens(&[SERVER, AGENT]);
    cfg.rename_delay = Duration::from_millis(150);
    f(&mut cfg);
    Emulator::start(cfg).expect("emulator starts")
}

fn get(emu: &Emulator, path: &str) -> Resp {
    call(
        "GET",
        &format!("{}{path}", emu.base_url()),
        Some(SERVER),
        None,
    )
}

fn post(emu: &Emulator, path: &str, body: &Value) -> Resp {
    call(
        "POST",
        &format!("{}{path}", emu.base_url()),
        Some(AGENT),
        Some(&body.to_string()),
    )
}

fn assert_error(r: &Resp, status: u16, id: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/json"),
        "{r:?}"
    );
    let v = r.json();
    assert_eq!(v["id"], id, "{r:?}");
    assert!(v["message"].is_string(), "{r:?}");
    assert!(v["request_id"].is_string(), "{r:?}");
}

/// An ed25519 public key line whose 32 key bytes are derived from `n`.
fn ssh_key(n: u32) -> String {
    let mut blob = Vec::new();
    blob.extend_from_slice(&11u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&32u32.to_be_bytes());
    let mut key = [0u8; 32];
    key[..4].copy_from_slice(&n.to_be_bytes());
    key[31] = 0x5a;
    blob.extend_from_slice(&key);
    format!("ssh-ed25519 {} key{n}", data_encoding::BASE64.encode(&blob))
}

fn wait_action_completed(emu: &Emulator, action_id: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = get(emu, &format!("/v2/actions/{action_id}"));
        assert_eq!(a.status, 200, "{a:?}");
        let action = a.json()["action"].clone();
        if action["status"] == "completed" {
            return action;
        }
        assert!(
            Instant::now() < deadline,
            "action never completed: {action}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn given_droplet_when_get_then_200_with_required_fields_and_no_violations() {
    let emu = start();
    let id = emu.add_droplet("box-1", "203.0.113.7", &["codext", "env:test"]);
    let r = get(&emu, &format!("/v2/droplets/{id}"));
    assert_eq!(r.status, 200, "{r:?}");
    let d = &r.json()["droplet"];
    assert_eq!(d["id"], id);
    assert_eq!(d["name"], "box-1");
    assert_eq!(d["status"], "active");
    let v4 = d["networks"]["v4"].as_array().expect("v4");
    assert!(v4
        .iter()
        .any(|n| n["type"] == "public" && n["ip_address"] == "203.0.113.7"));
    let mut tags: Vec<&str> = d["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t.as_str().expect("str"))
        .collect();
    tags.sort();
    assert_eq!(tags, ["codext", "env:test"]);
    let spec_required = [
        "id",
        "name",
        "memory",
        "vcpus",
        "disk",
        "locked",
        "status",
        "created_at",
        "features",
        "backup_ids",
        "next_backup_window",
        "snapshot_ids",
        "image",
        "volume_ids",
        "size",
        "size_slug",
        "networks",
        "region",
        "tags",
    ];
    for f in spec_required {
        assert!(d.get(f).is_some(), "missing {f}");
    }
    assert_eq!(emu.droplet(id).expect("droplet")["name"], "box-1");
    emu.assert_no_violations();
}

#[test]
fn given_unknown_droplet_when_get_then_404_not_found_body() {
    let emu = start();
    let r = get(&emu, "/v2/droplets/999");
    assert_error(&r, 404, "not_found");
    assert_eq!(
        r.json()["message"],
        "The resource you were accessing could not be found."
    );
    emu.assert_no_violations();
}

#[test]
fn given_missing_or_unknown_token_then_401_unauthorized() {
    let emu = start();
    let id = emu.add_droplet("box", "203.0.113.7", &[]);
    let url = format!("{}/v2/droplets/{id}", emu.base_url());
    for token in [None, Some("wrong")] {
        let r = call("GET", &url, token, None);
        assert_error(&r, 401, "unauthorized");
        assert_eq!(r.json()["message"], "Unable to authenticate you");
    }
    emu.assert_no_violations();
}

#[test]
fn given_metadata_service_when_get_id_then_droplet_id_as_text_without_token() {
    let emu = start();
    let first = emu.add_droplet("first", "203.0.113.7", &[]);
    let second = emu.add_droplet("second", "203.0.113.8", &[]);
    let r = call("GET", &format!("{}/id", emu.metadata_url()), None, None);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, first.to_string());
    emu.set_metadata_droplet(second);
    let r = call("GET", &format!("{}/id", emu.metadata_url()), None, None);
    assert_eq!(r.body, second.to_string());
    emu.assert_no_violations();
}

#[test]
fn given_rename_when_posted_then_name_changes_only_after_action_completes() {
    let emu = start_with(|c| c.rename_delay = Duration::from_millis(400));
    let id = emu.add_droplet("old-name", "203.0.113.7", &[]);
    let r = post(
        &emu,
        &format!("/v2/droplets/{id}/actions"),
        &json!({"type": "rename", "name": "new-name.example"}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let action = r.json()["action"].clone();
    assert_eq!(action["status"], "in-progress");
    assert_eq!(action["type"], "rename");
    assert_eq!(action["resource_id"], id);
    assert!(action["completed_at"].is_null());
    let d = get(&emu, &format!("/v2/droplets/{id}")).json();
    assert_eq!(d["droplet"]["name"], "old-name");

    let action_id = action["id"].as_u64().expect("id");
    let done = wait_action_completed(&emu, action_id);
    assert!(done["completed_at"].is_string());
    let d = get(&emu, &format!("/v2/droplets/{id}")).json();
    assert_eq!(d["droplet"]["name"], "new-name.example");

    let via_droplet = get(&emu, &format!("/v2/droplets/{id}/actions/{action_id}"));
    assert_eq!(via_droplet.status, 200);
    assert_eq!(via_droplet.json()["action"], done);
    let list = get(&emu, &format!("/v2/droplets/{id}/actions"));
    assert_eq!(list.json()["meta"]["total"], 1);
    assert_error(&get(&emu, "/v2/actions/12345"), 404, "not_found");
    emu.assert_no_violations();
}

#[test]
fn given_pending_rename_when_second_action_then_422_pending_event() {
    let emu = start_with(|c| c.rename_delay = Duration::from_secs(30));
    let id = emu.add_droplet("box", "203.0.113.7", &[]);
    let path = format!("/v2/droplets/{id}/actions");
    let first = post(&emu, &path, &json!({"type": "rename", "name": "one"}));
    assert_eq!(first.status, 201);
    let second = post(&emu, &path, &json!({"type": "rename", "name": "two"}));
    assert_error(&second, 422, "unprocessable_entity");
    assert_eq!(
        second.json()["message"],
        "Droplet already has a pending event."
    );
    assert_eq!(emu.droplet(id).expect("droplet")["name"], "box");
    emu.assert_no_violations();
}

#[test]
fn given_invalid_rename_name_then_422() {
    let emu = start();
    let id = emu.add_droplet("box", "203.0.113.7", &[]);
    let path = format!("/v2/droplets/{id}/actions");
    for bad in ["under_score", "space name", "", &"a".repeat(256)] {
        let r = post(&emu, &path, &json!({"type": "rename", "name": bad}));
        assert_error(&r, 422, "unprocessable_entity");
    }
    let r = post(
        &emu,
        "/v2/droplets/77/actions",
        &json!({"type": "rename", "name": "x"}),
    );
    assert_error(&r, 404, "not_found");
    emu.assert_no_violations();
}

#[test]
fn given_tag_created_twice_with_other_case_then_first_capitalization_kept() {
    let emu = start();
    let r = post(&emu, "/v2/tags", &json!({"name": "Codext-Puzzle"}));
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json()["tag"]["name"], "Codext-Puzzle");
    assert_eq!(r.json()["tag"]["resources"]["count"], 0);
    let again = post(&emu, "/v2/tags", &json!({"name": "codext-puzzle"}));
    assert_eq!(again.status, 201, "{again:?}");
    assert_eq!(again.json()["tag"]["name"], "Codext-Puzzle");
    assert_eq!(emu.tags(), ["Codext-Puzzle"]);
    let by_other_case = get(&emu, "/v2/tags/CODEXT-PUZZLE");
    assert_eq!(by_other_case.status, 200);
    assert_eq!(by_other_case.json()["tag"]["name"], "Codext-Puzzle");
    emu.assert_no_violations();
}

#[test]
fn given_strict_tag_case_when_other_capitalization_in_path_then_violation() {
    let emu = start_with(|c| c.strict_tag_case = true);
    post(&emu, "/v2/tags", &json!({"name": "Prod"}));
    assert_eq!(get(&emu, "/v2/tags/Prod").status, 200);
    emu.assert_no_violations();
    assert_eq!(get(&emu, "/v2/tags/prod").status, 200);
    assert!(
        emu.violations()[0].contains("canonical"),
        "{:?}",
        emu.violations()
    );
}

#[test]
fn given_tag_not_created_when_attached_then_404() {
    let emu = start();
    let id = emu.add_droplet("box", "203.0.113.7", &[]);
    let r = post(
        &emu,
        "/v2/tags/never-created/resources",
        &json!({"resources": [{"resource_id": id.to_string(), "resource_type": "droplet"}]}),
    );
    assert_error(&r, 404, "not_found");
    assert_eq!(emu.droplet(id).expect("droplet")["tags"], json!([]));
    emu.assert_no_violations();
}

#[test]
fn given_bad_tag_name_then_422_and_request_violation() {
    let emu = start();
    for bad in ["has space", "slash/no", &"t".repeat(256)] {
        let r = post(&emu, "/v2/tags", &json!({ "name": bad }));
        assert_error(&r, 422, "unprocessable_entity");
    }
    // The request body breaks the `tags` schema (pattern, maxLength): recorded.
    let v = emu.violations();
    assert_eq!(v.len(), 3, "{v:?}");
    assert!(
        v.iter()
            .all(|m| m.starts_with("POST /v2/tags: request: body")),
        "{v:?}"
    );
    assert!(emu.tags().is_empty());
}

#[test]
fn given_tag_attached_then_droplet_and_tag_show_it_and_detach_removes_it() {
    let emu = start();
    let id = emu.add_droplet("box", "203.0.113.7", &[]);
    post(&emu, "/v2/tags", &json!({"name": "answer:abc"}));
    let body = json!({"resources": [{"resource_id": id.to_string(), "resource_type": "droplet"}]});
    let r = post(&emu, "/v2/tags/answer:abc/resources", &body);
    assert_eq!(r.status, 204, "{r:?}");
    assert!(r.body.is_empty());
    let d = get(&emu, &format!("/v2/droplets/{id}")).json();
    assert_eq!(d["droplet"]["tags"], json!(["answer:abc"]));
    let t = get(&emu, "/v2/tags/answer%3Aabc").json();
    assert_eq!(t["tag"]["resources"]["count"], 1);
    assert_eq!(t["tag"]["resources"]["droplets"]["count"], 1);
    let r = call(
        "DELETE",
        &format!("{}/v2/tags/answer:abc/resources", emu.base_url()),
        Some(SERVER),
        Some(&body.to_string()),
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(emu.droplet(id).expect("droplet")["tags"], json!([]));
    emu.assert_no_violations();
}

#[test]
fn given_tag_deleted_then_detached_everywhere_and_gone() {
    let emu = start();
    let a = emu.add_droplet("a", "203.0.113.7", &["shared", "keep"]);
    let b = emu.add_droplet("b", "203.0.113.8", &["SHARED"]);
    let r = call(
        "DELETE",
        &format!("{}/v2/tags/Shared", emu.base_url()),
        Some(SERVER),
        None,
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(emu.droplet(a).expect("a")["tags"], json!(["keep"]));
    assert_eq!(emu.droplet(b).expect("b")["tags"], json!([]));
    assert_error(&get(&emu, "/v2/tags/shared"), 404, "not_found");
    let r = call(
        "DELETE",
        &format!("{}/v2/tags/shared", emu.base_url()),
        Some(SERVER),
        None,
    );
    assert_error(&r, 404, "not_found");
    emu.assert_no_violations();
}

#[test]
fn given_droplet_with_many_tags_then_order_varies_between_reads() {
    let emu = start();
    let tags = ["p0", "p1", "p2", "p3", "p4", "p5"];
    let id = emu.add_droplet("box", "203.0.113.7", &tags);
    let mut orders = std::collections::HashSet::new();
    for _ in 0..12 {
        let d = get(&emu, &format!("/v2/droplets/{id}")).json();
        orders.insert(d["droplet"]["tags"].to_string());
    }
    assert!(orders.len() > 1, "tags always came in the same order");
    emu.assert_no_violations();
}

#[test]
fn given_many_tags_when_listing_then_paginated() {
    let emu = start();
    for i in 0..25 {
        let r = post(&emu, "/v2/tags", &json!({ "name": format!("t{i}") }));
        assert_eq!(r.status, 201);
    }
    let first = get(&emu, "/v2/tags").json();
    assert_eq!(first["tags"].as_array().expect("tags").len(), 20);
    assert_eq!(first["meta"]["total"], 25);
    let next = first["links"]["pages"]["next"].as_str().expect("next");
    let second = call("GET", next, Some(SERVER), None).json();
    assert_eq!(second["tags"].as_array().expect("tags").len(), 5);
    assert!(second["links"]["pages"]["next"].is_null());
    emu.assert_no_violations();
}

#[test]
fn given_45_keys_when_listing_20_per_page_then_next_links_cover_all() {
    let emu = start();
    let mut fingerprints = Vec::new();
    for i in 0..45 {
        let r = post(
            &emu,
            "/v2/account/keys",
            &json!({"name": format!("k{i}"), "public_key": ssh_key(i)}),
        );
        assert_eq!(r.status, 201, "{r:?}");
        fingerprints.push(
            r.json()["ssh_key"]["fingerprint"]
                .as_str()
                .expect("fp")
                .to_string(),
        );
    }
    let mut url = format!("{}/v2/account/keys?per_page=20", emu.base_url());
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = call("GET", &url, Some(SERVER), None);
        assert_eq!(r.status, 200, "{r:?}");
        let v = r.json();
        assert_eq!(v["meta"]["total"], 45);
        pages += 1;
        for k in v["ssh_keys"].as_array().expect("keys") {
            seen.push(k["fingerprint"].as_str().expect("fp").to_string());
        }
        if pages > 1 {
            assert!(v["links"]["pages"]["prev"].is_string());
            assert!(v["links"]["pages"]["first"].is_string());
        }
        match v["links"]["pages"]["next"].as_str() {
            Some(next) => {
                assert!(next.starts_with("http://127.0.0.1:"), "{next}");
                assert!(v["links"]["pages"]["last"]
                    .as_str()
                    .expect("last")
                    .contains("page=3"));
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, fingerprints);
    assert_eq!(emu.keys().len(), 45);
    emu.assert_no_violations();
}

#[test]
fn given_key_when_posted_then_md5_fingerprint_and_duplicate_rejected() {
    let emu = start();
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlp/71cd1AH2BQ7xZqaxlPCKYIP719oeFO4zLn5OMmd test";
    let r = post(
        &emu,
        "/v2/account/keys",
        &json!({"name": "agent", "public_key": key}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let k = r.json()["ssh_key"].clone();
    // As `ssh-keygen -l -E md5` prints it.
    assert_eq!(
        k["fingerprint"],
        "80:6c:0a:86:e2:84:77:f7:ff:fb:5a:1e:4c:d4:0a:12"
    );
    assert_eq!(k["public_key"], key);
    assert_eq!(k["name"], "agent");
    let dup = post(
        &emu,
        "/v2/account/keys",
        &json!({"name": "again", "public_key": key}),
    );
    assert_error(&dup, 422, "unprocessable_entity");
    assert_eq!(
        dup.json()["message"],
        "SSH Key is already in use on your account"
    );

    let id = k["id"].as_u64().expect("id");
    let by_id = get(&emu, &format!("/v2/account/keys/{id}"));
    assert_eq!(by_id.json()["ssh_key"], k);
    let by_fp = get(
        &emu,
        "/v2/account/keys/80:6c:0a:86:e2:84:77:f7:ff:fb:5a:1e:4c:d4:0a:12",
    );
    assert_eq!(by_fp.json()["ssh_key"], k);
    let del = call(
        "DELETE",
        &format!("{}/v2/account/keys/{id}", emu.base_url()),
        Some(SERVER),
        None,
    );
    assert_eq!(del.status, 204);
    assert_error(
        &get(&emu, &format!("/v2/account/keys/{id}")),
        404,
        "not_found",
    );
    assert!(emu.keys().is_empty());
    emu.assert_no_violations();
}

#[test]
fn given_any_api_answer_then_rate_limit_headers_present() {
    let emu = start();
    let id = emu.add_droplet("box", "203.0.113.7", &[]);
    let first = get(&emu, &format!("/v2/droplets/{id}"));
    let second = get(&emu, "/v2/droplets/1");
    for r in [&first, &second] {
        assert_eq!(r.header("ratelimit-limit"), Some("5000"));
        let reset: u64 = r
            .header("ratelimit-reset")
            .expect("reset")
            .parse()
            .expect("n");
        assert!(reset > 1_700_000_000);
    }
    assert_eq!(first.header("ratelimit-remaining"), Some("4999"));
    assert_eq!(second.header("ratelimit-remaining"), Some("4998"));
    // Another token has its own budget.
    let other = call(
        "GET",
        &format!("{}/v2/droplets/{id}", emu.base_url()),
        Some(AGENT),
        None,
    );
    assert_eq!(other.header("ratelimit-remaining"), Some("4999"));
    emu.assert_no_violations();
}

#[test]
fn given_small_minute_limit_when_burst_then_429_with_retry_after() {
    let emu = start_with(|c| c.rate_limit_per_minute = 5);
    let id = emu.add_droplet("box", "203.0.113.7", &[]);
    let statuses: Vec<u16> = (0..7)
        .map(|_| get(&emu, &format!("/v2/droplets/{id}")).status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    let r = get(&emu, &format!("/v2/droplets/{id}"));
    assert_error(&r, 429, "too_many_requests");
    let retry: u64 = r
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("n");
    assert!((1..=60).contains(&retry), "{retry}");
    // The agent's token is not affected.
    let other = call(
        "GET",
        &format!("{}/v2/droplets/{id}", emu.base_url()),
        Some(AGENT),
        None,
    );
    assert_eq!(other.status, 200);
    emu.assert_no_violations();
}

#[test]
fn given_small_hourly_limit_when_exceeded_then_429() {
    let emu = start_with(|c| c.rate_limit_per_hour = 3);
    let statuses: Vec<u16> = (0..4).map(|_| get(&emu, "/v2/tags").status).collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    emu.assert_no_violations();
}

#[test]
fn given_keys_list_when_over_10_per_minute_then_429_while_other_endpoints_work() {
    let emu = start();
    let statuses: Vec<u16> = (0..11)
        .map(|_| get(&emu, "/v2/account/keys").status)
        .collect();
    assert_eq!(&statuses[..10], &[200; 10]);
    assert_eq!(statuses[10], 429);
    assert!(get(&emu, "/v2/account/keys")
        .header("retry-after")
        .is_some());
    assert_eq!(get(&emu, "/v2/tags").status, 200);
    emu.assert_no_violations();
}

#[test]
fn given_injected_faults_then_client_observes_each_kind() {
    let emu = start();
    let id = emu.add_droplet("box", "203.0.113.7", &[]);
    let path = format!("/v2/droplets/{id}");

    emu.inject(Fault::too_many_requests(2, 7));
    for _ in 0..2 {
        let r = get(&emu, &path);
        assert_error(&r, 429, "too_many_requests");
        assert_eq!(r.header("retry-after"), Some("7"));
    }
    assert_eq!(get(&emu, &path).status, 200);

    emu.inject(Fault::server_error(1, 503));
    assert_error(&get(&emu, &path), 503, "service_unavailable");
    assert_eq!(get(&emu, &path).status, 200);

    emu.inject(Fault::pending_event(1));
    // Not consumed by reads.
    assert_eq!(get(&emu, &path).status, 200);
    let r = post(
        &emu,
        &format!("{path}/actions"),
        &json!({"type": "rename", "name": "x"}),
    );
    assert_error(&r, 422, "unprocessable_entity");
    assert_eq!(r.json()["message"], "Droplet already has a pending event.");

    emu.inject(Fault::slow(1, Duration::from_millis(300)));
    let t = Instant::now();
    assert_eq!(get(&emu, &path).status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    emu.inject(Fault::malformed_json(1));
    let r = get(&emu, &path);
    assert_eq!(r.status, 200);
    assert!(
        serde_json::from_str::<Value>(&r.body).is_err(),
        "{}",
        r.body
    );
    assert_eq!(get(&emu, &path).json()["droplet"]["id"], id);

    let faults: Vec<Option<String>> = emu.calls().into_iter().map(|c| c.fault).collect();
    let kinds: Vec<&str> = faults.iter().flatten().map(String::as_str).collect();
    assert_eq!(
        kinds,
        [
            "too_many_requests",
            "too_many_requests",
            "server_error",
            "pending_event",
            "slow",
            "malformed_json"
        ]
    );
    emu.assert_no_violations();
}

#[test]
fn given_fault_filtered_by_method_and_path_then_only_matching_requests_hit() {
    let emu = start();
    let id = emu.add_droplet("box", "203.0.113.7", &[]);
    emu.inject(Fault::server_error(1, 500).only("POST", "/v2/tags"));
    assert_eq!(get(&emu, &format!("/v2/droplets/{id}")).status, 200);
    assert_eq!(get(&emu, "/v2/tags").status, 200);
    assert_error(
        &post(&emu, "/v2/tags", &json!({"name": "x"})),
        500,
        "server_error",
    );
    assert_eq!(post(&emu, "/v2/tags", &json!({"name": "x"})).status, 201);
    emu.assert_no_violations();
}

#[test]
fn given_put_droplet_then_answered_405_and_recorded_as_violation() {
    let emu = start();
    let id = emu.add_droplet("box", "203.0.113.7", &[]);
    let r = call(
        "PUT",
        &format!("{}/v2/droplets/{id}", emu.base_url()),
        Some(SERVER),
        Some(r#"{"name":"renamed"}"#),
    );
    assert_error(&r, 405, "method_not_allowed");
    let v = emu.violations();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].starts_with(&format!("PUT /v2/droplets/{id}: request:")),
        "{v:?}"
    );
    let r = call(
        "PATCH",
        &format!("{}/v2/droplets/{id}", emu.base_url()),
        Some(SERVER),
        Some(r#"{"name":"renamed"}"#),
    );
    assert_eq!(r.status, 405);
    let r = get(&emu, "/v2/nothing/here");
    assert_error(&r, 404, "not_found");
    assert_eq!(emu.violations().len(), 3);
    assert_eq!(emu.droplet(id).expect("droplet")["name"], "box");
}

#[test]
#[should_panic(expected = "violation")]
fn given_violation_then_assert_no_violations_panics() {
    let emu = start();
    let _ = call(
        "PUT",
        &format!("{}/v2/droplets/1", emu.base_url()),
        Some(SERVER),
        None,
    );
    emu.assert_no_violations();
}

#[test]
fn given_malformed_request_bodies_then_violations_recorded() {
    let emu = start();
    let url = format!("{}/v2/tags", emu.base_url());
    let r = call("POST", &url, Some(SERVER), Some(r#"{"name": 5}"#));
    assert_eq!(r.status, 422);
    let r = call("POST", &url, Some(SERVER), Some("name=x"));
    assert_eq!(r.status, 422);
    let id = emu.add_droplet("box", "203.0.113.7", &[]);
    let r = post(
        &emu,
        &format!("/v2/droplets/{id}/actions"),
        &json!({"type": "teleport"}),
    );
    assert_eq!(r.status, 422);
    let r = get(&emu, "/v2/droplets/not-a-number");
    assert_eq!(r.status, 404);
    let r = get(&emu, "/v2/account/keys?per_page=500&colour=blue");
    assert_eq!(r.status, 200);
    let v = emu.violations();
    let expect = [
        "POST /v2/tags: request: body at /name",
        "POST /v2/tags: request: body is not JSON",
        &format!("POST /v2/droplets/{id}/actions: request: body"),
        "GET /v2/droplets/not-a-number: request: path parameter droplet_id",
        "GET /v2/account/keys: request: query parameter per_page=\"500\"",
        "GET /v2/account/keys: request: query parameter \"colour\" is not declared",
    ];
    for e in expect {
        assert!(
            v.iter().any(|m| m.starts_with(e)),
            "no violation {e:?} in {v:#?}"
        );
    }
}

#[test]
fn given_response_not_matching_schema_then_validator_reports_it() {
    let emu = start();
    let json_ct = [("content-type", "application/json")];
    // A droplet without most required fields and with a wrong type.
    let bad = br#"{"droplet":{"id":"seven","name":"x"}}"#;
    let v = emu.check_response("GET", "/v2/droplets/7", 200, &json_ct, bad);
    assert!(v.iter().any(|m| m.contains("/droplet/id")), "{v:#?}");
    assert!(v.iter().any(|m| m.contains("\"networks\"")), "{v:#?}");
    // An error body without the required `message`.
    let v = emu.check_response(
        "GET",
        "/v2/droplets/7",
        404,
        &json_ct,
        br#"{"id":"not_found"}"#,
    );
    assert_eq!(v.len(), 1, "{v:#?}");
    // An undeclared status with no `default`? Every operation here has one, so check a
    // body on a no-content response instead, and a non-integer rate-limit header.
    let v = emu.check_response(
        "DELETE",
        "/v2/tags/x",
        204,
        &[("ratelimit-remaining", "lots")],
        b"{}",
    );
    assert_eq!(v.len(), 2, "{v:#?}");
    // And a conforming one passes.
    let id = emu.add_droplet("box", "203.0.113.7", &[]);
    let good = json!({ "droplet": emu.droplet(id).expect("droplet") }).to_string();
    let v = emu.check_response(
        "GET",
        &format!("/v2/droplets/{id}"),
        200,
        &json_ct,
        good.as_bytes(),
    );
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn given_calls_then_recorded_with_token_per_request() {
    let emu = start();
    let id = emu.add_droplet("box", "203.0.113.7", &[]);
    get(&emu, &format!("/v2/droplets/{id}"));
    get(&emu, &format!("/v2/droplets/{id}"));
    post(&emu, "/v2/tags", &json!({"name": "answer"}));
    call("GET", &format!("{}/id", emu.metadata_url()), None, None);
    let calls = emu.calls();
    let count = |t: &str| {
        calls
            .iter()
            .filter(|c| c.token.as_deref() == Some(t))
            .count()
    };
    assert_eq!(count(SERVER), 2);
    assert_eq!(count(AGENT), 1);
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[2].method, "POST");
    assert_eq!(calls[2].path, "/v2/tags");
    assert_eq!(calls[2].status, 201);
    assert_eq!(calls[3].token, None);
    emu.assert_no_violations();
}

#[test]
fn given_control_api_then_faults_state_calls_and_violations_reachable() {
    let emu = start();
    let base = emu.base_url();
    let r = call(
        "POST",
        &format!("{base}/_emulator/droplets"),
        None,
        Some(r#"{"name":"ctl","ipv4":"203.0.113.9","tags":["a"]}"#),
    );
    assert_eq!(r.status, 201);
    let id = r.json()["id"].as_u64().expect("id");
    let r = call(
        "POST",
        &format!("{base}/_emulator/faults"),
        None,
        Some(
            r#"[{"kind":"server_error","status":502,"count":1,"method":"GET","path_prefix":"/v2/droplets"}]"#,
        ),
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_error(
        &get(&emu, &format!("/v2/droplets/{id}")),
        502,
        "bad_gateway",
    );
    let state = call("GET", &format!("{base}/_emulator/state"), None, None).json();
    assert_eq!(state["droplets"][0]["name"], "ctl");
    assert_eq!(state["metadata_droplet"], id);
    let calls = call("GET", &format!("{base}/_emulator/calls"), None, None).json();
    assert_eq!(calls.as_array().expect("calls").len(), 1);
    assert_eq!(calls[0]["fault"], "server_error");
    call(
        "PUT",
        &format!("{base}/v2/droplets/{id}"),
        Some(SERVER),
        None,
    );
    let v = call("GET", &format!("{base}/_emulator/violations"), None, None).json();
    assert_eq!(v.as_array().expect("violations").len(), 1);
    call(
        "DELETE",
        &format!("{base}/_emulator/violations"),
        None,
        None,
    );
    emu.assert_no_violations();
}

#[test]
fn given_emulator_dropped_then_port_is_closed() {
    let emu = start();
    let addr = emu.addr();
    drop(emu);
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err());
}

#[test]
fn given_time_scale_then_the_windows_and_the_headers_follow_the_scaled_clock() {
    // Time 20 times faster: the minute is 3 real seconds.
    let emu = start_with(|c| {
        c.rate_limit_per_minute = 3;
        c.time_scale = 20.0;
    });
    let (_, unix0, scale) = emu.clock_origin();
    assert_eq!(scale, 20.0);
    let id = emu.add_droplet("box", "203.0.113.7", &[]);
    let path = format!("/v2/droplets/{id}");
    let first = get(&emu, &path);
    let reset: u64 = first
        .header("ratelimit-reset")
        .expect("reset")
        .parse()
        .expect("n");
    // The oldest request expires an hour of scaled time after it was made.
    assert!(reset >= unix0.as_secs() + 3600, "{reset} vs {unix0:?}");
    let statuses: Vec<u16> = (0..3).map(|_| get(&emu, &path).status).collect();
    assert_eq!(statuses, [200, 200, 429]);
    let refused = get(&emu, &path);
    let retry: u64 = refused
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("n");
    // In scaled seconds: most of the minute is still to run.
    assert!((30..=60).contains(&retry), "{retry}");
    // retry-after scaled seconds later (in real time: divided by 20) the
    // minute has passed.
    std::thread::sleep(Duration::from_secs_f64(retry as f64 / 20.0 + 0.2));
    assert_eq!(get(&emu, &path).status, 200);
    emu.assert_no_violations();
}
