//! How puzzles, answers, puzzle requests and "ready" notices travel in
//! DigitalOcean droplet tags.
//!
//! A tag is `^[a-zA-Z0-9_\-:]+$`, at most 255 characters; DigitalOcean keeps
//! the capitalization of a tag's *first* creation and lists a droplet's tags
//! in no fixed order. So every format here is lowercase and case-free (hex,
//! lowercase base32, codext user names), every decoder lowercases first, and
//! nothing depends on order:
//!
//! | what | tag |
//! | --- | --- |
//! | puzzle chunk | `codext:p:<8 hex id>:<2 hex index>:<2 hex count>:<data>` |
//! | answer | `codext:a:<answer text>` |
//! | request for a puzzle | `codext:q:<32 hex>` |
//! | user armed | `codext:r:<user>` |
//!
//! The decoders ignore anything that is not exactly in these formats: a
//! droplet's tags are written by whoever holds a token for the account, so
//! they are untrusted input (a puzzle is verified by its signature later, an
//! answer by its proof).

use crate::answer::Answer;
use crate::encoding::{hex, hex_decode};
use crate::keys::Fingerprint;
use codext_wire::UserName;
use std::collections::BTreeMap;

/// Prefix of every codext tag.
pub const TAG_PREFIX: &str = "codext:";
/// Longest tag DigitalOcean accepts.
pub const MAX_TAG_LEN: usize = 255;

const PUZZLE_PREFIX: &str = "codext:p:";
const ANSWER_PREFIX: &str = "codext:a:";
const REQUEST_PREFIX: &str = "codext:q:";
const READY_PREFIX: &str = "codext:r:";
/// `codext:p:` + 8 hex + `:` + 2 hex + `:` + 2 hex + `:`.
const PUZZLE_HEADER_LEN: usize = PUZZLE_PREFIX.len() + 8 + 1 + 2 + 1 + 2 + 1;
/// Puzzle text carried by one chunk tag.
pub const PUZZLE_CHUNK_LEN: usize = MAX_TAG_LEN - PUZZLE_HEADER_LEN;
/// Most chunks one puzzle can have (the count is two hex digits).
pub const MAX_PUZZLE_CHUNKS: usize = 255;

/// True when `tag` is a valid DigitalOcean tag name.
pub fn is_valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b':')
}

/// True for tags in codext's namespace (`codext:`, any capitalization).
pub fn is_codext_tag(tag: &str) -> bool {
    tag.get(..TAG_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(TAG_PREFIX))
}

/// The payload after `prefix` (matched ignoring case), lowercased.
fn payload(tag: &str, prefix: &str) -> Option<String> {
    let head = tag.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    Some(tag[prefix.len()..].to_ascii_lowercase())
}

fn is_puzzle_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Splits a puzzle's text form (`cdx1…`, see [`crate::Puzzle::to_text`])
/// into chunk tags of at most 255 characters, labelled with the first four
/// bytes of `puzzle_id` so several puzzles can share one droplet.
///
/// The text is lowercased (it is case-free). A text that is empty, holds a
/// character other than `a-z0-9`, or would need more than
/// [`MAX_PUZZLE_CHUNKS`] tags (about 58,000 characters, far beyond any valid
/// puzzle) gives no tags at all.
pub fn puzzle_tags(puzzle_text: &str, puzzle_id: &[u8; 16]) -> Vec<String> {
    let text = puzzle_text.trim().to_ascii_lowercase();
    if text.is_empty() || !text.bytes().all(is_puzzle_char) {
        return Vec::new();
    }
    let count = text.len().div_ceil(PUZZLE_CHUNK_LEN);
    if count > MAX_PUZZLE_CHUNKS {
        return Vec::new();
    }
    let id = hex(&puzzle_id[..4]);
    // The text is ASCII (checked above), so byte chunks are character chunks.
    text.as_bytes()
        .chunks(PUZZLE_CHUNK_LEN)
        .enumerate()
        .map(|(i, data)| {
            format!(
                "{PUZZLE_PREFIX}{id}:{i:02x}:{count:02x}:{}",
                String::from_utf8_lossy(data)
            )
        })
        .collect()
}

/// The chunks of one puzzle seen so far: its count and index -> data; `None`
/// once two chunks contradict each other.
type Group = Option<(u8, BTreeMap<u8, String>)>;

/// One parsed puzzle chunk.
struct Chunk {
    id: [u8; 4],
    index: u8,
    count: u8,
    data: String,
}

fn parse_chunk(tag: &str) -> Option<Chunk> {
    let rest = payload(tag, PUZZLE_PREFIX)?;
    let mut parts = rest.splitn(4, ':');
    let id: [u8; 4] = hex_decode(parts.next().filter(|p| p.len() == 8)?)?
        .try_into()
        .ok()?;
    let index = hex_decode(parts.next().filter(|p| p.len() == 2)?)?;
    let count = hex_decode(parts.next().filter(|p| p.len() == 2)?)?;
    let data = parts.next()?;
    let (index, count) = (*index.first()?, *count.first()?);
    if count == 0 || index >= count || data.is_empty() || !data.bytes().all(is_puzzle_char) {
        return None;
    }
    Some(Chunk {
        id,
        index,
        count,
        data: data.to_owned(),
    })
}

/// Reassembles every *complete* puzzle found among `tags`: chunks are
/// grouped by id and joined in index order, whatever order and
/// capitalization the tags come in. A group with a missing chunk, two
/// different counts, or two different texts for one index is left out, as
/// is every tag that is not a well-formed chunk. The texts come back
/// lowercase, ordered by id; [`crate::Puzzle::from_text`] still has to
/// parse and verify each.
pub fn collect_puzzles(tags: &[String]) -> Vec<String> {
    let mut groups: BTreeMap<[u8; 4], Group> = BTreeMap::new();
    for chunk in tags.iter().filter_map(|t| parse_chunk(t)) {
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
        // A BTreeMap iterates in key order, and len == count with every key
        // < count means the keys are exactly 0..count.
        .map(|(_, parts)| parts.into_values().collect::<String>())
        .collect()
}

/// `codext:a:<answer>`: 59 characters.
pub fn answer_tag(answer: &Answer) -> String {
    format!("{ANSWER_PREFIX}{answer}")
}

/// Every well-formed answer among `tags` (any order, any capitalization),
/// each once, in the order first seen; malformed ones are ignored.
pub fn answers(tags: &[String]) -> Vec<Answer> {
    let mut out: Vec<Answer> = Vec::new();
    for a in tags
        .iter()
        .filter_map(|t| payload(t, ANSWER_PREFIX))
        .filter_map(|p| Answer::parse(&p).ok())
    {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// `codext:q:<32 hex>`: an agent asks for a puzzle for the key whose
/// SHA-256 fingerprint starts with these 16 bytes.
pub fn request_tag(fp: &Fingerprint) -> String {
    format!("{REQUEST_PREFIX}{}", hex(&fp.0[..16]))
}

/// The fingerprint prefixes of every well-formed request among `tags`, each
/// once, in the order first seen.
pub fn requests(tags: &[String]) -> Vec<[u8; 16]> {
    let mut out: Vec<[u8; 16]> = Vec::new();
    for r in tags
        .iter()
        .filter_map(|t| payload(t, REQUEST_PREFIX))
        .filter(|p| p.len() == 32)
        .filter_map(|p| hex_decode(&p))
        .filter_map(|b| <[u8; 16]>::try_from(b).ok())
    {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

/// `codext:r:<user>`: the server has armed this user.
pub fn ready_tag(user: &UserName) -> String {
    format!("{READY_PREFIX}{user}")
}

/// True when `tags` hold the ready tag of `user` (in any capitalization).
pub fn is_ready(tags: &[String], user: &UserName) -> bool {
    tags.iter()
        .filter_map(|t| payload(t, READY_PREFIX))
        .any(|p| p == user.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::b32_encode;

    fn puzzle_text(bytes: usize, seed: u8) -> String {
        let data: Vec<u8> = (0..bytes)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        format!("cdx1{}", b32_encode(&data))
    }

    fn id(n: u8) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[0] = 0xa0 | n;
        id[3] = n;
        id[15] = 0xff;
        id
    }

    fn shuffled(mut tags: Vec<String>, seed: u64) -> Vec<String> {
        let mut x = seed | 1;
        for i in (1..tags.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            tags.swap(i, (x % (i as u64 + 1)) as usize);
        }
        tags
    }

    fn user(n: u8) -> UserName {
        UserName::from_random([n, 1, 2, 3, 4, n])
    }

    fn answer(n: u8) -> Answer {
        Answer {
            user: user(n),
            proof: [n; 16],
        }
    }

    fn assert_valid(tags: &[String]) {
        for t in tags {
            assert!(is_valid_tag(t), "{t:?} is not a valid DigitalOcean tag");
            assert!(t.len() <= MAX_TAG_LEN);
            assert!(is_codext_tag(t));
        }
    }

    #[test]
    fn given_puzzle_then_tags_round_trip() {
        let text = puzzle_text(1000, 1); // ~1600 chars, an RSA-3072/4096 puzzle
        let tags = puzzle_tags(&text, &id(1));
        assert_eq!(tags.len(), text.len().div_ceil(PUZZLE_CHUNK_LEN));
        assert_valid(&tags);
        assert!(tags[0].starts_with("codext:p:a1000001:00:"));
        assert_eq!(collect_puzzles(&tags), vec![text]);
    }

    #[test]
    fn given_8192_bit_sized_puzzle_then_every_tag_fits() {
        let text = puzzle_text(2130, 2);
        assert!(text.len() >= 3400);
        let tags = puzzle_tags(&text, &id(2));
        assert!(tags.len() <= 16);
        assert_valid(&tags);
        assert!(tags
            .iter()
            .take(tags.len() - 1)
            .all(|t| t.len() == MAX_TAG_LEN));
        assert_eq!(collect_puzzles(&tags), vec![text]);
    }

    #[test]
    fn given_shuffled_tags_then_puzzle_reassembled() {
        let text = puzzle_text(1000, 3);
        let tags = puzzle_tags(&text, &id(3));
        for seed in 1..20 {
            assert_eq!(
                collect_puzzles(&shuffled(tags.clone(), seed)),
                vec![text.clone()]
            );
        }
    }

    #[test]
    fn given_uppercased_or_mixed_case_tags_then_puzzle_reassembled() {
        let text = puzzle_text(1000, 4);
        let tags = puzzle_tags(&text, &id(4));
        let upper: Vec<String> = tags.iter().map(|t| t.to_ascii_uppercase()).collect();
        assert_eq!(collect_puzzles(&upper), vec![text.clone()]);
        let mixed: Vec<String> = tags
            .iter()
            .map(|t| {
                t.chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if i % 3 == 0 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect()
            })
            .collect();
        assert_eq!(collect_puzzles(&shuffled(mixed, 7)), vec![text]);
    }

    #[test]
    fn given_missing_chunk_then_puzzle_not_returned() {
        let text = puzzle_text(1000, 5);
        let mut tags = puzzle_tags(&text, &id(5));
        for i in 0..tags.len() {
            let mut partial = tags.clone();
            partial.remove(i);
            assert!(collect_puzzles(&partial).is_empty(), "chunk {i} missing");
        }
        tags.pop();
        assert!(collect_puzzles(&tags).is_empty());
    }

    #[test]
    fn given_two_interleaved_puzzles_and_foreign_tags_then_both_returned() {
        let (a, b) = (puzzle_text(1000, 6), puzzle_text(1200, 7));
        let mut tags = puzzle_tags(&a, &id(6));
        tags.extend(puzzle_tags(&b, &id(7)));
        tags.extend(
            [
                "web",
                "production",
                "codext:p:",
                "codext:p:zz000000:00:01:abc",
                "codext:p:a7000007:00:01",
                "codext:p:12345678:05:03:abc",
                "codext:p:12345678:00:00:abc",
                "codext:p:12345678:00:01:ab_c",
                "codext:a:nope",
                "other:p:a6000006:00:01:x",
            ]
            .map(String::from),
        );
        let mut expected = vec![a, b];
        expected.sort();
        let mut got = collect_puzzles(&shuffled(tags, 11));
        got.sort();
        assert_eq!(got, expected);
    }

    #[test]
    fn given_duplicate_or_conflicting_chunks_then_duplicates_ignored_conflicts_dropped() {
        let text = puzzle_text(1000, 8);
        let tags = puzzle_tags(&text, &id(8));
        let mut dup = tags.clone();
        dup.push(tags[1].to_ascii_uppercase());
        assert_eq!(collect_puzzles(&dup), vec![text.clone()]);

        let mut conflict = tags.clone();
        conflict.push(format!("{}x", &tags[1][..tags[1].len() - 1]));
        assert!(collect_puzzles(&conflict).is_empty());

        let mut recount = tags.clone();
        recount.push("codext:p:a8000008:00:09:abc".into());
        assert!(collect_puzzles(&recount).is_empty());
    }

    #[test]
    fn given_text_outside_the_tag_alphabet_then_no_tags() {
        assert!(puzzle_tags("", &id(1)).is_empty());
        assert!(puzzle_tags("cdx1:abc", &id(1)).is_empty());
        assert!(puzzle_tags("cdx1 abc", &id(1)).is_empty());
        assert!(puzzle_tags(&"a".repeat(PUZZLE_CHUNK_LEN * 256), &id(1)).is_empty());
        // Upper case input is lowered.
        assert_eq!(
            collect_puzzles(&puzzle_tags("CDX1ABC", &id(1))),
            vec!["cdx1abc".to_string()]
        );
    }

    #[test]
    fn given_answers_then_round_trip_in_any_case_and_malformed_ignored() {
        let tags: Vec<String> = vec![
            answer_tag(&answer(1)),
            answer_tag(&answer(2)).to_ascii_uppercase(),
            answer_tag(&answer(1)).to_ascii_uppercase(),
            "codext:a:user-0123".into(),
            "codext:a:".into(),
            "codext:a:user-0123456789ab-00112233445566778899aabbccddeefg".into(),
            "codext:q:00".into(),
            "web".into(),
        ];
        assert_valid(&tags[..2]);
        assert_eq!(answer_tag(&answer(1)).len(), 59);
        assert_eq!(answers(&tags), vec![answer(1), answer(2)]);
        assert!(answers(&[]).is_empty());
    }

    #[test]
    fn given_request_tags_then_fingerprint_prefixes_round_trip() {
        let fp = Fingerprint([0xab; 32]);
        let mut other = [0u8; 32];
        other[0] = 1;
        let other = Fingerprint(other);
        let tags = vec![
            request_tag(&fp),
            request_tag(&other).to_ascii_uppercase(),
            request_tag(&fp),
            "codext:q:abcd".into(),
            format!("codext:q:{}", "zz".repeat(16)),
        ];
        assert_valid(&tags[..2]);
        assert_eq!(tags[0], format!("codext:q:{}", "ab".repeat(16)));
        let mut first = [0u8; 16];
        first[0] = 1;
        assert_eq!(requests(&tags), vec![[0xab; 16], first]);
    }

    #[test]
    fn given_ready_tag_then_only_that_user_is_ready() {
        let tags = vec![ready_tag(&user(1)).to_ascii_uppercase(), "web".into()];
        assert_valid(&tags[..1]);
        assert!(is_ready(&tags, &user(1)));
        assert!(!is_ready(&tags, &user(2)));
        assert!(!is_ready(&[answer_tag(&answer(1))], &user(1)));
    }

    #[test]
    fn given_prefixes_then_codext_tags_recognised_in_any_case() {
        assert!(is_codext_tag("codext:p:x"));
        assert!(is_codext_tag("CODEXT:a:x"));
        assert!(is_codext_tag("Codext:"));
        assert!(!is_codext_tag("codext"));
        assert!(!is_codext_tag("codex:p"));
        assert!(!is_codext_tag("é"));
        assert!(!is_valid_tag(""));
        assert!(!is_valid_tag(&"a".repeat(256)));
        assert!(!is_valid_tag("a b"));
    }
}
