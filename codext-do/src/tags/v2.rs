//! How puzzles, answers, puzzle requests and "ready" notices travel in
//! DigitalOcean droplet tags: channel format **v2**, where every tag name
//! carries the id of the droplet it belongs to, so two codext servers in
//! one account never share a tag (v1's `codext:q:<key>` had the same name
//! on every droplet, and deleting it account-wide swallowed another
//! server's request).
//!
//! A tag is `^[a-zA-Z0-9_\-:]+$`, at most 255 characters; DigitalOcean keeps
//! the capitalization of a tag's *first* creation and lists a droplet's tags
//! in no fixed order. So every format here is lowercase and case-free (hex,
//! decimal, lowercase base32, codext user names), every decoder lowercases
//! first, and nothing depends on order. `<d>` is the droplet id in decimal,
//! no leading zero:
//!
//! | what | tag |
//! | --- | --- |
//! | puzzle chunk | `codext2:<d>:p:<8 hex id>:<2 hex index>:<2 hex count>:<data>` |
//! | answer | `codext2:<d>:a:<answer text>` |
//! | request for a puzzle | `codext2:<d>:q:<32 hex>` |
//! | user armed | `codext2:<d>:r:<user>` |
//!
//! The decoders of a [`Space`] read only tags of that droplet's namespace
//! and ignore anything that is not exactly in these formats: a droplet's
//! tags are written by whoever holds a token for the account, so they are
//! untrusted input (a puzzle is verified by its signature later, an answer
//! by its proof).

use super::{has_prefix, join_chunks, Chunk, MAX_TAG_LEN};
use codext_core::encoding::{hex, hex_decode};
use codext_core::{Answer, Fingerprint};
use codext_wire::UserName;

/// Prefix of every v2 codext tag.
pub const TAG_PREFIX: &str = super::V2_PREFIX;
/// Most chunks one puzzle can have (the count is two hex digits).
pub const MAX_PUZZLE_CHUNKS: usize = 255;
/// `p:` + 8 hex + `:` + 2 hex + `:` + 2 hex + `:`, after the namespace.
const PUZZLE_HEADER_LEN: usize = 2 + 8 + 1 + 2 + 1 + 2 + 1;

fn is_puzzle_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// The tag namespace of one droplet: `codext2:<droplet id>:`. A tag in it
/// is provably this droplet's (droplet ids are unique), which is what lets
/// its server delete the tag account-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    prefix: String,
}

impl Space {
    /// The namespace of droplet `droplet`.
    pub fn new(droplet: u64) -> Space {
        Space {
            prefix: format!("{TAG_PREFIX}{droplet}:"),
        }
    }

    /// `codext2:<droplet>:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// True when `tag` is in this droplet's namespace (any capitalization).
    pub fn owns(&self, tag: &str) -> bool {
        has_prefix(tag, &self.prefix)
    }

    /// The payload after `<namespace><kind>:`, lowercased.
    fn payload(&self, tag: &str, kind: char) -> Option<String> {
        if !self.owns(tag) {
            return None;
        }
        let rest = &tag[self.prefix.len()..];
        let mut chars = rest.chars();
        let k = chars.next()?.to_ascii_lowercase();
        if k != kind || chars.next()? != ':' {
            return None;
        }
        Some(rest[2..].to_ascii_lowercase())
    }

    /// Puzzle text carried by one chunk tag of this droplet.
    pub fn chunk_len(&self) -> usize {
        MAX_TAG_LEN.saturating_sub(self.prefix.len() + PUZZLE_HEADER_LEN)
    }

    /// Splits a puzzle's text form (`cdx1…`, see [`codext_core::Puzzle::to_text`])
    /// into chunk tags of at most 255 characters, labelled with the first
    /// four bytes of `puzzle_id` so several puzzles can share one droplet.
    ///
    /// The text is lowercased (it is case-free). A text that is empty,
    /// holds a character other than `a-z0-9`, or would need more than
    /// [`MAX_PUZZLE_CHUNKS`] tags (about 52,000 characters, far beyond any
    /// valid puzzle) gives no tags at all.
    pub fn puzzle_tags(&self, puzzle_text: &str, puzzle_id: &[u8; 16]) -> Vec<String> {
        let text = puzzle_text.trim().to_ascii_lowercase();
        let chunk = self.chunk_len();
        if chunk == 0 || text.is_empty() || !text.bytes().all(is_puzzle_char) {
            return Vec::new();
        }
        let count = text.len().div_ceil(chunk);
        if count > MAX_PUZZLE_CHUNKS {
            return Vec::new();
        }
        let id = hex(&puzzle_id[..4]);
        // The text is ASCII (checked above), so byte chunks are character chunks.
        text.as_bytes()
            .chunks(chunk)
            .enumerate()
            .map(|(i, data)| {
                format!(
                    "{}p:{id}:{i:02x}:{count:02x}:{}",
                    self.prefix,
                    String::from_utf8_lossy(data)
                )
            })
            .collect()
    }

    fn parse_chunk(&self, tag: &str) -> Option<Chunk> {
        let rest = self.payload(tag, 'p')?;
        let mut parts = rest.splitn(4, ':');
        let id: [u8; 4] = hex_decode(parts.next().filter(|p| p.len() == 8)?)?
            .try_into()
            .ok()?;
        let index = hex_decode(parts.next().filter(|p| p.len() == 2)?)?;
        let count = hex_decode(parts.next().filter(|p| p.len() == 2)?)?;
        let data = parts.next()?;
        Chunk::checked(id, *index.first()?, *count.first()?, data, is_puzzle_char)
    }

    /// The 4-byte puzzle id of a well-formed chunk tag of this droplet.
    pub fn puzzle_tag_id(&self, tag: &str) -> Option<[u8; 4]> {
        self.parse_chunk(tag).map(|c| c.id)
    }

    /// Reassembles every *complete* puzzle of this droplet found among
    /// `tags`: chunks are grouped by id and joined in index order, whatever
    /// order and capitalization the tags come in. A group with a missing
    /// chunk, two different counts, or two different texts for one index is
    /// left out, as is every tag that is not a well-formed chunk of this
    /// droplet. The texts come back lowercase, ordered by id;
    /// [`codext_core::Puzzle::from_text`] still has to parse and verify each.
    pub fn collect_puzzles(&self, tags: &[String]) -> Vec<String> {
        join_chunks(tags.iter().filter_map(|t| self.parse_chunk(t)))
    }

    /// `codext2:<d>:a:<answer>`.
    pub fn answer_tag(&self, answer: &Answer) -> String {
        format!("{}a:{answer}", self.prefix)
    }

    /// The answer in one tag of this droplet, if it is a well-formed one.
    pub fn answer_in(&self, tag: &str) -> Option<Answer> {
        Answer::parse(&self.payload(tag, 'a')?).ok()
    }

    /// Every well-formed answer of this droplet among `tags` (any order,
    /// any capitalization), each once, in the order first seen.
    pub fn answers(&self, tags: &[String]) -> Vec<Answer> {
        let mut out: Vec<Answer> = Vec::new();
        for a in tags.iter().filter_map(|t| self.answer_in(t)) {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }

    /// `codext2:<d>:q:<32 hex>`: an agent asks this droplet's server for a
    /// puzzle for the key whose SHA-256 fingerprint starts with these 16
    /// bytes.
    pub fn request_tag(&self, fp: &Fingerprint) -> String {
        format!("{}q:{}", self.prefix, hex(&fp.0[..16]))
    }

    /// The fingerprint prefix in one tag of this droplet, if it is a
    /// well-formed request.
    pub fn request_in(&self, tag: &str) -> Option<[u8; 16]> {
        let p = self.payload(tag, 'q').filter(|p| p.len() == 32)?;
        <[u8; 16]>::try_from(hex_decode(&p)?).ok()
    }

    /// The fingerprint prefixes of every well-formed request of this
    /// droplet among `tags`, each once, in the order first seen.
    pub fn requests(&self, tags: &[String]) -> Vec<[u8; 16]> {
        let mut out: Vec<[u8; 16]> = Vec::new();
        for r in tags.iter().filter_map(|t| self.request_in(t)) {
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }

    /// `codext2:<d>:r:<user>`: the server has armed this user.
    pub fn ready_tag(&self, user: &UserName) -> String {
        format!("{}r:{user}", self.prefix)
    }

    /// The user a ready tag of this droplet names (not yet checked as a
    /// user name).
    pub fn ready_user(&self, tag: &str) -> Option<String> {
        self.payload(tag, 'r')
    }

    /// True when `tags` hold this droplet's ready tag of `user` (in any
    /// capitalization).
    pub fn is_ready(&self, tags: &[String], user: &UserName) -> bool {
        tags.iter()
            .filter_map(|t| self.ready_user(t))
            .any(|p| p == user.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{is_codext_tag, is_valid_tag};
    use super::*;
    use codext_core::encoding::b32_encode;

    const D: u64 = 4242;

    fn sp() -> Space {
        Space::new(D)
    }

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
        let tags = sp().puzzle_tags(&text, &id(1));
        assert_eq!(tags.len(), text.len().div_ceil(sp().chunk_len()));
        assert_valid(&tags);
        assert!(tags[0].starts_with("codext2:4242:p:a1000001:00:"));
        assert_eq!(sp().collect_puzzles(&tags), vec![text]);
    }

    #[test]
    fn given_8192_bit_sized_puzzle_then_every_tag_fits() {
        let text = puzzle_text(2130, 2);
        assert!(text.len() >= 3400);
        let tags = sp().puzzle_tags(&text, &id(2));
        assert!(tags.len() <= 16);
        assert_valid(&tags);
        assert!(tags
            .iter()
            .take(tags.len() - 1)
            .all(|t| t.len() == MAX_TAG_LEN));
        assert_eq!(sp().collect_puzzles(&tags), vec![text]);
    }

    #[test]
    fn given_shuffled_tags_then_puzzle_reassembled() {
        let text = puzzle_text(1000, 3);
        let tags = sp().puzzle_tags(&text, &id(3));
        for seed in 1..20 {
            assert_eq!(
                sp().collect_puzzles(&shuffled(tags.clone(), seed)),
                vec![text.clone()]
            );
        }
    }

    #[test]
    fn given_uppercased_or_mixed_case_tags_then_puzzle_reassembled() {
        let text = puzzle_text(1000, 4);
        let tags = sp().puzzle_tags(&text, &id(4));
        let upper: Vec<String> = tags.iter().map(|t| t.to_ascii_uppercase()).collect();
        assert_eq!(sp().collect_puzzles(&upper), vec![text.clone()]);
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
        assert_eq!(sp().collect_puzzles(&shuffled(mixed, 7)), vec![text]);
    }

    #[test]
    fn given_missing_chunk_then_puzzle_not_returned() {
        let text = puzzle_text(1000, 5);
        let mut tags = sp().puzzle_tags(&text, &id(5));
        for i in 0..tags.len() {
            let mut partial = tags.clone();
            partial.remove(i);
            assert!(
                sp().collect_puzzles(&partial).is_empty(),
                "chunk {i} missing"
            );
        }
        tags.pop();
        assert!(sp().collect_puzzles(&tags).is_empty());
    }

    #[test]
    fn given_two_interleaved_puzzles_and_foreign_tags_then_both_returned() {
        let (a, b) = (puzzle_text(1000, 6), puzzle_text(1200, 7));
        let mut tags = sp().puzzle_tags(&a, &id(6));
        tags.extend(sp().puzzle_tags(&b, &id(7)));
        tags.extend(
            [
                "web",
                "production",
                "codext2:4242:p:",
                "codext2:4242:p:zz000000:00:01:abc",
                "codext2:4242:p:a7000007:00:01",
                "codext2:4242:p:12345678:05:03:abc",
                "codext2:4242:p:12345678:00:00:abc",
                "codext2:4242:p:12345678:00:01:ab_c",
                "codext2:4242:a:nope",
                "other:p:a6000006:00:01:x",
            ]
            .map(String::from),
        );
        let mut expected = vec![a, b];
        expected.sort();
        let mut got = sp().collect_puzzles(&shuffled(tags, 11));
        got.sort();
        assert_eq!(got, expected);
    }

    #[test]
    fn given_duplicate_or_conflicting_chunks_then_duplicates_ignored_conflicts_dropped() {
        let text = puzzle_text(1000, 8);
        let tags = sp().puzzle_tags(&text, &id(8));
        let mut dup = tags.clone();
        dup.push(tags[1].to_ascii_uppercase());
        assert_eq!(sp().collect_puzzles(&dup), vec![text.clone()]);

        let mut conflict = tags.clone();
        conflict.push(format!("{}x", &tags[1][..tags[1].len() - 1]));
        assert!(sp().collect_puzzles(&conflict).is_empty());

        let mut recount = tags.clone();
        recount.push("codext2:4242:p:a8000008:00:09:abc".into());
        assert!(sp().collect_puzzles(&recount).is_empty());
    }

    #[test]
    fn given_text_outside_the_tag_alphabet_then_no_tags() {
        assert!(sp().puzzle_tags("", &id(1)).is_empty());
        assert!(sp().puzzle_tags("cdx1:abc", &id(1)).is_empty());
        assert!(sp().puzzle_tags("cdx1 abc", &id(1)).is_empty());
        assert!(sp()
            .puzzle_tags(&"a".repeat(sp().chunk_len() * 256), &id(1))
            .is_empty());
        // Upper case input is lowered.
        assert_eq!(
            sp().collect_puzzles(&sp().puzzle_tags("CDX1ABC", &id(1))),
            vec!["cdx1abc".to_string()]
        );
    }

    #[test]
    fn given_answers_then_round_trip_in_any_case_and_malformed_ignored() {
        let tags: Vec<String> = vec![
            sp().answer_tag(&answer(1)),
            sp().answer_tag(&answer(2)).to_ascii_uppercase(),
            sp().answer_tag(&answer(1)).to_ascii_uppercase(),
            "codext2:4242:a:user-0123".into(),
            "codext2:4242:a:".into(),
            "codext2:4242:a:user-0123456789ab-00112233445566778899aabbccddeefg".into(),
            "codext2:4242:q:00".into(),
            "web".into(),
        ];
        assert_valid(&tags[..2]);
        assert_eq!(
            sp().answer_tag(&answer(1)).len(),
            "codext2:4242:a:".len() + 50
        );
        assert_eq!(sp().answers(&tags), vec![answer(1), answer(2)]);
        assert!(sp().answers(&[]).is_empty());
    }

    #[test]
    fn given_request_tags_then_fingerprint_prefixes_round_trip() {
        let fp = Fingerprint([0xab; 32]);
        let mut other = [0u8; 32];
        other[0] = 1;
        let other = Fingerprint(other);
        let tags = vec![
            sp().request_tag(&fp),
            sp().request_tag(&other).to_ascii_uppercase(),
            sp().request_tag(&fp),
            "codext2:4242:q:abcd".into(),
            format!("codext2:4242:q:{}", "zz".repeat(16)),
        ];
        assert_valid(&tags[..2]);
        assert_eq!(tags[0], format!("codext2:4242:q:{}", "ab".repeat(16)));
        let mut first = [0u8; 16];
        first[0] = 1;
        assert_eq!(sp().requests(&tags), vec![[0xab; 16], first]);
    }

    #[test]
    fn given_ready_tag_then_only_that_user_is_ready() {
        let tags = vec![sp().ready_tag(&user(1)).to_ascii_uppercase(), "web".into()];
        assert_valid(&tags[..1]);
        assert!(sp().is_ready(&tags, &user(1)));
        assert!(!sp().is_ready(&tags, &user(2)));
        assert!(!sp().is_ready(&[sp().answer_tag(&answer(1))], &user(1)));
    }

    #[test]
    fn given_prefixes_then_codext_tags_recognised_in_any_case() {
        assert!(is_codext_tag("codext2:4242:p:x"));
        assert!(is_codext_tag("CODEXT:a:x"));
        assert!(is_codext_tag("Codext:"));
        assert!(!is_codext_tag("codext"));
        assert!(!is_codext_tag("codex:p"));
        assert!(!is_codext_tag("é"));
        assert!(!is_valid_tag(""));
        assert!(!is_valid_tag(&"a".repeat(256)));
        assert!(!is_valid_tag("a b"));
    }

    #[test]
    fn given_tags_of_two_droplets_then_each_space_reads_only_its_own() {
        let (a, b) = (Space::new(12), Space::new(123));
        let text = puzzle_text(1000, 9);
        let mut tags = a.puzzle_tags(&text, &id(9));
        tags.push(a.answer_tag(&answer(1)));
        tags.push(a.request_tag(&Fingerprint([7; 32])));
        tags.push(a.ready_tag(&user(1)));
        // "codext2:12:" must not be read as a prefix of "codext2:123:".
        assert!(tags.iter().all(|t| a.owns(t) && !b.owns(t)));
        assert!(b.collect_puzzles(&tags).is_empty());
        assert!(b.answers(&tags).is_empty());
        assert!(b.requests(&tags).is_empty());
        assert!(!b.is_ready(&tags, &user(1)));
        assert_eq!(a.collect_puzzles(&tags), vec![text]);
        assert_eq!(a.answers(&tags), vec![answer(1)]);
        assert!(a.is_ready(&tags, &user(1)));
        // v1 tags belong to no droplet: no space reads them.
        let v1 = vec!["codext:q:".to_string() + &"ab".repeat(16)];
        assert!(a.requests(&v1).is_empty() && !a.owns(&v1[0]) && is_codext_tag(&v1[0]));
        // A droplet id of 20 digits still leaves room for puzzle data.
        assert!(Space::new(u64::MAX).chunk_len() > 190);
    }
}
