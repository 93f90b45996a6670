//! The DigitalOcean channel end to end, in the sandbox: the real sshd and
//! helper, the unprivileged `codext-channel` process (user
//! `codext-channel`, the token in a credentials folder only it can read,
//! as `codext-channel.service` gives it), the agent's `codext` CLI, and the
//! API emulator on loopback (which fails the test on any request or
//! response the real API's OpenAPI description does not allow, and records
//! the uid holding each connection).

use codext_do_emulator::{Emulator, EmulatorConfig, Fault};
use codext_tests::sandbox_test;
use codext_tests::world::{ids, run, sh, wait_until, World, WORK};
use std::collections::BTreeSet;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SERVER_TOKEN: &str = "dop_v1_server0000000000000000000000000000000000000000000000000000";
const AGENT_TOKEN: &str = "dop_v1_agent00000000000000000000000000000000000000000000000000000";

struct Setup {
    emu: Emulator,
    droplet: u64,
    w: World,
    channel: Child,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.channel.kill();
        let _ = self.channel.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- channel log ---\n{}",
                std::fs::read_to_string(format!("{WORK}/channel.log")).unwrap_or_default()
            );
        }
    }
}

/// Starts `codext-channel --socket SOCKET` as the `codext-channel` user,
/// its API token in a credentials folder only that user can read (what
/// `LoadCredential=` gives the unit), stderr appended to `channel.log`.
fn start_channel(socket: &str, name: &str) -> Child {
    let bin = format!("{WORK}/bin/codext-channel");
    if !std::path::Path::new(&bin).exists() {
        std::fs::copy(codext_tests::bin("codext-channel"), &bin).unwrap();
        sh(&format!("chmod 755 {bin}"));
    }
    let (uid, gid) = ids("codext-channel");
    let creds = format!("{WORK}/{name}-credentials");
    std::fs::create_dir_all(&creds).unwrap();
    codext_tests::world::write_file(&format!("{creds}/digitalocean.token"), SERVER_TOKEN, 0o600);
    sh(&format!(
        "chown -R codext-channel: {creds} && chmod 700 {creds}"
    ));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("{WORK}/channel.log"))
        .unwrap();
    use std::os::unix::process::CommandExt;
    Command::new(bin)
        .args(["--socket", socket])
        .uid(uid)
        .gid(gid)
        .env_clear()
        .env("CREDENTIALS_DIRECTORY", &creds)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Every call to the emulator came from a socket held by a uid other
/// than 0, and the server token's calls from the channel user's.
fn assert_no_root_connections(emu: &Emulator) {
    let (channel, _) = ids("codext-channel");
    let calls = emu.calls();
    assert!(!calls.is_empty());
    for c in &calls {
        assert!(
            c.peer_uid.is_some(),
            "no uid found for {} {}",
            c.method,
            c.path
        );
        assert_ne!(
            c.peer_uid,
            Some(0),
            "root holds a connection to the API: {} {}",
            c.method,
            c.path
        );
        if c.token.as_deref() == Some(SERVER_TOKEN) {
            assert_eq!(c.peer_uid, Some(channel), "{} {}", c.method, c.path);
        }
    }
    eprintln!(
        "{} API calls, none from uid 0; the server's all from uid {channel} (codext-channel)",
        calls.len()
    );
}

fn setup(extra: &str) -> Setup {
    setup_with_tags(extra, &["prod", "Team:Web"])
}

fn setup_with_tags(extra: &str, tags: &[&str]) -> Setup {
    setup_scoped(extra, tags, None)
}

/// Like [`setup_scoped`] with the defaults.
fn setup_scoped(extra: &str, tags: &[&str], scopes: Option<&[&str]>) -> Setup {
    setup_full(extra, tags, scopes, None)
}

/// Like [`setup`], the agent's key allowed the grant profiles
/// `profiles` (`allowed_keys` as a table).
fn setup_profiles(extra: &str, profiles: &[&str]) -> Setup {
    setup_full(extra, &["prod", "Team:Web"], None, Some(profiles))
}

/// The setups: the server's token a custom-scoped one holding only
/// `scopes` when given; the agent's key allowed `profiles` when given (else
/// `allowed_keys` is the list of its fingerprint: shell).
fn setup_full(
    extra: &str,
    tags: &[&str],
    scopes: Option<&[&str]>,
    profiles: Option<&[&str]>,
) -> Setup {
    let mut cfg = EmulatorConfig::with_tokens(&[SERVER_TOKEN, AGENT_TOKEN]);
    if let Some(scopes) = scopes {
        cfg.token_scopes.insert(
            SERVER_TOKEN.into(),
            scopes.iter().map(|s| s.to_string()).collect(),
        );
    }
    let emu = Emulator::start(cfg).unwrap();
    let droplet = emu.add_droplet("web-1", "127.0.0.1", tags);
    let agent_fp = std::fs::read_to_string(
        codext_tests::repo().join("docs/test-vectors/v1/agent.pub.fingerprint"),
    )
    .unwrap();
    std::fs::create_dir_all("/etc/codext").unwrap();
    codext_tests::world::write_file(
        "/etc/codext/digitalocean.token",
        &format!("{SERVER_TOKEN}\n"),
        0o600,
    );
    let allowed = match profiles {
        None => format!("[\"{}\"]", agent_fp.trim()),
        Some(p) => format!(
            "{{ \"{}\" = [{}] }}",
            agent_fp.trim(),
            p.iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let toml = format!(
        "[digitalocean]\nenabled = true\napi_url = \"{}\"\nmetadata_url = \"{}\"\nallowed_keys = {allowed}\n{extra}",
        emu.base_url(),
        emu.metadata_url(),
    );
    let w = World::with_config(&toml);
    // The agent keeps its token in a file only it can read.
    codext_tests::world::write_file("/home/agent/do.token", AGENT_TOKEN, 0o600);
    sh("chown agent: /home/agent/do.token");
    let channel = start_channel("/run/codext-channel/helper.sock", "channel");
    Setup {
        emu,
        droplet,
        w,
        channel,
    }
}

impl Setup {
    fn codext(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let at = all.iter().position(|a| a == "--").unwrap_or(all.len());
        let api = [
            "--api-url".to_string(),
            self.emu.base_url(),
            "--token-file".into(),
            "/home/agent/do.token".into(),
        ];
        all.splice(at..at, api);
        run(self
            .w
            .as_agent(Command::new(format!("{WORK}/bin/codext")).args(&all)))
    }

    fn connect(&self, key: &str, command: &str) -> Output {
        let droplet = self.droplet.to_string();
        self.codext(&[
            "connect",
            "--droplet",
            &droplet,
            "--key",
            key,
            "--server-key",
            "/home/agent/server.pub",
            "--timeout",
            "90s",
            "--",
            command,
        ])
    }

    /// The droplet's name and tags (as a set: the API lists them in no order).
    /// The droplet's name, its tags, and the codext tags of the whole
    /// account (v3 puzzle chunks are attached to nothing).
    fn look(&self) -> (String, BTreeSet<String>, BTreeSet<String>) {
        let d = self.emu.droplet(self.droplet).unwrap();
        let tags = d["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        let account = self
            .emu
            .tags()
            .into_iter()
            .filter(|t| t.to_ascii_lowercase().starts_with("codext"))
            .collect();
        (d["name"].as_str().unwrap().to_owned(), tags, account)
    }

    fn calls(&self, token: &str) -> Vec<String> {
        self.emu
            .calls()
            .into_iter()
            .filter(|c| c.token.as_deref() == Some(token))
            .map(|c| format!("{} {} {}", c.method, c.path, c.status))
            .collect()
    }

    fn wait_neutral(&self, before: &(String, BTreeSet<String>, BTreeSet<String>)) {
        wait_until(
            Duration::from_secs(60),
            "the droplet's tags to be neutral again",
            || self.look() == *before,
        );
    }
}

sandbox_test! {
    fn given_a_key_allowed_a_commands_profile_then_connect_asks_for_it_in_the_request_tag_gets_it_signed_and_is_refused_another() {
        // The request tag names the profile; the server issues
        // only the profiles the key may ask for; the puzzle signs it; the
        // agent refuses a puzzle granting another than the one it asked for.
        let s = setup_profiles(
            "[limits]\nreaper_interval = \"1s\"\n[audit]\nsummary_window = \"1s\"\n[profiles.ci]\nkind = \"commands\"\ncommands = [\"id -un\", \"id -Gn\"]\n",
            &["ci"],
        );
        let before = s.look();
        assert!(s.codext(&["publish-key", "--key", "/home/agent/agent.key"]).status.success());
        let droplet = s.droplet.to_string();
        let out = s.codext(&[
            "connect", "--droplet", &droplet, "--key", "/home/agent/agent.key",
            "--server-key", "/home/agent/server.pub", "--timeout", "90s", "--profile", "ci", "--", "id -Gn",
        ]);
        let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "connect --profile ci: {o}{e}");
        assert!(o.contains("codext-p-ci"), "{o}");
        assert!(e.contains("(profile ci)"), "{e}");
        let issue = s.w.audit().into_iter().find(|x| x["event"] == "issue").unwrap();
        assert_eq!(issue["profile"], "ci");
        assert_eq!(issue["channel"], "digitalocean");
        let user = issue["user"].as_str().unwrap().to_owned();
        let uid = issue["uid"].as_u64().unwrap() as u32;
        // The profile rode the request tag.
        let posted: Vec<String> = s.emu.calls().into_iter()
            .filter(|c| c.method == "POST" && c.token.as_deref() == Some(AGENT_TOKEN))
            .map(|c| c.path.replace("%3A", ":").replace("%3a", ":"))
            .collect();
        assert!(posted.iter().any(|p| p.contains(":q:") && p.ends_with(":ci/resources")), "{posted:?}");
        s.w.wait_removed(&user, uid);
        s.wait_neutral(&before);
        // Not allowed shell: no puzzle comes (the helper refuses and audits).
        let out = s.codext(&[
            "connect", "--droplet", &droplet, "--key", "/home/agent/agent.key",
            "--server-key", "/home/agent/server.pub", "--timeout", "8s", "--", "id -un",
        ]);
        assert!(!out.status.success());
        // Counted, as every channel refusal is (whoever writes to the
        // account can repeat it): the window's summary names the reason.
        let refused = s.w.wait_audit("the refusal's summary", |x| x["event"] == "refusals_summary" && x["result"].as_str().is_some_and(|r| r.contains("may not ask for the profile shell")));
        assert_eq!(refused["last_source"], "digitalocean");
        s.emu.assert_no_violations();
    }
}

fn user_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

sandbox_test! {
    fn given_published_key_then_connect_logs_in_and_everything_is_neutral_afterwards() {
        let s = setup("");
        let before = s.look();
        let out = s.codext(&["publish-key", "--key", "/home/agent/agent.key"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("id:"));
        // Publishing again is harmless.
        let again = s.codext(&["publish-key", "--key", "/home/agent/agent.key"]);
        assert!(String::from_utf8_lossy(&again.stdout).contains("already in the account"));
        assert_eq!(s.emu.keys().len(), 1);
        let start = Instant::now();
        let out = s.connect("/home/agent/agent.key", "id -un");
        assert!(out.status.success(), "connect: {}", String::from_utf8_lossy(&out.stderr));
        let user = user_of(&out);
        assert!(user.starts_with("user-"), "{user}");
        let took = start.elapsed();
        let uid = s.w.audit().iter().find(|e| e["event"] == "create" && e["user"] == user.as_str()).unwrap()["uid"].as_u64().unwrap() as u32;
        s.w.wait_removed(&user, uid);
        s.wait_neutral(&before);
        s.emu.assert_no_violations();
        assert_no_root_connections(&s.emu);
        let server = s.calls(SERVER_TOKEN);
        let agent = s.calls(AGENT_TOKEN);
        eprintln!("login in {took:?}: {} API calls by the server, {} by the agent", server.len(), agent.len());
        eprintln!("server calls:\n  {}", server.join("\n  "));
        eprintln!("agent calls:\n  {}", agent.join("\n  "));
        // Well inside 250 a minute per token, and no 429 drawn.
        assert!(server.len() < 120 && agent.len() < 120);
        assert!(!server.iter().chain(agent.iter()).any(|c| c.ends_with(" 429")));
        assert!(server.iter().filter(|c| c.starts_with("GET /v2/account/keys")).count() <= 2);
        assert!(!s.emu.calls().iter().any(|c| c.method == "PUT" || c.method == "PATCH"));
    }
}

sandbox_test! {
    fn given_a_server_polling_every_five_minutes_at_idle_when_the_agent_knocks_then_the_login_starts_at_once() {
        // The idle pace at its longest: only the knock (an SSH attempt at an
        // unknown codext name, which the helper passes on to the channel's
        // `wait`) can make the channel see the request within seconds.
        let s = setup("poll_idle = \"300s\"\nhot_for = \"1s\"\n");
        assert!(s.codext(&["publish-key", "--key", "/home/agent/agent.key"]).status.success());
        let droplet_reads = || {
            s.calls(SERVER_TOKEN)
                .iter()
                .filter(|c| c.starts_with("GET /v2/droplets/"))
                .count()
        };
        // The channel's first pass at its start; the next idle one is
        // four and a half minutes away at the least.
        wait_until(Duration::from_secs(30), "the channel's first pass", || droplet_reads() >= 1);
        std::thread::sleep(Duration::from_secs(2));
        let start = Instant::now();
        let out = s.connect("/home/agent/agent.key", "id -un");
        let took = start.elapsed();
        assert!(out.status.success(), "connect: {}", String::from_utf8_lossy(&out.stderr));
        assert!(user_of(&out).starts_with("user-"));
        assert!(took < Duration::from_secs(60), "the login took {took:?}: the knock did not wake the channel");
        // The knock reached sshd as a password attempt at an unknown
        // codext name (which PAM hands to the helper).
        let sshd = std::fs::read_to_string(codext_tests::world::SSHD_LOG).unwrap_or_default();
        assert!(
            sshd.contains("Failed password for invalid user user-"),
            "no knock in sshd's log:\n{sshd}"
        );
        // A stranger knocking over and over gets a few early passes, not
        // one per knock: the wake bucket (3, refilled at ~4 a minute).
        let reads = droplet_reads();
        for _ in 0..15 {
            let _ = Command::new("sshpass")
                .args(["-p", "x", "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                       "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
                       "-o", "NumberOfPasswordPrompts=1", "-l", "user-0123456789ab", "127.0.0.1", "true"])
                .stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null())
                .status();
        }
        std::thread::sleep(Duration::from_secs(2));
        let woken = droplet_reads() - reads;
        eprintln!("login in {took:?}; 15 stranger knocks made {woken} droplet reads");
        assert!(woken <= 8, "15 knocks made {woken} droplet reads");
        s.emu.assert_no_violations();
    }
}

sandbox_test! {
    fn given_an_agent_of_the_previous_release_speaking_v2_tags_then_the_server_answers_it_in_v2_with_a_ready_notice() {
        use codext_do::tags::Space;
        let s = setup("");
        let before = s.look();
        assert!(s.codext(&["publish-key", "--key", "/home/agent/agent.key"]).status.success());
        let vectors = codext_tests::repo().join("docs/test-vectors/v1");
        let agent = codext_core::PrivateKey::from_pkcs8_pem(&std::fs::read_to_string(vectors.join("agent.key")).unwrap()).unwrap();
        let server = codext_core::PublicKey::from_openssh(&std::fs::read_to_string("/home/agent/server.pub").unwrap()).unwrap();
        let c = codext_do::Client::new(codext_do::ApiConfig::new(s.emu.base_url(), AGENT_TOKEN));
        let v2 = Space::new(s.droplet);
        // What a v2 agent does: a v2 request, a v2 puzzle, a v2 answer, the ready tag.
        c.attach_new_tag(&v2.request_tag(&agent.public("").unwrap().fingerprint()), s.droplet).unwrap();
        let mut found = None;
        wait_until(Duration::from_secs(60), "a v2 puzzle", || {
            let tags = c.droplet(s.droplet).unwrap().tags;
            assert!(!tags.iter().any(|t| t.starts_with("codext3:")), "a v3 tag for a v2 agent: {tags:?}");
            found = v2.collect_puzzles(&tags).into_iter().next();
            found.is_some()
        });
        let text = found.unwrap();
        let opened = codext_core::Puzzle::from_text(&text).unwrap().open(&agent, &server, codext_core::time::now()).unwrap();
        c.attach_new_tag(&v2.answer_tag(&opened.answer), s.droplet).unwrap();
        wait_until(Duration::from_secs(60), "the v2 ready tag", || v2.is_ready(&c.droplet(s.droplet).unwrap().tags, &opened.content.user));
        let out = s.w.login(&text, &["id", "-un"]);
        assert!(out.status.success(), "login: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(user_of(&out), opened.content.user.as_str());
        s.wait_neutral(&before);
        s.emu.assert_no_violations();
    }
}

sandbox_test! {
    fn given_operator_issued_puzzle_then_agent_waits_for_it_without_requesting() {
        let s = setup("");
        let before = s.look();
        let out = World::helper_cli(&["issue", "--client-key", "/home/agent/agent.key.pub", "--channel", "digitalocean", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let issued: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let droplet = s.droplet.to_string();
        let out = s.codext(&["poll", "--droplet", &droplet, "--key", "/home/agent/agent.key", "--server-key", "/home/agent/server.pub", "--no-request"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), issued["puzzle"].as_str().unwrap());
        assert!(String::from_utf8_lossy(&out.stderr).lines().all(|l| l.starts_with("codext: waiting for")));
        let solved = s.w.solve(issued["puzzle"].as_str().unwrap());
        let out = s.codext(&["answer", "--droplet", &droplet, solved["answer"].as_str().unwrap()]);
        assert!(out.status.success());
        let user = issued["user"].as_str().unwrap();
        wait_until(Duration::from_secs(30), "the user to be armed", || codext_tests::world::resolves(user));
        let out = s.w.login(issued["puzzle"].as_str().unwrap(), &["id -un"]);
        assert_eq!(user_of(&out), user);
        s.w.wait_removed(user, issued["uid"].as_u64().unwrap() as u32);
        s.wait_neutral(&before);
        s.emu.assert_no_violations();
        assert_no_root_connections(&s.emu);
    }
}

sandbox_test! {
    fn given_several_agents_answering_on_one_droplet_at_once_then_no_answer_is_lost() {
        let s = setup("issue_to_any_codext_key = true\n");
        let before = s.look();
        sh("cp /home/agent/agent.key /home/agent/a1.key");
        std::fs::copy(codext_tests::repo().join("docs/test-vectors/v1/other-agent.key"), "/home/agent/a2.key").unwrap();
        sh("chown agent: /home/agent/a1.key /home/agent/a2.key && chmod 600 /home/agent/a2.key");
        let out = s.w.agent_cli(&["keygen", "--key", "/home/agent/a3.key"]);
        assert!(out.status.success());
        for k in ["a1", "a2", "a3"] {
            let out = s.codext(&["publish-key", "--key", &format!("/home/agent/{k}.key"), "--name", &format!("codext-{k}")]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
                let s = &s;
        let users: Vec<String> = std::thread::scope(|scope| {
            let hs: Vec<_> = ["a1", "a2", "a3"]
                .iter()
                .map(|k| scope.spawn(move || s.connect(&format!("/home/agent/{k}.key"), "id -un")))
                .collect();
            hs.into_iter().map(|h| {
                let out = h.join().unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                user_of(&out)
            }).collect()
        });
        let distinct: BTreeSet<&String> = users.iter().collect();
        assert_eq!(distinct.len(), 3, "{users:?}");
        wait_until(Duration::from_secs(60), "all three removed", || users.iter().all(|u| !codext_tests::world::in_passwd(u)));
        s.wait_neutral(&before);
        s.emu.assert_no_violations();
        assert_no_root_connections(&s.emu);
    }
}

sandbox_test! {
    fn given_key_not_on_the_allow_list_then_no_puzzle_unless_the_operator_opted_in() {
                let s = setup("poll_idle = \"2s\"\n[limits]\nreaper_interval = \"1s\"\n[audit]\nsummary_window = \"1s\"\n");
        std::fs::copy(codext_tests::repo().join("docs/test-vectors/v1/other-agent.key"), "/home/agent/other.key").unwrap();
        sh("chown agent: /home/agent/other.key && chmod 600 /home/agent/other.key");
        assert!(s.codext(&["publish-key", "--key", "/home/agent/other.key"]).status.success());
        let droplet = s.droplet.to_string();
                let out = s.codext(&["poll", "--droplet", &droplet, "--key", "/home/agent/other.key", "--server-key", "/home/agent/server.pub", "--timeout", "8s"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no puzzle for this key"), "{err}");
        // The agent says what it can tell: its key is in the account, so the
        // allow-list (which the server cannot report) is the likely cause.
        assert!(err.contains("although it is in the account") && err.contains("allow-list"), "{err}");
        // A key never published gets told to publish it.
        let out = s.codext(&["poll", "--droplet", &droplet, "--key", "/home/agent/agent.key", "--server-key", "/home/agent/server.pub", "--timeout", "2s"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not in the DigitalOcean account") && err.contains("codext publish-key"), "{err}");
        wait_until(Duration::from_secs(20), "the refusal in the audit trail", || {
            s.w.audit().iter().any(|e| e["event"] == "refusals_summary" && e["result"] == "key not on the allow-list")
        });
        assert!(s.w.state()["users"].as_object().unwrap().is_empty());
        s.emu.assert_no_violations();
        assert_no_root_connections(&s.emu);
    }
}

sandbox_test! {
    fn given_api_faults_then_the_flow_completes_the_helper_survives_and_nothing_is_lost() {
        let s = setup("");
        let before = s.look();
        let helper = s.w.helper_pid();
        assert!(s.codext(&["publish-key", "--key", "/home/agent/agent.key"]).status.success());
        // Bursts of 429, server errors, slow and garbled answers, spread
        // over both sides' requests.
        s.emu.inject(Fault::too_many_requests(3, 2));
        s.emu.inject(Fault::server_error(3, 503));
        s.emu.inject(Fault::slow(2, Duration::from_secs(3)));
        // Garbled answers, one each to calls of two kinds: two in a row to
        // one call are, by design, an error the client reports (a count of
        // 2 for any path once landed on the agent's droplet read and its
        // retry, under load).
        s.emu.inject(Fault::malformed_json(1).only("GET", "/v2/droplets"));
        s.emu.inject(Fault::malformed_json(1).only("POST", "/v2/tags"));
        s.emu.inject(Fault::server_error(2, 500).only("POST", "/v2/tags"));
        let out = s.connect("/home/agent/agent.key", "id -un");
        assert!(out.status.success(), "connect: {}", String::from_utf8_lossy(&out.stderr));
        let user = user_of(&out);
        wait_until(Duration::from_secs(60), "the removal", || !codext_tests::world::in_passwd(&user));
        s.wait_neutral(&before);
        assert_eq!(s.w.helper_pid(), helper);
        assert!(std::path::Path::new(&format!("/proc/{helper}")).exists(), "the helper died");
        let faulted = s.emu.calls().iter().filter(|c| c.fault.is_some()).count();
        assert!(faulted >= 10, "only {faulted} faults were served");
        s.emu.assert_no_violations();
        assert_no_root_connections(&s.emu);
    }
}

sandbox_test! {
    fn given_published_puzzle_that_expires_then_its_tags_are_cleared() {
        let s = setup("poll_busy = \"1s\"\npoll_idle = \"2s\"\n[limits]\nreaper_interval = \"1s\"\n");
        let before = s.look();
        let out = World::helper_cli(&["issue", "--client-key", "/home/agent/agent.key.pub", "--channel", "digitalocean", "--ttl", "4s"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // Published in the account, attached to nothing.
        wait_until(Duration::from_secs(20), "the puzzle tags", || s.look().2.iter().any(|t| t.starts_with(&format!("codext3:{}:p", s.droplet))));
        assert_eq!(s.look().1, before.1, "a v3 puzzle is attached to nothing");
        wait_until(Duration::from_secs(30), "the expired puzzle's tags to go", || s.look() == before);
        s.w.wait_audit("the expire event", |e| e["event"] == "expire" && e["phase"] == "pending");
        assert!(s.w.state()["users"].as_object().unwrap().is_empty());
        s.emu.assert_no_violations();
        assert_no_root_connections(&s.emu);
    }
}

sandbox_test! {
    fn given_the_channel_restarted_with_a_puzzle_out_then_its_chunk_tags_go_when_it_expires_and_another_droplets_stay() {
        let mut s = setup("poll_busy = \"1s\"\npoll_idle = \"2s\"\n[limits]\nreaper_interval = \"1s\"\n");
        let before = s.look();
        let out = World::helper_cli(&["issue", "--client-key", "/home/agent/agent.key.pub", "--channel", "digitalocean", "--ttl", "6s"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let ours = format!("codext3:{}:p", s.droplet);
        wait_until(Duration::from_secs(20), "the puzzle published", || {
            s.w.state()["users"].as_object().is_some_and(|u| u.values().any(|e| e["published"] == true))
        });
        assert!(s.look().2.iter().any(|t| t.starts_with(&ours)));
        // The channel dies with the puzzle out; the process that follows
        // never saw its chunk tags' names (the helper offers only what
        // waits to be published).
        let _ = s.channel.kill();
        let _ = s.channel.wait();
        let data = "A".repeat(40);
        let theirs = format!("codext3:999:pdeadbeef12:{data}");
        let request = format!("codext3:{}:q:{}", s.droplet, "ab".repeat(16));
        for t in [&theirs, &request] {
            s.emu.add_tag(t);
        }
        let listings = |s: &Setup| s.calls(SERVER_TOKEN).iter().filter(|c| c.starts_with("GET /v2/tags ")).count();
        let listed = listings(&s);
        s.channel = start_channel("/run/codext-channel/helper.sock", "channel");
        wait_until(Duration::from_secs(30), "the expired puzzle's chunk tags to go", || {
            !s.emu.tags().iter().any(|t| t.starts_with(&ours))
        });
        s.w.wait_audit("the expire event", |e| e["event"] == "expire" && e["phase"] == "pending");
        let tags = s.emu.tags();
        // Another droplet's chunk is not ours to delete; an unattached
        // request may be an agent's between creating and attaching it.
        assert!(tags.contains(&theirs) && tags.contains(&request), "{tags:?}");
        // A listing found them once the puzzle stopped waiting (the first
        // hourly one may, rarely, fall in too).
        let n = listings(&s) - listed;
        assert!((1..=2).contains(&n), "{n} listings: {:?}", s.calls(SERVER_TOKEN));
        assert_eq!(s.look().1, before.1);
        s.emu.assert_no_violations();
    }
}

/// A second codext server on the same machine, for a second droplet: its
/// own config, key, state, audit trail, uid range, helper socket, channel
/// socket and channel process, and an sshd of its own on port 2222 whose
/// PAM service (`sshd2`: OpenSSH 9.2 names it after its binary) points
/// the module at the second helper.
struct Second {
    children: Vec<Child>,
}

impl Drop for Second {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            for f in ["helper2.log", "sshd2.log"] {
                eprintln!(
                    "--- {f} ---\n{}",
                    std::fs::read_to_string(format!("{WORK}/{f}")).unwrap_or_default()
                );
            }
        }
    }
}

fn second_server(emu: &Emulator, droplet: u64) -> Second {
    let agent_fp = std::fs::read_to_string(
        codext_tests::repo().join("docs/test-vectors/v1/agent.pub.fingerprint"),
    )
    .unwrap();
    sh("mkdir -p -m 0700 /etc/codext2 /var/lib/codext2 /var/log/codext2");
    // One helper per host serves the recording socket (a fixed path the
    // recorder knows): the first server's; the second records nothing.
    let toml = format!(
        "server_key = \"/etc/codext2/server_key\"\nstate_dir = \"/var/lib/codext2\"\nsocket = \"/run/codext2/helper.sock\"\naudit_log = \"/var/log/codext2/audit.jsonl\"\nserver_id = \"web-2\"\npam_services = [\"sshd2\"]\n[accounts]\nuid_min = 59500\nuid_max = 59999\n[digitalocean]\nenabled = true\napi_url = \"{}\"\nmetadata_url = \"{}\"\ndroplet_id = {droplet}\nchannel_socket = \"/run/codext-channel2/helper.sock\"\nallowed_keys = [\"{}\"]\n[recording]\nenabled = false\n",
        emu.base_url(),
        emu.metadata_url(),
        agent_fp.trim()
    );
    std::fs::write(
        "/etc/codext2/helper.toml",
        codext_tests::world::in_uid_block(&toml),
    )
    .unwrap();
    let out = World::helper_cli(&["--config", "/etc/codext2/helper.toml", "init"]);
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sh("cp /etc/codext2/server_key.pub /home/agent/server2.pub && chown agent: /home/agent/server2.pub");
    // PAM service sshd2: the stock sshd stack, with codext's lines pointed
    // at the second helper.
    for (from, to) in [("codext", "codext2"), ("codext-session", "codext2-session")] {
        let text = std::fs::read_to_string(format!("/etc/pam.d/{from}")).unwrap();
        let text: String = text
            .lines()
            .map(|l| {
                if !l.trim_start().starts_with('#') && l.contains("pam_codext") {
                    format!("{l} socket=/run/codext2/helper.sock services=sshd2\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(format!("/etc/pam.d/{to}"), text).unwrap();
    }
    let sshd = std::fs::read_to_string("/etc/pam.d/sshd").unwrap();
    let sshd = sshd
        .replace("@include codext-session", "@include codext2-session")
        .replace("@include codext\n", "@include codext2\n");
    assert!(sshd.contains("@include codext2\n") && sshd.contains("@include codext2-session"));
    std::fs::write("/etc/pam.d/sshd2", sshd).unwrap();
    let log = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("{WORK}/{name}"))
            .unwrap()
    };
    let mut children = Vec::new();
    let helper = codext_tests::world::helper_serve_command(&[])
        .args(["--config", "/etc/codext2/helper.toml"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log("helper2.log"))
        .spawn()
        .unwrap();
    children.push(helper);
    wait_until(Duration::from_secs(10), "the second helper", || {
        std::os::unix::net::UnixStream::connect("/run/codext2/helper.sock").is_ok()
    });
    sh(&format!("cp /usr/sbin/sshd {WORK}/bin/sshd2"));
    let sshd = Command::new(format!("{WORK}/bin/sshd2"))
        .args([
            "-D",
            "-e",
            "-o",
            "Port=2222",
            "-o",
            "PidFile=/run/sshd2.pid",
            "-o",
            "LogLevel=VERBOSE",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log("sshd2.log"))
        .spawn()
        .unwrap();
    children.push(sshd);
    wait_until(Duration::from_secs(10), "sshd2 on port 2222", || {
        std::net::TcpStream::connect("127.0.0.1:2222").is_ok()
    });
    children.push(start_channel(
        "/run/codext-channel2/helper.sock",
        "channel2",
    ));
    Second { children }
}

fn audit_of(path: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

sandbox_test! {
    fn given_two_servers_on_two_droplets_in_one_account_then_agents_for_both_log_in_at_once_and_each_droplets_tags_end_as_they_began() {
        let s = setup("[accounts]\nuid_min = 59000\nuid_max = 59499\n");
        let d2 = s.emu.add_droplet("web-2", "127.0.0.1", &["prod", "Team:Api"]);
        let _second = second_server(&s.emu, d2);
        let look2 = || {
            let d = s.emu.droplet(d2).unwrap();
            d["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect::<BTreeSet<String>>()
        };
        let (before1, before2) = (s.look(), look2());
        assert!(s.codext(&["publish-key", "--key", "/home/agent/agent.key"]).status.success());
        let d2s = d2.to_string();
        let (out1, out2) = std::thread::scope(|scope| {
            let one = scope.spawn(|| s.connect("/home/agent/agent.key", "id -un; id -u"));
            let two = scope.spawn(|| s.codext(&[
                "connect", "--droplet", &d2s, "--key", "/home/agent/agent.key",
                "--server-key", "/home/agent/server2.pub", "--port", "2222",
                "--timeout", "90s", "--", "id -un; id -u",
            ]));
            (one.join().unwrap(), two.join().unwrap())
        });
        assert!(out1.status.success(), "server 1: {}", String::from_utf8_lossy(&out1.stderr));
        assert!(out2.status.success(), "server 2: {}", String::from_utf8_lossy(&out2.stderr));
        let parse = |o: &Output| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let mut l = text.lines();
            (l.next().unwrap().to_owned(), l.next().unwrap().parse::<u32>().unwrap())
        };
        let ((u1, uid1), (u2, uid2)) = (parse(&out1), parse(&out2));
        assert_ne!(u1, u2);
        // Each login went through its own server: its uid range, its audit trail.
        assert!((codext_tests::uid(59000)..=codext_tests::uid(59499)).contains(&uid1), "{uid1}");
        assert!((codext_tests::uid(59500)..=codext_tests::uid(59999)).contains(&uid2), "{uid2}");
        assert!(s.w.audit().iter().any(|e| e["event"] == "create" && e["user"] == u1.as_str()));
        assert!(audit_of("/var/log/codext2/audit.jsonl").iter().any(|e| e["event"] == "create" && e["user"] == u2.as_str()));
        assert!(!s.w.audit().iter().any(|e| e["user"] == u2.as_str()));
        wait_until(Duration::from_secs(60), "both users removed", || {
            !codext_tests::world::in_passwd(&u1) && !codext_tests::world::in_passwd(&u2)
        });
        s.wait_neutral(&before1);
        wait_until(Duration::from_secs(60), "droplet 2's tags to be neutral again", || look2() == before2);
        // No tag of either server's namespace is left anywhere in the account.
        assert!(!s.emu.tags().iter().any(|t| t.to_ascii_lowercase().starts_with("codext")), "{:?}", s.emu.tags());
        s.emu.assert_no_violations();
        assert_no_root_connections(&s.emu);
    }
}

sandbox_test! {
    fn given_codext_tags_of_no_or_another_droplets_namespace_on_its_droplet_then_the_server_only_detaches_them_never_deletes_them() {
        // A v1 request tag (no droplet in its name) and a v2 tag naming
        // another droplet, on this server's droplet and on another one.
        let v1 = format!("codext:q:{}", "ab".repeat(16));
        let foreign = format!("codext2:999:q:{}", "cd".repeat(16));
        let s = setup_with_tags("", &["prod", &v1, &foreign]);
        let other = s.emu.add_droplet("other", "203.0.113.50", &[&v1, &foreign]);
        // The emulator records a call once it has answered it, and the two
        // detachments go out at once: wait for both records too.
        wait_until(Duration::from_secs(30), "the foreign tags to leave this droplet", || {
            s.look().1 == BTreeSet::from(["prod".to_string()])
                && s.calls(SERVER_TOKEN).iter().filter(|c| c.starts_with("DELETE /v2/tags/") && c.contains("/resources")).count() >= 2
        });
        // Still in the account, still on the other droplet: never deleted.
        let on_other: BTreeSet<String> = s.emu.droplet(other).unwrap()["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect();
        assert_eq!(on_other, BTreeSet::from([v1.clone(), foreign.clone()]));
        assert!(s.emu.tags().contains(&v1) && s.emu.tags().contains(&foreign));
        let calls = s.calls(SERVER_TOKEN);
        assert!(calls.iter().any(|c| c.starts_with("DELETE /v2/tags/") && c.contains("/resources")), "{calls:?}");
        assert!(!calls.iter().any(|c| c.starts_with("DELETE /v2/tags/") && !c.contains("/resources")), "{calls:?}");
        s.emu.assert_no_violations();
        assert_no_root_connections(&s.emu);
    }
}

sandbox_test! {
    fn given_connect_persist_then_the_alias_carries_the_task_and_close_ends_it() {
        // A whole task on one grant through the DigitalOcean channel: one puzzle round trip
        // for the whole task.
        let s = setup("");
        assert!(s.codext(&["publish-key", "--key", "/home/agent/agent.key"]).status.success());
        let droplet = s.droplet.to_string();
        let out = s.codext(&[
            "connect", "--droplet", &droplet, "--key", "/home/agent/agent.key",
            "--server-key", "/home/agent/server.pub", "--timeout", "90s",
            "--persist", "--name", "do1", "--json",
        ]);
        assert!(out.status.success(), "connect --persist: {}", String::from_utf8_lossy(&out.stderr));
        let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let connected = events.iter().find(|e| e["event"] == "connected").expect("connected event");
        assert_eq!(connected["host_alias"], "codext-do1");
        let user = connected["user"].as_str().unwrap().to_owned();
        for _ in 0..3 {
            let out = run(s.w.as_agent(Command::new("ssh").args(["codext-do1", "id -un"])));
            assert_eq!(user_of(&out), user);
        }
        let uid = s.w.audit().iter().find(|e| e["event"] == "create" && e["user"] == user.as_str()).unwrap()["uid"].as_u64().unwrap() as u32;
        let out = run(s.w.as_agent(Command::new(format!("{WORK}/bin/codext")).args(["close", "do1"])));
        assert!(out.status.success(), "close: {}", String::from_utf8_lossy(&out.stderr));
        s.w.wait_removed(&user, uid);
        assert_eq!(s.w.audit().iter().filter(|e| e["event"] == "session_open" && e["user"] == user.as_str()).count(), 1);
    }
}

sandbox_test! {
    fn given_a_token_missing_a_scope_then_doctor_probes_the_read_calls_as_the_channel_user_and_names_the_missing_one() {
        // A fine-grained token that may read droplets and write tags but
        // not read the account's keys (the allow-list's lookups need it).
        let s = setup_scoped("", &["prod"], Some(&["droplet:read", "tag:read", "tag:create", "tag:delete"]));
        // doctor finds codext-channel beside itself (as in /usr/sbin); both
        // copied where the channel user may execute them.
        let helper = format!("{WORK}/bin/codext-helper");
        std::fs::copy(codext_tests::bin("codext-helper"), &helper).unwrap();
        sh(&format!("chmod 755 {helper}"));
        let out = run(Command::new(&helper).args(["doctor", "--json"]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("doctor --json: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        let check = |name: &str| {
            v["checks"].as_array().unwrap().iter().find(|c| c["check"] == name).cloned()
                .unwrap_or_else(|| panic!("no {name} check in {v}"))
        };
        let read = check("digitalocean.scope.droplet:read");
        assert_eq!(read["status"], "ok", "{read}");
        assert!(read["detail"].as_str().unwrap().contains(&format!("GET /v2/droplets/{}", s.droplet)), "{read}");
        let tags = check("digitalocean.scope.tag:read");
        assert_eq!(tags["status"], "ok", "{tags}");
        let keys = check("digitalocean.scope.ssh_key:read");
        assert_eq!(keys["status"], "fail", "{keys}");
        assert!(keys["detail"].as_str().unwrap().contains("403"), "{keys}");
        assert!(keys["advice"].as_str().unwrap().contains("ssh_key:read scope"), "{keys}");
        for write in ["tag:create", "tag:delete"] {
            let c = check(&format!("digitalocean.scope.{write}"));
            assert!(c["detail"].as_str().unwrap().contains("not tried"), "writes are listed, never probed: {c}");
        }
        assert!(!out.status.success(), "a failing check fails doctor");
        // Only reads reached the API, and none from root.
        assert!(s.emu.calls().iter().all(|c| c.method == "GET"), "{:?}", s.emu.calls());
        assert_no_root_connections(&s.emu);
        assert!(!String::from_utf8_lossy(&out.stdout).contains(SERVER_TOKEN), "the token in doctor's output");
    }
}
