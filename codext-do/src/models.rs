//! The parts of DigitalOcean's answers that codext reads, as serde models
//! (fields codext does not read are ignored; a field it reads that is
//! missing or of the wrong type makes the whole answer unreadable, which
//! the client reports as [`crate::Error::ApiFormat`]).
//!
//! Every answer comes over the network and is untrusted: these parsers
//! are fuzzed (`fuzz/fuzz_targets/do_responses.rs`).

use serde::Deserialize;

/// A droplet, as far as codext cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Droplet {
    /// Droplet id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its tags, in the capitalization the account knows them by, in no
    /// particular order.
    pub tags: Vec<String>,
    /// The first public IPv4 address, if it has one.
    pub public_ipv4: Option<String>,
}

/// An SSH key of the account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SshKey {
    /// Key id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// DigitalOcean's MD5 fingerprint (`aa:bb:…`).
    pub fingerprint: String,
    /// The OpenSSH public key line.
    pub public_key: String,
}

#[derive(Deserialize)]
struct DropletBody {
    droplet: DropletModel,
}

#[derive(Deserialize)]
struct DropletModel {
    id: u64,
    name: String,
    tags: Vec<String>,
    #[serde(default)]
    networks: Option<Networks>,
}

#[derive(Deserialize)]
struct Networks {
    #[serde(default)]
    v4: Vec<Network>,
}

#[derive(Deserialize)]
struct Network {
    ip_address: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct KeysPage {
    ssh_keys: Vec<SshKey>,
    #[serde(default)]
    links: Option<Links>,
}

#[derive(Deserialize)]
struct TagsPage {
    tags: Vec<TagModel>,
    #[serde(default)]
    links: Option<Links>,
}

#[derive(Deserialize)]
struct Links {
    #[serde(default)]
    pages: Option<Pages>,
}

#[derive(Deserialize)]
struct Pages {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct TagBody {
    tag: TagModel,
}

#[derive(Deserialize)]
struct TagModel {
    name: String,
}

#[derive(Deserialize)]
struct KeyBody {
    ssh_key: SshKey,
}

/// DigitalOcean's error body (every field optional: an error answer may be
/// anything).
#[derive(Debug, Default, Deserialize)]
pub struct ApiErrorBody {
    /// Error id, e.g. `unauthorized`.
    #[serde(default)]
    pub id: Option<String>,
    /// Human-readable message.
    #[serde(default)]
    pub message: Option<String>,
    /// For DigitalOcean's support.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// The body of `GET /v2/droplets/{id}`; `None` when it lacks a field
/// codext needs.
pub fn parse_droplet(body: &str) -> Option<Droplet> {
    let d = serde_json::from_str::<DropletBody>(body).ok()?.droplet;
    let public_ipv4 = d
        .networks
        .and_then(|n| n.v4.into_iter().find(|n| n.kind == "public"))
        .map(|n| n.ip_address);
    Some(Droplet {
        id: d.id,
        name: d.name,
        tags: d.tags,
        public_ipv4,
    })
}

/// One page of `GET /v2/account/keys`: the keys and the next page's URL.
pub fn parse_keys_page(body: &str) -> Option<(Vec<SshKey>, Option<String>)> {
    let page = serde_json::from_str::<KeysPage>(body).ok()?;
    let next = page.links.and_then(|l| l.pages).and_then(|p| p.next);
    Some((page.ssh_keys, next))
}

/// One page of `GET /v2/tags`: the tags' names and the next page's URL.
pub fn parse_tags_page(body: &str) -> Option<(Vec<String>, Option<String>)> {
    let page = serde_json::from_str::<TagsPage>(body).ok()?;
    let next = page.links.and_then(|l| l.pages).and_then(|p| p.next);
    Some((page.tags.into_iter().map(|t| t.name).collect(), next))
}

/// The tag name in the body of `POST /v2/tags`.
pub fn parse_tag_name(body: &str) -> Option<String> {
    Some(serde_json::from_str::<TagBody>(body).ok()?.tag.name)
}

/// The key in the body of `POST /v2/account/keys`.
pub fn parse_created_key(body: &str) -> Option<SshKey> {
    Some(serde_json::from_str::<KeyBody>(body).ok()?.ssh_key)
}

/// An error body, or all fields empty when it is not one.
pub fn parse_error(body: &str) -> ApiErrorBody {
    serde_json::from_str(body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_droplet_json_then_fields_read_and_missing_fields_refused() {
        let v = r#"{"droplet": {"id": 7, "name": "box", "tags": ["a", "B"],
            "networks": {"v4": [
                {"ip_address": "10.0.0.2", "type": "private"},
                {"ip_address": "203.0.113.7", "type": "public"}]}}}"#;
        assert_eq!(
            parse_droplet(v),
            Some(Droplet {
                id: 7,
                name: "box".into(),
                tags: vec!["a".into(), "B".into()],
                public_ipv4: Some("203.0.113.7".into()),
            })
        );
        assert_eq!(
            parse_droplet(r#"{"droplet": {"id": 7, "name": "box"}}"#),
            None
        );
        assert_eq!(
            parse_droplet(r#"{"droplet": {"id": "7", "name": "box", "tags": []}}"#),
            None
        );
        let no_net = r#"{"droplet": {"id": 7, "name": "box", "tags": []}}"#;
        assert_eq!(parse_droplet(no_net).map(|d| d.public_ipv4), Some(None));
        assert_eq!(parse_droplet("not json"), None);
    }

    #[test]
    fn given_keys_page_then_keys_and_next_read() {
        let body = r#"{"ssh_keys": [{"id": 1, "name": "codext-a", "fingerprint": "aa",
            "public_key": "ssh-ed25519 AAAA"}], "links": {"pages": {"next": null}}, "meta": {"total": 1}}"#;
        let (keys, next) = parse_keys_page(body).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(next, None);
        assert!(parse_keys_page(r#"{"ssh_keys": [{"id": 1}]}"#).is_none());
        assert_eq!(
            parse_error(r#"{"id": "x", "message": "m"}"#).id.as_deref(),
            Some("x")
        );
        assert!(parse_error("[]").id.is_none());
    }
}
