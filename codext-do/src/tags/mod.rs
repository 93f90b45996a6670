//! codext in DigitalOcean tag names: the channel formats ([`v3`], and
//! [`v2`] still served to older agents), and what they share — the tag
//! name rules, codext's prefixes, and the chunks a puzzle is split into.
//!
//! These are the DigitalOcean channel's business alone: the protocol
//! (`codext-core`) carries a puzzle as bytes or text, and only this crate
//! knows that DigitalOcean stores it in tags. The formats are specified in
//! `docs/PROTOCOL.md`; every decoder here reads untrusted input.

use std::collections::BTreeMap;

pub mod v2;
pub mod v3;

pub use v2::Space;
pub use v3::Space3;

/// Prefix of every v2 codext tag.
pub const V2_PREFIX: &str = "codext2:";
/// Prefix of every v3 codext tag.
pub const V3_PREFIX: &str = "codext3:";
/// Prefix of the v1 tags (no droplet in the name; never read, never
/// deleted account-wide, only detached from the server's own droplet).
pub const LEGACY_PREFIX: &str = "codext:";
/// Longest tag DigitalOcean accepts.
pub const MAX_TAG_LEN: usize = 255;

/// True when `tag` is a valid DigitalOcean tag name.
pub fn is_valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b':')
}

/// True when `tag` starts with `prefix` in any capitalization.
pub(crate) fn has_prefix(tag: &str, prefix: &str) -> bool {
    tag.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// True for tags in codext's namespaces (v3 `codext3:`, v2 `codext2:` or v1 `codext:`,
/// any capitalization), whatever droplet they name.
pub fn is_codext_tag(tag: &str) -> bool {
    has_prefix(tag, V2_PREFIX) || has_prefix(tag, LEGACY_PREFIX) || has_prefix(tag, V3_PREFIX)
}

/// The chunks of one puzzle seen so far: its count and index -> data; `None`
/// once two chunks contradict each other.
type Group = Option<(u8, BTreeMap<u8, String>)>;

/// One parsed puzzle chunk (of format v2 or v3).
pub(crate) struct Chunk {
    pub(crate) id: [u8; 4],
    pub(crate) index: u8,
    pub(crate) count: u8,
    pub(crate) data: String,
}

impl Chunk {
    /// A chunk, if `index` is below a non-zero `count` and `data` is
    /// non-empty and made of `valid` characters.
    pub(crate) fn checked(
        id: [u8; 4],
        index: u8,
        count: u8,
        data: &str,
        valid: fn(u8) -> bool,
    ) -> Option<Chunk> {
        (count > 0 && index < count && !data.is_empty() && data.bytes().all(valid)).then(|| Chunk {
            id,
            index,
            count,
            data: data.to_owned(),
        })
    }
}

/// Groups `chunks` by puzzle id and joins each complete group's data in
/// index order, ordered by id. A group with a missing chunk, two different
/// counts, or two different texts for one index is left out.
pub(crate) fn join_chunks(chunks: impl Iterator<Item = Chunk>) -> Vec<String> {
    let mut groups: BTreeMap<[u8; 4], Group> = BTreeMap::new();
    for chunk in chunks {
        let entry = groups
            .entry(chunk.id)
            .or_insert_with(|| Some((chunk.count, BTreeMap::new())));
        let consistent = match entry {
            Some((count, parts)) if *count == chunk.count => match parts.get(&chunk.index) {
                Some(existing) => *existing == chunk.data,
                None => {
                    parts.insert(chunk.index, chunk.data);
                    true
                }
            },
            _ => false,
        };
        if !consistent {
            *entry = None;
        }
    }
    groups
        .into_values()
        .flatten()
        .filter(|(count, parts)| parts.len() == usize::from(*count))
        // A BTreeMap iterates in key order, and len == count with every
        // key < count means the keys are exactly 0..count.
        .map(|(_, parts)| parts.into_values().collect::<String>())
        .collect()
}
