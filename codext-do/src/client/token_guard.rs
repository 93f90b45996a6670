//! Keeping the token where it belongs: requests go only to the API's own
//! origin, and no quoted text carries the token.

/// Longest error body quoted in an error.
pub(super) const MAX_QUOTED: usize = 200;

/// `scheme://authority` of an http(s) URL, lowercased.
pub(super) fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// `text` with every occurrence of the token replaced, and cut short.
pub(super) fn scrub(text: &str, token: &str) -> String {
    let text = if token.len() >= 4 {
        text.replace(token, "***")
    } else {
        text.to_owned()
    };
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_QUOTED)
        .collect();
    if text.chars().count() > MAX_QUOTED {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_urls_then_origin_is_scheme_and_authority() {
        assert_eq!(
            origin_of("https://API.digitalocean.com/v2/account/keys?page=2").as_deref(),
            Some("https://api.digitalocean.com")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080?x").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_ne!(
            origin_of("https://api.digitalocean.com.evil.example/v2"),
            origin_of("https://api.digitalocean.com")
        );
        assert_eq!(origin_of("https://user@evil.example/"), None);
        assert_eq!(origin_of("ftp://host/"), None);
        assert_eq!(origin_of("/v2/account/keys"), None);
        assert_eq!(origin_of("https:///x"), None);
    }

    #[test]
    fn given_token_in_text_then_scrubbed_and_cut() {
        assert_eq!(scrub("a secret-token b", "secret-token"), "a *** b");
        assert_eq!(scrub("abc", ""), "abc");
        assert_eq!(scrub("line\nbreak", ""), "linebreak");
        let long = "x".repeat(500);
        assert_eq!(scrub(&long, "").chars().count(), MAX_QUOTED + 1);
    }
}
