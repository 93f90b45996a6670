//! The DigitalOcean client and the tag formats against the DigitalOcean API
//! emulator (`tests/do-emulator`), through the real ureq path (tags in
//! channel format v2, see `codext_do::tags::v2`). The emulator
//! checks every request and answer against DigitalOcean's OpenAPI
//! description, so each test ends with `assert_no_violations`.

use codext_core::{Answer, Puzzle};
use codext_do::tags::Space;
use codext_do::Error;
use codext_do::{metadata_droplet_id, ApiConfig, Client, ScaledClock};
use codext_do_emulator::{Emulator, EmulatorConfig, Fault};
use codext_wire::UserName;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "dop_v1_test_token_0123456789";

fn emulator(adjust: impl FnOnce(&mut EmulatorConfig)) -> Emulator {
    let mut cfg = EmulatorConfig::with_tokens(&[TOKEN]);
    cfg.strict_tag_case = true;
    adjust(&mut cfg);
    Emulator::start(cfg).unwrap()
}

/// Production rules with test-sized waits.
fn config(emu: &Emulator) -> ApiConfig {
    let mut cfg = ApiConfig::new(emu.base_url(), TOKEN);
    cfg.timeout = Duration::from_secs(5);
    cfg.max_wait = Duration::from_secs(10);
    cfg.keys_spacing = Duration::from_millis(100);
    cfg.backoff = Duration::from_millis(50);
    cfg
}

fn client(emu: &Emulator) -> Client {
    Client::new(config(emu))
}

fn statuses(emu: &Emulator) -> Vec<u16> {
    emu.calls().iter().map(|c| c.status).collect()
}

/// A syntactically valid, distinct `ssh-ed25519` key line per `n`.
fn test_key(n: u32) -> String {
    fn put(blob: &mut Vec<u8>, s: &[u8]) {
        blob.extend((s.len() as u32).to_be_bytes());
        blob.extend(s);
    }
    let mut blob = Vec::new();
    put(&mut blob, b"ssh-ed25519");
    let mut k = [0x5au8; 32];
    k[..4].copy_from_slice(&n.to_be_bytes());
    put(&mut blob, &k);
    format!(
        "ssh-ed25519 {} test-{n}",
        data_encoding::BASE64.encode(&blob)
    )
}

fn answer(n: u8) -> Answer {
    Answer {
        user: UserName::from_random([n, 0xa0, 1, 2, 3, n]),
        proof: [n.wrapping_mul(17); 16],
    }
}

#[test]
fn given_droplet_then_name_tags_and_public_ipv4_read() {
    let emu = emulator(|_| {});
    let id = emu.add_droplet("box-1", "203.0.113.7", &["web", "Codext"]);
    let c = client(&emu);
    let d = c.droplet(id).unwrap();
    assert_eq!(d.id, id);
    assert_eq!(d.name, "box-1");
    let mut tags = d.tags.clone();
    tags.sort();
    assert_eq!(tags, vec!["Codext".to_string(), "web".to_string()]);
    assert_eq!(d.public_ipv4.as_deref(), Some("203.0.113.7"));
    assert_eq!(c.calls(), 1);
    emu.assert_no_violations();
}

#[test]
fn given_unknown_droplet_then_api_404_without_retry() {
    let emu = emulator(|_| {});
    let c = client(&emu);
    match c.droplet(999) {
        Err(Error::Api { status, id, .. }) => {
            assert_eq!(status, 404);
            assert_eq!(id, "not_found");
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    assert_eq!(c.calls(), 1);
    emu.assert_no_violations();
}

#[test]
fn given_real_puzzle_published_as_tags_then_read_back_equal() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/test-vectors/v1/puzzle-1.txt"),
    )
    .unwrap();
    let puzzle = Puzzle::from_text(&text).unwrap();
    let emu = emulator(|_| {});
    let id = emu.add_droplet("box", "203.0.113.8", &["web"]);
    let c = client(&emu);
    let tags = Space::new(id).puzzle_tags(&puzzle.to_text(), &puzzle.puzzle_id);
    assert!(tags.len() > 1, "a real puzzle needs several tags");
    for t in &tags {
        c.attach_new_tag(t, id).unwrap();
    }
    let seen = c.droplet(id).unwrap().tags;
    assert_eq!(seen.len(), tags.len() + 1);
    let found = Space::new(id).collect_puzzles(&seen);
    assert_eq!(found, vec![puzzle.to_text()]);
    assert_eq!(Puzzle::from_text(&found[0]).unwrap(), puzzle);
    emu.assert_no_violations();
}

#[test]
fn given_many_agents_answering_concurrently_then_no_answer_lost() {
    let emu = emulator(|_| {});
    let id = emu.add_droplet("box", "203.0.113.9", &[]);
    let shared = Arc::new(client(&emu));
    let threads: Vec<_> = (0..12u8)
        .map(|n| {
            // Half the agents have their own client, half share one.
            let c = if n % 2 == 0 {
                Arc::new(client(&emu))
            } else {
                shared.clone()
            };
            std::thread::spawn(move || c.attach_new_tag(&Space::new(id).answer_tag(&answer(n)), id))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let mut got = Space::new(id).answers(&client(&emu).droplet(id).unwrap().tags);
    got.sort_by_key(|a| a.to_string());
    let mut want: Vec<Answer> = (0..12).map(answer).collect();
    want.sort_by_key(|a| a.to_string());
    assert_eq!(got, want);
    emu.assert_no_violations();
}

#[test]
fn given_tag_deleted_then_gone_everywhere_and_second_delete_is_fine() {
    let emu = emulator(|_| {});
    let a = emu.add_droplet("a", "203.0.113.10", &[]);
    let b = emu.add_droplet("b", "203.0.113.11", &[]);
    let c = client(&emu);
    let tag = Space::new(a).answer_tag(&answer(1));
    c.attach_new_tag(&tag, a).unwrap();
    c.attach_new_tag(&tag, b).unwrap();
    c.delete_tag(&tag).unwrap();
    assert!(!emu.tags().iter().any(|t| t.eq_ignore_ascii_case(&tag)));
    assert!(c.droplet(a).unwrap().tags.is_empty());
    assert!(c.droplet(b).unwrap().tags.is_empty());
    c.delete_tag(&tag).unwrap();
    assert_eq!(emu.calls().last().map(|c| c.status), Some(404));
    emu.assert_no_violations();
}

#[test]
fn given_tag_detached_then_droplet_no_longer_lists_it_but_tag_remains() {
    let emu = emulator(|_| {});
    let id = emu.add_droplet("a", "203.0.113.12", &[]);
    let c = client(&emu);
    let tag = Space::new(id).answer_tag(&answer(2));
    c.attach_new_tag(&tag, id).unwrap();
    assert_eq!(c.droplet(id).unwrap().tags, vec![tag.clone()]);
    c.untag_droplet(&tag, id).unwrap();
    assert!(c.droplet(id).unwrap().tags.is_empty());
    assert!(emu.tags().contains(&tag));
    emu.assert_no_violations();
}

#[test]
fn given_tag_exists_in_other_capitalization_then_first_capitalization_returned_and_attach_works() {
    let user = UserName::parse("user-0123456789ab").unwrap();
    // The capitalization rule is the API's, whatever droplet a name says.
    let space = Space::new(9999);
    let upper = space.ready_tag(&user).to_ascii_uppercase();
    let emu = emulator(|_| {});
    emu.add_droplet("first", "203.0.113.13", &[&upper]);
    let id = emu.add_droplet("second", "203.0.113.14", &[]);
    let c = client(&emu);
    assert_eq!(c.create_tag(&space.ready_tag(&user)).unwrap(), upper);
    c.attach_new_tag(&space.ready_tag(&user), id).unwrap();
    let tags = c.droplet(id).unwrap().tags;
    assert_eq!(tags, vec![upper]);
    assert!(space.is_ready(&tags, &user));
    // strict_tag_case: addressing the tag in our lowercase would be recorded.
    emu.assert_no_violations();
}

#[test]
fn given_three_pages_of_keys_then_list_follows_next_links() {
    let emu = emulator(|cfg| cfg.rate_limit_per_minute = 10_000);
    // The emulator's minute is raised; so is the client's own cap.
    let c = Client::new(ApiConfig {
        per_minute: 10_000,
        ..config(&emu)
    });
    for n in 0..401 {
        let (k, existed) = c.create_key(&format!("k{n}"), &test_key(n)).unwrap();
        assert!(!existed);
        assert_eq!(k.name, format!("k{n}"));
    }
    let before = emu.calls().len();
    let keys = c.list_keys().unwrap();
    assert_eq!(keys.len(), 401);
    assert_eq!(keys.last().unwrap().public_key, test_key(400));
    let listings: Vec<String> = emu.calls()[before..]
        .iter()
        .map(|c| format!("{} {}?{}", c.method, c.path, c.query))
        .collect();
    assert_eq!(listings.len(), 3, "{listings:?}");
    assert_eq!(listings[0], "GET /v2/account/keys?per_page=200");
    assert!(listings[1].contains("page=2"), "{listings:?}");
    assert!(listings[2].contains("page=3"), "{listings:?}");
    emu.assert_no_violations();
}

#[test]
fn given_next_link_to_another_host_then_refused() {
    let emu = emulator(|_| {});
    // The emulator writes its links with 127.0.0.1; a client configured
    // with `localhost` must see them as another host.
    let mut cfg = config(&emu);
    cfg.api_url = emu.base_url().replace("127.0.0.1", "localhost");
    cfg.keys_per_page = 1;
    let c = Client::new(cfg);
    c.create_key("a", &test_key(1)).unwrap();
    c.create_key("b", &test_key(2)).unwrap();
    match c.list_keys() {
        Err(Error::ApiFormat(m)) => assert!(m.contains("refusing"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(emu.calls().len(), 3, "page 2 must not be asked for");
    emu.assert_no_violations();
}

#[test]
fn given_key_created_twice_then_second_returns_existing() {
    let emu = emulator(|_| {});
    let c = client(&emu);
    let (first, existed) = c.create_key("agent", &test_key(7)).unwrap();
    assert!(!existed);
    // Same key, another name and comment.
    let again = format!("{} other-comment", test_key(7).rsplit_once(' ').unwrap().0);
    let (second, existed) = c.create_key("agent-again", &again).unwrap();
    assert!(existed);
    assert_eq!(second, first);
    assert_eq!(emu.keys().len(), 1);
    emu.assert_no_violations();
}

#[test]
fn given_429_burst_then_client_waits_retry_after_and_succeeds() {
    let emu = emulator(|_| {});
    let id = emu.add_droplet("box", "203.0.113.15", &[]);
    let c = client(&emu);
    emu.inject(Fault::too_many_requests(2, 1));
    let start = Instant::now();
    assert_eq!(c.droplet(id).unwrap().id, id);
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "retry-after not waited"
    );
    assert_eq!(c.calls(), 3);
    assert_eq!(statuses(&emu), vec![429, 429, 200]);
    emu.assert_no_violations();
}

#[test]
fn given_retry_after_beyond_max_wait_then_rate_limited_error_without_retry() {
    let emu = emulator(|_| {});
    let id = emu.add_droplet("box", "203.0.113.16", &[]);
    let c = client(&emu);
    emu.inject(Fault::too_many_requests(1, 120));
    let start = Instant::now();
    match c.droplet(id) {
        Err(e @ Error::RateLimited { wait_secs: 120 }) => {
            assert!(e.to_string().contains("120 s"), "{e}");
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    // Later requests are held back too, without being sent.
    assert!(matches!(c.droplet(id), Err(Error::RateLimited { .. })));
    assert_eq!(c.calls(), 1);
    assert_eq!(statuses(&emu), vec![429]);
    emu.assert_no_violations();
}

#[test]
fn given_hourly_limit_exhausted_then_client_refuses_instead_of_drawing_429() {
    // The emulator's headers report the hourly window; with 5 an hour the
    // 5th answer says remaining 0 and a reset an hour away.
    let emu = emulator(|cfg| cfg.rate_limit_per_hour = 5);
    let id = emu.add_droplet("box", "203.0.113.17", &[]);
    let c = client(&emu);
    for _ in 0..5 {
        c.droplet(id).unwrap();
    }
    match c.droplet(id) {
        Err(Error::RateLimited { wait_secs }) => {
            assert!((3500..=3601).contains(&wait_secs), "{wait_secs}");
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(c.calls(), 5);
    assert_eq!(statuses(&emu), vec![200; 5], "no 429 may be drawn");
    emu.assert_no_violations();
}

#[test]
fn given_server_errors_then_retried_with_backoff() {
    let emu = emulator(|_| {});
    let id = emu.add_droplet("box", "203.0.113.18", &[]);
    let c = client(&emu);
    emu.inject(Fault::server_error(1, 503));
    emu.inject(Fault::server_error(1, 500));
    assert_eq!(c.droplet(id).unwrap().id, id);
    assert_eq!(c.calls(), 3);
    assert_eq!(statuses(&emu), vec![503, 500, 200]);
    emu.assert_no_violations();
}

#[test]
fn given_persistent_server_errors_then_api_error_after_three_retries() {
    let emu = emulator(|_| {});
    let id = emu.add_droplet("box", "203.0.113.19", &[]);
    let c = client(&emu);
    emu.inject(Fault::server_error(10, 502));
    match c.droplet(id) {
        Err(e @ Error::Api { status: 502, .. }) => {
            assert!(e.to_string().contains("after 3 retries"), "{e}");
        }
        other => panic!("expected a 502, got {other:?}"),
    }
    assert_eq!(c.calls(), 4);
    emu.assert_no_violations();
}

#[test]
fn given_answer_slower_than_timeout_then_retried() {
    let emu = emulator(|_| {});
    let id = emu.add_droplet("box", "203.0.113.20", &[]);
    let mut cfg = config(&emu);
    cfg.timeout = Duration::from_millis(300);
    let c = Client::new(cfg);
    emu.inject(Fault::slow(1, Duration::from_millis(1500)));
    assert_eq!(c.droplet(id).unwrap().id, id);
    assert_eq!(c.calls(), 2);
    emu.assert_no_violations();
}

#[test]
fn given_malformed_json_once_then_retried_and_succeeds() {
    let emu = emulator(|_| {});
    let id = emu.add_droplet("box", "203.0.113.21", &[]);
    let c = client(&emu);
    emu.inject(Fault::malformed_json(1));
    assert_eq!(c.droplet(id).unwrap().id, id);
    assert_eq!(c.calls(), 2);
    // A garbled answer to a call whose answer is not read does no harm.
    emu.inject(Fault::malformed_json(1).only("POST", "/v2/tags/"));
    c.attach_new_tag("codext:x", id).unwrap();
    assert_eq!(c.droplet(id).unwrap().tags, vec!["codext:x".to_string()]);
    emu.assert_no_violations();
}

#[test]
fn given_malformed_json_twice_then_clear_format_error() {
    let emu = emulator(|_| {});
    let id = emu.add_droplet("box", "203.0.113.22", &[]);
    let c = client(&emu);
    emu.inject(Fault::malformed_json(2));
    match c.droplet(id) {
        Err(e @ Error::ApiFormat(_)) => {
            let m = e.to_string();
            assert!(m.contains("not JSON") && m.contains("/v2/droplets/"), "{m}");
        }
        other => panic!("expected ApiFormat, got {other:?}"),
    }
    // Keys: the garbled answer to a creation is retried; the retry meets
    // "already in use" and finds the key.
    emu.inject(Fault::malformed_json(1).only("POST", "/v2/account/keys"));
    let (k, _) = c.create_key("k", &test_key(3)).unwrap();
    assert_eq!(k.public_key, test_key(3));
    emu.inject(Fault::malformed_json(1).only("GET", "/v2/account/keys"));
    assert_eq!(c.list_keys().unwrap(), vec![k]);
    emu.assert_no_violations();
}

#[test]
fn given_small_keys_spacing_then_listings_are_spaced() {
    let emu = emulator(|_| {});
    let mut cfg = config(&emu);
    cfg.keys_spacing = Duration::from_millis(700);
    let c = Arc::new(Client::new(cfg));
    let start = Instant::now();
    c.list_keys().unwrap();
    c.list_keys().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(700));
    // Two threads sharing the client queue behind the last listing too.
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || c.list_keys().map(|k| k.len()))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().unwrap(), 0);
    }
    assert!(start.elapsed() >= Duration::from_millis(3 * 700));
    assert_eq!(c.calls(), 4);
    assert_eq!(statuses(&emu), vec![200; 4]);
    emu.assert_no_violations();
}

#[test]
fn given_wrong_token_then_api_401_without_token_in_error() {
    let emu = emulator(|_| {});
    let id = emu.add_droplet("box", "203.0.113.23", &[]);
    let secret = "dop_v1_wrong_secret_value_42";
    let mut cfg = config(&emu);
    cfg.token = secret.to_string().into();
    let c = Client::new(cfg);
    let err = c.droplet(id).unwrap_err();
    match &err {
        Error::Api { status, id, .. } => {
            assert_eq!(*status, 401);
            assert_eq!(id, "unauthorized");
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    for shown in [err.to_string(), format!("{err:?}"), format!("{c:?}")] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(err.to_string().contains("token"), "{err}");
    assert_eq!(c.calls(), 1);
    assert_eq!(emu.calls()[0].token.as_deref(), Some(secret));
    emu.assert_no_violations();
}

#[test]
fn given_metadata_service_then_droplet_id_read() {
    let emu = emulator(|_| {});
    let first = emu.add_droplet("first", "203.0.113.24", &[]);
    let second = emu.add_droplet("second", "203.0.113.25", &[]);
    let t = Duration::from_secs(5);
    assert_eq!(metadata_droplet_id(&emu.metadata_url(), t).unwrap(), first);
    emu.set_metadata_droplet(second);
    let with_slash = format!("{}/", emu.metadata_url());
    assert_eq!(metadata_droplet_id(&with_slash, t).unwrap(), second);
    let wrong = format!("{}/metadata/v9", emu.base_url());
    assert!(matches!(
        metadata_droplet_id(&wrong, t),
        Err(Error::Http(m)) if m.contains("404")
    ));
    emu.assert_no_violations();
}

#[test]
fn given_a_time_scaled_emulator_and_a_client_on_its_clock_then_the_minute_limit_is_waited_out_in_scaled_time(
) {
    // 30 times faster: the minute limit's wait (~60 scaled seconds) takes
    // about two real seconds.
    let emu = emulator(|c| {
        c.rate_limit_per_minute = 2;
        c.time_scale = 30.0;
    });
    let id = emu.add_droplet("box", "203.0.113.7", &[]);
    let (start, unix0, scale) = emu.clock_origin();
    let mut cfg = config(&emu);
    cfg.max_wait = Duration::from_secs(90);
    cfg.clock = Arc::new(ScaledClock::new(start, unix0, scale));
    let c = Client::new(cfg);
    let real = Instant::now();
    let scaled = c.clock().now();
    for _ in 0..3 {
        c.droplet(id).unwrap();
    }
    // One 429, obeyed once: its retry-after (scaled seconds) was slept in
    // scaled time.
    assert_eq!(statuses(&emu), [200, 200, 429, 200]);
    let waited = c.clock().now() - scaled;
    assert!(waited >= Duration::from_secs(50), "{waited:?}");
    assert!(
        real.elapsed() < Duration::from_secs(20),
        "{:?}",
        real.elapsed()
    );
    // The reported budget is in the scaled clock's Unix time.
    let b = c.budget().unwrap();
    assert!(b.reset >= unix0.as_secs() + 3600, "{b:?}");
    emu.assert_no_violations();
}
