//! The emulated account: droplets, actions, tags and SSH keys, and their JSON renderings
//! (shaped after the OpenAPI description's `droplet`, `action`, `tags` and `sshKeys`).
//!
//! Time-dependent state (an action finishing after the rename delay) is advanced lazily by
//! [`State::tick`], which every access calls first: no timer thread is needed.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::{rfc3339, unix_now, Rng};

/// An emulated droplet.
#[derive(Debug, Clone)]
pub struct Droplet {
    /// Droplet id.
    pub id: u64,
    /// Current name.
    pub name: String,
    /// Public IPv4 address.
    pub public_ipv4: String,
    /// Canonical names of attached tags, in attachment order.
    pub tags: Vec<String>,
    /// Unix creation time.
    pub created_at: u64,
}

/// An emulated action on a droplet.
#[derive(Debug, Clone)]
pub struct Action {
    /// Action id.
    pub id: u64,
    /// Action type (`rename`, ...).
    pub kind: String,
    /// The droplet it acts on.
    pub droplet_id: u64,
    /// For a rename: the new name.
    pub new_name: Option<String>,
    /// Unix start time.
    pub started_at: u64,
    /// When it completes.
    pub due: Instant,
    /// Unix completion time once completed.
    pub completed_at: Option<u64>,
}

/// An emulated tag.
#[derive(Debug, Clone)]
pub struct Tag {
    /// Canonical name (capitalization of the first creation).
    pub name: String,
}

/// An emulated SSH key.
#[derive(Debug, Clone)]
pub struct SshKey {
    /// Key id.
    pub id: u64,
    /// MD5 fingerprint.
    pub fingerprint: String,
    /// The public key line as uploaded.
    pub public_key: String,
    /// Its name.
    pub name: String,
}

/// Everything the account holds.
#[derive(Debug)]
pub struct State {
    /// Droplets in creation order.
    pub droplets: Vec<Droplet>,
    /// Actions in creation order.
    pub actions: Vec<Action>,
    /// Tags in creation order.
    pub tags: Vec<Tag>,
    /// SSH keys in creation order.
    pub keys: Vec<SshKey>,
    /// Droplet the metadata service answers for.
    pub metadata_droplet: Option<u64>,
    /// Random source for shuffles and request ids.
    pub rng: Rng,
    next_droplet: u64,
    next_action: u64,
    next_key: u64,
}

/// The region every emulated resource lives in.
pub const REGION: &str = "fra1";

impl State {
    /// An empty account.
    pub fn new(seed: u64) -> State {
        State {
            droplets: Vec::new(),
            actions: Vec::new(),
            tags: Vec::new(),
            keys: Vec::new(),
            metadata_droplet: None,
            rng: Rng::new(seed),
            next_droplet: 412_000_001,
            next_action: 2_210_000_001,
            next_key: 41_000_001,
        }
    }

    /// Complete every action whose time has come (a rename changes the name only then).
    pub fn tick(&mut self) {
        let now = Instant::now();
        for i in 0..self.actions.len() {
            if self.actions[i].completed_at.is_none() && self.actions[i].due <= now {
                self.actions[i].completed_at = Some(unix_now());
                let a = self.actions[i].clone();
                if let (Some(name), Some(d)) = (a.new_name, self.droplet_mut(a.droplet_id)) {
                    d.name = name;
                }
            }
        }
    }

    /// Add a droplet (creating its tags as DigitalOcean does on droplet creation).
    pub fn add_droplet(&mut self, name: &str, ipv4: &str, tags: &[&str]) -> u64 {
        let id = self.next_droplet;
        self.next_droplet += 1;
        let mut canonical = Vec::new();
        for t in tags {
            let name = self.ensure_tag(t);
            if !canonical
                .iter()
                .any(|c: &String| c.eq_ignore_ascii_case(&name))
            {
                canonical.push(name);
            }
        }
        self.droplets.push(Droplet {
            id,
            name: name.to_string(),
            public_ipv4: ipv4.to_string(),
            tags: canonical,
            created_at: unix_now(),
        });
        if self.metadata_droplet.is_none() {
            self.metadata_droplet = Some(id);
        }
        id
    }

    /// A droplet by id.
    pub fn droplet(&self, id: u64) -> Option<&Droplet> {
        self.droplets.iter().find(|d| d.id == id)
    }

    /// A droplet by id, mutable.
    pub fn droplet_mut(&mut self, id: u64) -> Option<&mut Droplet> {
        self.droplets.iter_mut().find(|d| d.id == id)
    }

    /// The tag whose name equals `name` ignoring case.
    pub fn tag(&self, name: &str) -> Option<&Tag> {
        self.tags.iter().find(|t| t.name.eq_ignore_ascii_case(name))
    }

    /// Create the tag unless it exists (ignoring case); returns its canonical name.
    pub fn ensure_tag(&mut self, name: &str) -> String {
        if let Some(t) = self.tag(name) {
            return t.name.clone();
        }
        self.tags.push(Tag {
            name: name.to_string(),
        });
        name.to_string()
    }

    /// Delete a tag and detach it everywhere; false if it did not exist.
    pub fn delete_tag(&mut self, name: &str) -> bool {
        let Some(pos) = self
            .tags
            .iter()
            .position(|t| t.name.eq_ignore_ascii_case(name))
        else {
            return false;
        };
        let canonical = self.tags.remove(pos).name;
        for d in &mut self.droplets {
            d.tags.retain(|t| t != &canonical);
        }
        true
    }

    /// The action of a droplet still in progress, if any.
    pub fn pending_action(&self, droplet_id: u64) -> Option<&Action> {
        self.actions
            .iter()
            .find(|a| a.droplet_id == droplet_id && a.completed_at.is_none())
    }

    /// Start an action on a droplet that completes after `delay`.
    pub fn start_action(
        &mut self,
        droplet_id: u64,
        kind: &str,
        new_name: Option<String>,
        delay: Duration,
    ) -> u64 {
        let id = self.next_action;
        self.next_action += 1;
        self.actions.push(Action {
            id,
            kind: kind.to_string(),
            droplet_id,
            new_name,
            started_at: unix_now(),
            due: Instant::now() + delay,
            completed_at: None,
        });
        id
    }

    /// An action by id.
    pub fn action(&self, id: u64) -> Option<&Action> {
        self.actions.iter().find(|a| a.id == id)
    }

    /// Add an SSH key; `Err` with the DigitalOcean message when it cannot be.
    pub fn add_key(&mut self, name: &str, public_key: &str) -> Result<&SshKey, &'static str> {
        let fingerprint = crate::util::ssh_md5_fingerprint(public_key)
            .ok_or("Key invalid, key should be of the format `type key [comment]`")?;
        if self.keys.iter().any(|k| k.fingerprint == fingerprint) {
            return Err("SSH Key is already in use on your account");
        }
        let id = self.next_key;
        self.next_key += 1;
        self.keys.push(SshKey {
            id,
            fingerprint,
            public_key: public_key.trim().to_string(),
            name: name.to_string(),
        });
        Ok(self.keys.last().expect("just pushed"))
    }

    /// Index of the key whose id or fingerprint is `ident`.
    pub fn key_index(&self, ident: &str) -> Option<usize> {
        self.keys
            .iter()
            .position(|k| k.fingerprint == ident || k.id.to_string() == ident)
    }

    /// The droplet as `GET /v2/droplets/{id}` shows it; tags in a fresh random order.
    pub fn droplet_json(&mut self, id: u64) -> Option<Value> {
        let d = self.droplet(id)?.clone();
        let mut tags = d.tags.clone();
        self.rng.shuffle(&mut tags);
        let octets: Vec<&str> = d.public_ipv4.split('.').collect();
        let gateway = if octets.len() == 4 {
            format!("{}.{}.{}.1", octets[0], octets[1], octets[2])
        } else {
            "0.0.0.0".to_string()
        };
        Some(json!({
            "id": d.id,
            "name": d.name,
            "memory": 1024,
            "vcpus": 1,
            "disk": 25,
            "disk_info": [{"type": "local", "size": {"amount": 25, "unit": "gib"}}],
            "locked": false,
            "status": "active",
            "kernel": null,
            "created_at": rfc3339(d.created_at),
            "features": ["monitoring", "droplet_agent", "private_networking"],
            "backup_ids": [],
            "next_backup_window": null,
            "snapshot_ids": [],
            "image": {
                "id": 191_457_505,
                "name": "12 x64",
                "distribution": "Debian",
                "slug": "debian-12-x64",
                "public": true,
                "regions": [REGION, "ams3", "lon1", "nyc3"],
                "created_at": "2025-06-10T12:00:00Z",
                "type": "base",
                "min_disk_size": 15,
                "size_gigabytes": 1.5,
                "description": "Debian 12 x64",
                "tags": [],
                "status": "available",
                "error_message": ""
            },
            "volume_ids": [],
            "size": size_json(),
            "size_slug": "s-1vcpu-1gb",
            "networks": {
                "v4": [
                    {"ip_address": d.public_ipv4, "netmask": "255.255.240.0", "gateway": gateway, "type": "public"},
                    {"ip_address": "10.114.0.2", "netmask": "255.255.240.0", "gateway": "10.114.0.1", "type": "private"}
                ],
                "v6": []
            },
            "region": region_json(),
            "tags": tags,
            "vpc_uuid": "5a4981aa-9653-4bd1-bef5-d6bff52042e4"
        }))
    }

    /// The action as `GET /v2/actions/{id}` shows it.
    pub fn action_json(&self, id: u64) -> Option<Value> {
        let a = self.action(id)?;
        Some(json!({
            "id": a.id,
            "status": if a.completed_at.is_some() { "completed" } else { "in-progress" },
            "type": a.kind,
            "started_at": rfc3339(a.started_at),
            "completed_at": a.completed_at.map(rfc3339),
            "resource_id": a.droplet_id,
            "resource_type": "droplet",
            "region": region_json(),
            "region_slug": REGION
        }))
    }

    /// The tag as `GET /v2/tags/{name}` shows it, with resource counts.
    pub fn tag_json(&self, name: &str, base_url: &str) -> Option<Value> {
        let t = self.tag(name)?;
        let tagged: Vec<u64> = self
            .droplets
            .iter()
            .filter(|d| d.tags.contains(&t.name))
            .map(|d| d.id)
            .collect();
        let empty = json!({"count": 0});
        let droplets = match tagged.last() {
            Some(last) => {
                json!({"count": tagged.len(), "last_tagged_uri": format!("{base_url}/v2/droplets/{last}")})
            }
            None => empty.clone(),
        };
        let mut resources = droplets.clone();
        resources["droplets"] = droplets;
        resources["images"] = empty.clone();
        resources["volumes"] = empty.clone();
        resources["volume_snapshots"] = empty.clone();
        resources["databases"] = empty;
        Some(json!({"name": t.name, "resources": resources}))
    }

    /// The key as the API shows it.
    pub fn key_json(k: &SshKey) -> Value {
        json!({"id": k.id, "fingerprint": k.fingerprint, "public_key": k.public_key, "name": k.name})
    }
}

fn region_json() -> Value {
    json!({
        "name": "Frankfurt 1",
        "slug": REGION,
        "features": ["backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"],
        "available": true,
        "sizes": ["s-1vcpu-1gb", "s-1vcpu-2gb"]
    })
}

fn size_json() -> Value {
    json!({
        "slug": "s-1vcpu-1gb",
        "memory": 1024,
        "vcpus": 1,
        "disk": 25,
        "transfer": 1.0,
        "price_monthly": 6.0,
        "price_hourly": 0.00893,
        "regions": [REGION, "ams3", "lon1", "nyc3"],
        "available": true,
        "description": "Basic",
        "disk_info": [{"type": "local", "size": {"amount": 25, "unit": "gib"}}]
    })
}
