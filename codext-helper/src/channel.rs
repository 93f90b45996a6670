//! The DigitalOcean channel, server side (run by `serve`).
//!
//! Each pass reads the droplet once (`GET /v2/droplets/{id}`: one call
//! serves every pending puzzle, answer and request on it) and then:
//! * publishes new puzzles as chunk tags;
//! * takes every answer tag (`codext:a:…`) to [`Helper::answer`]; a valid
//!   one arms its user and the server attaches `codext:r:<user>` so the
//!   agent knows it may log in; answer tags are removed once read;
//! * honours puzzle requests (`codext:q:<fingerprint prefix>`) from agent
//!   keys the operator allowed (the config's `allowed_keys`, or any
//!   `codext-…` key of the account only with `issue_to_any_codext_key`);
//! * removes every codext tag nothing live stands behind any more (a
//!   puzzle that was answered or expired, a ready notice for a user who
//!   logged in or expired), so the droplet's tags return to what they were.
//!
//! codext never renames the droplet: a name holds one answer at a time and
//! a rename is an asynchronous action that conflicts with any other, while
//! tags are a set that several agents can add to at once without losing
//! anything.
//!
//! It polls every `poll_busy` (2 s) while a puzzle is out or a user armed,
//! every `poll_idle` otherwise; the API client obeys the rate limits.

use crate::config::Config;
use crate::error::{HelperError, Result};
use crate::ops::Helper;
use crate::store::{Entry, Phase};
use codext_core::digitalocean::{metadata_droplet_id, tags, ApiConfig, Client, SshKey};
use codext_core::secret_file::{read_secret, Owner};
use codext_core::PublicKey;
use serde_json::json;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Name of the channel in the state and the audit trail.
pub const CHANNEL: &str = "digitalocean";
/// How long a listing of the account's keys is reused.
const KEYS_CACHE: Duration = Duration::from_secs(60);

/// Reads the API token: `DIGITALOCEAN_TOKEN`, else the root-only token file.
pub fn token(cfg: &Config) -> Result<Zeroizing<String>> {
    if let Ok(t) = std::env::var("DIGITALOCEAN_TOKEN") {
        if !t.trim().is_empty() {
            return Ok(Zeroizing::new(t.trim().to_owned()));
        }
    }
    let path = &cfg.digitalocean.token_file;
    let text = read_secret(path, "the DigitalOcean token file", Owner::Uid(0))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(HelperError::Config(format!("{} is empty", path.display())));
    }
    Ok(Zeroizing::new(t.to_owned()))
}

/// The channel's state between passes.
#[derive(Debug)]
pub struct DoChannel {
    helper: Helper,
    client: Client,
    droplet: u64,
    keys: Option<(Instant, Vec<SshKey>)>,
}

impl DoChannel {
    /// Connects the channel: token, API client, droplet id.
    pub fn start(helper: Helper) -> Result<DoChannel> {
        let d = &helper.cfg.digitalocean;
        let client = Client::new(ApiConfig::new(
            d.api_url.clone(),
            token(&helper.cfg)?.to_string(),
        ));
        let droplet = if d.droplet_id != 0 {
            d.droplet_id
        } else {
            metadata_droplet_id(&d.metadata_url, Duration::from_secs(5))?
        };
        Ok(DoChannel {
            helper,
            client,
            droplet,
            keys: None,
        })
    }

    /// API calls made so far.
    pub fn calls(&self) -> u64 {
        self.client.calls()
    }

    /// Runs passes forever; a failed pass is logged and retried later.
    pub fn run(mut self) {
        eprintln!(
            "codext-helper: digitalocean channel on droplet {}",
            self.droplet
        );
        loop {
            let pause = match self.pass() {
                Ok(true) => self.helper.cfg.digitalocean.poll_busy,
                Ok(false) => self.helper.cfg.digitalocean.poll_idle,
                Err(e) => {
                    eprintln!("codext-helper: digitalocean: {e}");
                    self.helper
                        .cfg
                        .digitalocean
                        .poll_busy
                        .max(Duration::from_secs(5))
                }
            };
            std::thread::sleep(pause);
        }
    }

    /// One pass; returns whether anything is in flight (poll fast).
    pub fn pass(&mut self) -> Result<bool> {
        self.publish()?;
        let droplet = self.client.droplet(self.droplet)?;
        let mut handled = Vec::new();
        for raw in &droplet.tags {
            let one = std::slice::from_ref(raw);
            if let Some(answer) = tags::answers(one).into_iter().next() {
                self.take_answer(&answer.to_string());
                handled.push(raw.clone());
            } else if let Some(prefix) = tags::requests(one).into_iter().next() {
                self.take_request(&prefix)?;
                handled.push(raw.clone());
            }
        }
        for raw in &handled {
            self.client.delete_tag(raw)?;
        }
        // Publish what the requests just issued, then tidy up.
        self.publish()?;
        let entries = self.helper.status()?;
        self.tidy(&droplet.tags, &handled, &entries)?;
        let busy = entries
            .iter()
            .any(|e| e.channel == CHANNEL && matches!(e.phase, Phase::Pending | Phase::Armed));
        Ok(busy)
    }

    fn publish(&self) -> Result<()> {
        for (user, id, text) in self.helper.unpublished(CHANNEL)? {
            for tag in tags::puzzle_tags(&text, &id) {
                self.client.attach_new_tag(&tag, self.droplet)?;
            }
            self.helper.mark_published(&user)?;
        }
        Ok(())
    }

    fn take_answer(&self, text: &str) {
        match self.helper.answer(text, CHANNEL) {
            Ok(entry) => {
                if let Ok(user) = codext_wire::UserName::parse(&entry.user) {
                    if let Err(e) = self
                        .client
                        .attach_new_tag(&tags::ready_tag(&user), self.droplet)
                    {
                        eprintln!("codext-helper: digitalocean: cannot post the ready notice for {user}: {e}");
                    }
                }
            }
            Err(e) => eprintln!("codext-helper: digitalocean: answer refused: {e}"),
        }
    }

    fn account_keys(&mut self, refresh: bool) -> Result<Vec<SshKey>> {
        let fresh = self
            .keys
            .as_ref()
            .is_some_and(|(t, _)| t.elapsed() < KEYS_CACHE);
        if !fresh || refresh {
            self.keys = Some((Instant::now(), self.client.list_keys()?));
        }
        Ok(self
            .keys
            .as_ref()
            .map(|(_, k)| k.clone())
            .unwrap_or_default())
    }

    fn find_key(&mut self, prefix: &[u8; 16]) -> Result<Option<PublicKey>> {
        for refresh in [false, true] {
            let keys = self.account_keys(refresh)?;
            let found = keys.iter().find_map(|k| {
                let key = PublicKey::from_openssh(&k.public_key).ok()?;
                (k.name.to_ascii_lowercase().starts_with("codext-")
                    && key.fingerprint().0[..16] == prefix[..])
                    .then_some(key)
            });
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    fn take_request(&mut self, prefix: &[u8; 16]) -> Result<()> {
        let live = self.helper.status()?.iter().any(|e| {
            e.channel == CHANNEL
                && matches!(e.phase, Phase::Pending | Phase::Armed)
                && codext_core::Fingerprint::parse(&e.client_fingerprint)
                    .is_some_and(|f| f.0[..16] == prefix[..])
        });
        if live {
            return Ok(());
        }
        let request = codext_core::encoding::hex(prefix);
        let Some(key) = self.find_key(prefix)? else {
            self.helper.log(
                "refuse",
                json!({"request": "puzzle", "key": request, "channel": CHANNEL,
                "reason": "no codext- key with that fingerprint in the account"}),
            );
            return Ok(());
        };
        let fp = key.fingerprint().to_string();
        let d = &self.helper.cfg.digitalocean;
        if !(d.allowed_keys.contains(&fp) || d.issue_to_any_codext_key) {
            self.helper.log(
                "refuse",
                json!({"request": "puzzle", "key": fp, "channel": CHANNEL,
                "reason": "key not on the allow-list"}),
            );
            return Ok(());
        }
        match self.helper.issue(&key, None, CHANNEL, None) {
            Ok(_) => Ok(()),
            Err(e) => {
                eprintln!("codext-helper: digitalocean: cannot issue for {fp}: {e}");
                Ok(())
            }
        }
    }

    /// Deletes codext tags that nothing live stands behind.
    fn tidy(&self, seen: &[String], handled: &[String], entries: &[Entry]) -> Result<()> {
        for raw in seen {
            if handled.contains(raw) || !tags::is_codext_tag(raw) {
                continue;
            }
            let one = std::slice::from_ref(raw);
            let keep = entries.iter().any(|e| {
                let pending_puzzle = e.phase == Phase::Pending
                    && e.channel == CHANNEL
                    && raw
                        .to_ascii_lowercase()
                        .starts_with(&format!("codext:p:{}:", e.puzzle_id.get(..8).unwrap_or("")));
                let ready = e.phase == Phase::Armed
                    && codext_wire::UserName::parse(&e.user).is_ok_and(|u| tags::is_ready(one, &u));
                pending_puzzle || ready
            });
            if !keep {
                self.client.delete_tag(raw)?;
            }
        }
        Ok(())
    }
}
