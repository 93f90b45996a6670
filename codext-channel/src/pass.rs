//! One pass of the channel over its droplet.
//!
//! Each pass reads the droplet once (`GET /v2/droplets/{id}`: one call
//! serves every answer and request on it) and then:
//! * publishes new puzzles (asked of the helper with `next`) as chunk tags,
//!   in channel format v3 ([`codext_do::tags::v3`]: tags of the account,
//!   created but attached to nothing, which the agent reads in the
//!   account's tag listing), or in v2 for a key whose last request came in
//!   v2 tags (agents of the previous release: attached to the droplet);
//! * hands every answer tag of its namespaces to the helper (`answer`); for
//!   a v2 answer the channel attaches the ready tag so the agent knows it
//!   may log in (a v3 agent waits for its answer and its puzzle's chunks to
//!   be gone);
//! * for every request tag, finds the account's `codext-…` key with that
//!   fingerprint prefix and hands the key to the helper (`request`), which
//!   decides from its own allow-list;
//! * removes what it handled and every tag of its own namespace nothing
//!   live stands behind (asked with `live`). A tag of its namespace is
//!   provably its own (droplet ids are unique), so it is deleted
//!   account-wide (`DELETE /v2/tags/{tag}`); a codext tag of another
//!   namespace attached to this droplet (v1, or another droplet's) is only
//!   detached from this droplet (`DELETE /v2/tags/{tag}/resources`). The
//!   v3 chunk tags it created are deleted by name once their puzzle no
//!   longer waits. Those of a puzzle another channel process published (the
//!   one before a restart) are found by reading the account's tag listing
//!   as soon as that puzzle no longer waits; what a crash left of puzzles
//!   that ended while no channel ran, by a listing at a random time within
//!   the first hour (a fleet restarted together does not list at once) and
//!   every hour after.
//!
//! codext never renames the droplet: tags are a set several agents can add
//! to at once without losing anything.
//!
//! The API calls of one step that do not depend on each other (a puzzle's
//! chunk tags, the deletions) go out at once, a few at a time: at 150–250 ms
//! a call, publishing eight chunk tags one after another took over three
//! seconds of every login.

use crate::link::{Link, Settings};
use crate::relay::{Carrier, Live, Posted};
use crate::{ChannelError, Result};
use codext_core::channel_wire::ToPublish;
use codext_core::encoding::hex;
use codext_core::PublicKey;
use codext_do::budget::Activity;
use codext_do::tags::{is_codext_tag, Space, Space3};
use codext_do::{metadata_droplet_id, ApiConfig, Client, SshKey};
use std::time::Duration;
use zeroize::Zeroizing;

/// How long a listing of the account's keys is reused.
const KEYS_CACHE: Duration = Duration::from_secs(60);
/// How long a key found in the account is trusted to still be there
/// without listing the keys again. A fingerprint names one key, so what
/// is cached cannot change, only disappear from the account: a key removed
/// from the account is still honoured this long (the helper's allow-list
/// decides either way). Listing the keys (10 a minute per token) for every
/// request would let a fleet sharing a token run into that limit.
const FOUND_KEY_CACHE: Duration = Duration::from_secs(15 * 60);
/// API calls in flight at once within one step.
const PARALLEL: usize = 8;
/// How long a key's v2 request decides the format of its puzzles.
const V2_MEMORY: Duration = Duration::from_secs(3600);
/// How often the account's tags are read for chunk tags of this droplet
/// that nothing live stands behind (a crash between creating and deleting
/// them); the first time at a random moment within this long of the start.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// The channel's state between passes.
#[derive(Debug)]
pub struct Pass {
    client: Client,
    droplet: u64,
    space: Space,
    space3: Space3,
    keys: Option<(Duration, Vec<SshKey>)>,
    found: Vec<(Duration, [u8; 16], SshKey)>,
    /// Keys (fingerprint prefixes) whose last request came in v2 tags,
    /// with when: their puzzles go out in v2.
    v2_keys: Vec<(Duration, [u8; 16])>,
    /// The v3 chunk tags created and not yet deleted, by the puzzle id's
    /// first 8 hex (the id `live` reports).
    published: Vec<(String, Vec<String>)>,
    /// When the account's tags are next swept (`None`: not chosen yet).
    next_sweep: Option<Duration>,
    /// Puzzles seen waiting that this process did not publish (published
    /// before a restart): their chunk tags are found by a sweep once they
    /// no longer wait.
    inherited: Vec<String>,
    /// The droplet's tags as this pass read them.
    seen: Vec<String>,
}

/// Runs `f` on every item, up to [`PARALLEL`] at once; the first error.
fn each<T: Sync>(items: &[T], f: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    let mut first = Ok(());
    for batch in items.chunks(PARALLEL) {
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = batch.iter().map(|i| s.spawn(|| f(i))).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(ChannelError::Helper("an API call panicked".into()))
                    })
                })
                .collect()
        });
        for r in results {
            if first.is_ok() {
                first = r;
            }
        }
    }
    first
}

impl Pass {
    /// The API client and the droplet id (from the helper's settings, else
    /// the metadata service).
    pub fn start(settings: &Settings, token: &Zeroizing<String>) -> Result<Pass> {
        let client = Client::new(ApiConfig::new(
            settings.api_url.clone(),
            token.as_str().to_owned(),
        ));
        let droplet = if settings.droplet_id != 0 {
            settings.droplet_id
        } else {
            metadata_droplet_id(&settings.metadata_url, Duration::from_secs(5))?
        };
        Ok(Pass::with_client(client, droplet))
    }

    /// A pass over `droplet` with a client made elsewhere (the fleet
    /// benchmark's, on a simulated clock).
    pub fn with_client(client: Client, droplet: u64) -> Pass {
        Pass {
            client,
            droplet,
            space: Space::new(droplet),
            space3: Space3::new(droplet),
            keys: None,
            found: Vec::new(),
            v2_keys: Vec::new(),
            published: Vec::new(),
            next_sweep: None,
            inherited: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// The API client (its clock paces the passes).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The droplet watched.
    pub fn droplet(&self) -> u64 {
        self.droplet
    }

    /// API calls made so far.
    pub fn calls(&self) -> u64 {
        self.client.calls()
    }

    /// One pass ([`crate::relay`] over this droplet); returns whether
    /// anything happened and whether a login is in flight (see
    /// [`codext_do::budget`]).
    pub fn run(&mut self, link: &mut Link) -> Result<Activity> {
        crate::relay::relay(self, link)
    }

    /// When due (see [`SWEEP_EVERY`]), or when a puzzle published before a
    /// restart stopped waiting: reads the account's tags and deletes the
    /// v3 chunk tags of this droplet no live puzzle stands behind (what a
    /// crash or a failed deletion left). One listing call per 200 tags of
    /// the account.
    fn sweep(&mut self, puzzles: &[String]) -> Result<()> {
        let now = self.client.clock().now();
        let published = &self.published;
        let ended = self.inherited.iter().any(|id| !puzzles.contains(id));
        self.inherited.retain(|id| puzzles.contains(id));
        for id in puzzles {
            if !published.iter().any(|(p, _)| p == id) && !self.inherited.contains(id) {
                self.inherited.push(id.clone());
            }
        }
        let due = *self.next_sweep.get_or_insert_with(|| {
            let r = codext_core::random::bytes::<2>().map_or(0.5, |b| {
                f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX)
            });
            now + SWEEP_EVERY.mul_f64(r)
        });
        if !ended && now < due {
            return Ok(());
        }
        self.next_sweep = Some(now + SWEEP_EVERY);
        let names = self.client.list_tags()?;
        let stale: Vec<&String> = names
            .iter()
            .filter(|n| {
                self.space3
                    .puzzle_tag_id(n)
                    .is_some_and(|id| !puzzles.contains(&hex(&id)))
            })
            .collect();
        each(&stale, |raw| Ok(self.client.delete_tag(raw)?))
    }

    /// Remembers in which format a key last asked.
    fn note_request(&mut self, prefix: [u8; 16], v2: bool) {
        let now = self.client.clock().now();
        self.v2_keys
            .retain(|(t, p)| *p != prefix && now.saturating_sub(*t) < V2_MEMORY);
        if v2 {
            self.v2_keys.push((now, prefix));
        }
    }

    /// The token's budget as last reported.
    pub fn budget(&self) -> Option<codext_do::Budget> {
        self.client.budget()
    }

    fn account_keys(&mut self, refresh: bool) -> Result<Vec<SshKey>> {
        let now = self.client.clock().now();
        let fresh = self
            .keys
            .as_ref()
            .is_some_and(|(t, _)| now.saturating_sub(*t) < KEYS_CACHE);
        if !fresh || refresh {
            self.keys = Some((now, self.client.list_keys()?));
        }
        Ok(self
            .keys
            .as_ref()
            .map(|(_, k)| k.clone())
            .unwrap_or_default())
    }

    fn account_key(&mut self, prefix: &[u8; 16]) -> Result<Option<SshKey>> {
        let now = self.client.clock().now();
        self.found
            .retain(|(t, _, _)| now.saturating_sub(*t) < FOUND_KEY_CACHE);
        if let Some((_, _, key)) = self.found.iter().find(|(_, p, _)| p == prefix) {
            return Ok(Some(key.clone()));
        }
        for refresh in [false, true] {
            let keys = self.account_keys(refresh)?;
            let found = keys.into_iter().find(|k| {
                k.name.to_ascii_lowercase().starts_with("codext-")
                    && PublicKey::from_openssh(&k.public_key)
                        .is_ok_and(|key| key.fingerprint().0[..16] == prefix[..])
            });
            if let Some(key) = found {
                self.found.push((now, *prefix, key.clone()));
                return Ok(Some(key));
            }
        }
        Ok(None)
    }

    /// The codext tags that nothing live stands behind: (to detach from
    /// this droplet, to delete account-wide).
    fn tidy<'a>(
        &self,
        seen: &'a [String],
        handled: &[String],
        puzzles: &[String],
        armed: &[String],
    ) -> (Vec<&'a String>, Vec<&'a String>) {
        let mut detach = Vec::new();
        let mut delete = Vec::new();
        for raw in seen {
            if handled.contains(raw) || !is_codext_tag(raw) {
                continue;
            }
            if !self.space.owns(raw) && !self.space3.owns(raw) {
                // Not provably ours: take it off our droplet only.
                detach.push(raw);
                continue;
            }
            let live_puzzle = self
                .space
                .puzzle_tag_id(raw)
                .or_else(|| self.space3.puzzle_tag_id(raw))
                .is_some_and(|id| puzzles.contains(&hex(&id)));
            let live_ready = self
                .space
                .ready_user(raw)
                .is_some_and(|u| armed.contains(&u));
            if !(live_puzzle || live_ready) {
                delete.push(raw);
            }
        }
        (detach, delete)
    }
}

/// The DigitalOcean side of the relay: puzzles go out in v3 chunk tags
/// (v2 for a key that last asked in v2), answers and requests are read in
/// the droplet's tags.
impl Carrier for Pass {
    fn publish(&mut self, p: &ToPublish) -> Result<()> {
        let id: [u8; 16] = codext_core::encoding::hex_decode(&p.id)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ChannelError::Helper("next: a puzzle id that is not 32 hex".into()))?;
        let recipient = codext_core::Puzzle::from_text(&p.text)
            .map(|z| z.recipient.0)
            .ok();
        let v2 = recipient.is_some_and(|r| self.v2_keys.iter().any(|(_, k)| r[..16] == k[..]));
        if v2 {
            // Attached to the droplet: tidying finds them there.
            self.published.push((p.id[..8].to_owned(), Vec::new()));
            let tags = self.space.puzzle_tags(&p.text, &id);
            return each(&tags, |tag| {
                Ok(self.client.attach_new_tag(tag, self.droplet)?)
            });
        }
        let tags = self.space3.puzzle_tags(&p.text, &id);
        if tags.is_empty() {
            return Err(ChannelError::Helper(
                "next: a puzzle text that is not a cdx1 envelope".into(),
            ));
        }
        // Tracked before they exist: whatever part of them a failure
        // leaves is deleted once the puzzle no longer waits.
        self.published.push((p.id[..8].to_owned(), tags.clone()));
        each(&tags, |tag| {
            // base64url is not case-free: publish only a tag the API
            // reports under exactly the name sent (tags3 docs).
            let canonical = self.client.create_tag(tag)?;
            if canonical != *tag {
                return Err(ChannelError::Helper(format!(
                    "the API reports the new tag {tag} as {canonical}: a tag of that name in another capitalization exists"
                )));
            }
            Ok(())
        })
    }

    fn read(&mut self) -> Result<Vec<Posted>> {
        let droplet = self.client.droplet(self.droplet)?;
        let mut posted = Vec::new();
        for raw in &droplet.tags {
            let item = raw.clone();
            if let Some(answer) = self.space3.answer_in(raw) {
                posted.push(Posted::Answer {
                    text: answer.to_string(),
                    item,
                });
            } else if let Some((prefix, profile)) = self.space3.request_in(raw) {
                self.note_request(prefix, false);
                posted.push(Posted::Request {
                    key_prefix: prefix,
                    profile,
                    item,
                });
            } else if let Some(answer) = self.space.answer_in(raw) {
                posted.push(Posted::Answer {
                    text: answer.to_string(),
                    item,
                });
            } else if let Some(prefix) = self.space.request_in(raw) {
                // v2 agents predate profiles: shell.
                self.note_request(prefix, true);
                posted.push(Posted::Request {
                    key_prefix: prefix,
                    profile: codext_core::ProfileName::shell(),
                    item,
                });
            }
        }
        self.seen = droplet.tags;
        Ok(posted)
    }

    fn find_key(&mut self, prefix: &[u8; 16]) -> Result<Option<(String, String)>> {
        Ok(self.account_key(prefix)?.map(|k| (k.public_key, k.name)))
    }

    fn accepted(&mut self, answer: &Posted, user: &str) -> Result<()> {
        // A v2 agent waits for the ready notice; a v3 agent for its
        // answer and its puzzle's chunks to be gone.
        if self.space.answer_in(answer.item()).is_none() {
            return Ok(());
        }
        let Ok(user) = codext_wire::UserName::parse(user) else {
            return Ok(());
        };
        self.client
            .attach_new_tag(&self.space.ready_tag(&user), self.droplet)?;
        Ok(())
    }

    fn clear(&mut self, handled: &[Posted], live: &Live) -> Result<bool> {
        let handled: Vec<String> = handled.iter().map(|p| p.item().to_owned()).collect();
        let seen = std::mem::take(&mut self.seen);
        let (detach, mut delete) = if live.complete {
            self.tidy(&seen, &handled, &live.puzzles, &live.armed)
        } else {
            (Vec::new(), Vec::new())
        };
        delete.extend(handled.iter());
        // The chunk tags of puzzles that no longer wait.
        let spent: Vec<String> = match live.complete {
            true => self
                .published
                .iter()
                .filter(|(id, _)| !live.puzzles.contains(id))
                .flat_map(|(_, names)| names.iter().cloned())
                .collect(),
            false => Vec::new(),
        };
        delete.extend(spent.iter());
        each(&detach, |raw| {
            Ok(self.client.untag_droplet(raw, self.droplet)?)
        })?;
        each(&delete, |raw| Ok(self.client.delete_tag(raw)?))?;
        if live.complete {
            self.published.retain(|(id, _)| live.puzzles.contains(id));
            if let Err(e) = self.sweep(&live.puzzles) {
                // Tried again at the next sweep; publishing does not need it.
                codext_core::log_warn!("reading the account's tags for stale chunk tags: {e}");
            }
        }
        // A v2 ready notice stays until its user logged in: that needs a
        // pass to remove it. v3 leaves nothing behind an armed user.
        Ok(seen.iter().any(|t| self.space.ready_user(t).is_some()))
    }
}
