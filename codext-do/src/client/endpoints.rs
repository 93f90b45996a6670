//! The API operations codext uses: a droplet, tags, account SSH keys,
//! and the listings' pages.

use super::handle::Client;
use super::token_guard::{origin_of, scrub};
use crate::error::{Error, Result};
use crate::models::{
    parse_created_key, parse_droplet, parse_keys_page, parse_tag_name, parse_tags_page, Droplet,
    SshKey,
};
use crate::tags::is_valid_tag;
use serde_json::json;
use std::collections::HashSet;

/// Pages of keys followed at most (200 keys a page).
const MAX_PAGES: usize = 1000;
/// Tags a page of `GET /v2/tags` (the API's most).
const TAGS_PER_PAGE: u32 = 200;

/// The decoded blob of an OpenSSH public key line (`type base64 [comment]`).
fn key_blob(line: &str) -> Option<Vec<u8>> {
    let mut parts = line.split_whitespace();
    let _kind = parts.next()?;
    data_encoding::BASE64.decode(parts.next()?.as_bytes()).ok()
}

fn check_tag(tag: &str) -> Result<()> {
    if is_valid_tag(tag) {
        Ok(())
    } else {
        Err(Error::TagName(format!("{tag:?}")))
    }
}

impl Client {
    /// `GET /v2/droplets/{id}`.
    pub fn droplet(&self, id: u64) -> Result<Droplet> {
        let url = format!("{}/v2/droplets/{id}", self.api_url);
        self.call_json("GET", &url, None, false, |b| {
            parse_droplet(b).filter(|d| d.id == id)
        })
    }

    /// `POST /v2/tags`: creates the tag, or finds it if it exists. Returns
    /// the name as the API reports it, which is the capitalization of the
    /// tag's first creation; use that name to address the tag.
    pub fn create_tag(&self, name: &str) -> Result<String> {
        check_tag(name)?;
        let url = format!("{}/v2/tags", self.api_url);
        let body = json!({ "name": name });
        self.call_json("POST", &url, Some(&body), false, |b| {
            parse_tag_name(b).filter(|n| n.eq_ignore_ascii_case(name))
        })
    }

    fn tag_resources(&self, method: &str, tag: &str, droplet: u64) -> Result<()> {
        check_tag(tag)?;
        let url = format!("{}/v2/tags/{tag}/resources", self.api_url);
        let body = json!({ "resources": [
            { "resource_id": droplet.to_string(), "resource_type": "droplet" }
        ]});
        self.send(method, &url, Some(&body), false).map(|_| ())
    }

    /// `POST /v2/tags/{tag}/resources`: attaches an existing tag to a
    /// droplet (attaching it twice is not an error).
    pub fn tag_droplet(&self, tag: &str, droplet: u64) -> Result<()> {
        self.tag_resources("POST", tag, droplet)
    }

    /// `DELETE /v2/tags/{tag}/resources`: detaches a tag from a droplet.
    pub fn untag_droplet(&self, tag: &str, droplet: u64) -> Result<()> {
        self.tag_resources("DELETE", tag, droplet)
    }

    /// `DELETE /v2/tags/{tag}`: deletes the tag, detaching it everywhere.
    /// A tag that does not exist (404) counts as deleted. Like the other tag
    /// calls, it should be given the name the API reports (the description
    /// asks for the canonical capitalization in paths).
    pub fn delete_tag(&self, tag: &str) -> Result<()> {
        check_tag(tag)?;
        let url = format!("{}/v2/tags/{tag}", self.api_url);
        match self.send("DELETE", &url, None, false) {
            Ok(_) | Err(Error::Api { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates the tag (an existing one is fine) and attaches it to the
    /// droplet under the name the API reports.
    pub fn attach_new_tag(&self, tag: &str, droplet: u64) -> Result<()> {
        let canonical = self.create_tag(tag)?;
        self.tag_droplet(&canonical, droplet)
    }

    /// `GET /v2/account/keys`, every page. Each page is one of the 10
    /// listings a minute, so consecutive pages are spaced.
    pub fn list_keys(&self) -> Result<Vec<SshKey>> {
        let url = format!(
            "{}/v2/account/keys?per_page={}",
            self.api_url, self.keys_per_page
        );
        self.every_page(url, true, "SSH keys", parse_keys_page)
    }

    /// `GET /v2/tags`, every page (200 tags a page): the names of every
    /// tag of the account, attached to something or not.
    pub fn list_tags(&self) -> Result<Vec<String>> {
        let url = format!("{}/v2/tags?per_page={}", self.api_url, TAGS_PER_PAGE);
        self.every_page(url, false, "tags", parse_tags_page)
    }

    /// Every page of a listing from `url`. Pages follow `links.pages.next`
    /// as given, but only on the API's own origin.
    fn every_page<T>(
        &self,
        mut url: String,
        keys: bool,
        what: &str,
        parse: impl Fn(&str) -> Option<(Vec<T>, Option<String>)>,
    ) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        for _ in 0..MAX_PAGES {
            let (page, next) = self.call_json("GET", &url, None, keys, &parse)?;
            items.extend(page);
            let Some(next) = next else {
                return Ok(items);
            };
            if self.origin.is_none() || origin_of(&next) != self.origin {
                return Err(Error::ApiFormat(format!(
                    "links.pages.next points away from {}: {}; refusing to send the token there",
                    self.api_url,
                    scrub(&next, &self.token)
                )));
            }
            if !seen.insert(next.clone()) {
                return Err(Error::ApiFormat(
                    "links.pages.next loops back to a page already read".into(),
                ));
            }
            url = next;
        }
        Err(Error::ApiFormat(format!(
            "more than {MAX_PAGES} pages of {what}"
        )))
    }

    /// `POST /v2/account/keys`. Returns the key and whether it was already
    /// on the account (DigitalOcean answers 422 "already in use" then; the
    /// key is found by its blob in [`Client::list_keys`]). A key whose
    /// creation answer was garbled, so that the retry met "already in use",
    /// also counts as existing.
    pub fn create_key(&self, name: &str, public_key: &str) -> Result<(SshKey, bool)> {
        let url = format!("{}/v2/account/keys", self.api_url);
        let body = json!({ "name": name, "public_key": public_key.trim() });
        match self.call_json("POST", &url, Some(&body), false, parse_created_key) {
            Ok(k) => Ok((k, false)),
            Err(Error::Api {
                status: 422,
                message,
                ..
            }) if message.to_ascii_lowercase().contains("already in use") => {
                let blob = key_blob(public_key).ok_or_else(|| {
                    Error::Core(codext_core::Error::KeyFormat(
                        "the public key is not an OpenSSH key line".into(),
                    ))
                })?;
                self.list_keys()?
                    .into_iter()
                    .find(|k| key_blob(&k.public_key).as_deref() == Some(blob.as_slice()))
                    .map(|k| (k, true))
                    .ok_or_else(|| {
                        Error::ApiFormat(
                            "the key is \"already in use\" but not in the account's key list"
                                .into(),
                        )
                    })
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::config::ApiConfig;

    #[test]
    fn given_key_lines_then_blobs_compare_without_comment() {
        let a =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlp/71cd1AH2BQ7xZqaxlPCKYIP719oeFO4zLn5OMmd a";
        let b = "ssh-ed25519  AAAAC3NzaC1lZDI1NTE5AAAAIPlp/71cd1AH2BQ7xZqaxlPCKYIP719oeFO4zLn5OMmd";
        assert!(key_blob(a).is_some());
        assert_eq!(key_blob(a), key_blob(b));
        assert_eq!(key_blob("ssh-rsa !!!"), None);
        assert_eq!(key_blob("ssh-rsa"), None);
    }

    #[test]
    fn given_invalid_tag_then_refused_before_any_request() {
        let c = Client::new(ApiConfig::new("http://127.0.0.1:9", "t"));
        for bad in ["", "a b", "a/b", "a?b"] {
            assert!(matches!(c.create_tag(bad), Err(Error::TagName(_))));
            assert!(matches!(c.delete_tag(bad), Err(Error::TagName(_))));
            assert!(matches!(c.tag_droplet(bad, 1), Err(Error::TagName(_))));
        }
        assert_eq!(c.calls(), 0);
    }
}
