//! Channel format **v3**: how puzzles, answers and puzzle requests travel
//! in DigitalOcean tags with fewer API calls than v2 ([`super::v2`]).
//! Requests and answers are attached to the server's droplet; a puzzle's
//! chunk tags are attached to nothing (the agent reads them in the
//! account's tag listing), so each costs two calls (create, delete) where
//! a v2 chunk costs three; v3 also carries the same puzzle envelope in
//! fewer tags, and drops the ready notice:
//!
//! | what | tag |
//! | --- | --- |
//! | puzzle chunk | `codext3:<d>:p<8 hex id><i><n>:<base64url data>` |
//! | answer | `codext3:<d>:a:<answer text>` |
//! | request for a puzzle | `codext3:<d>:q:<32 hex>`, or `…:q:<32 hex>:<profile>` |
//!
//! * The chunk data is the puzzle's binary envelope
//!   ([`codext_core::Puzzle::to_bytes`]) in unpadded base64url (6 bits a
//!   character against base32's 5), and the chunk header is 12 characters
//!   (`p`, the first 4 bytes of the puzzle id in hex, the index and the
//!   count as one base-36 digit each, `:`): a 3072-bit agent key and a
//!   4096-bit server key make 1,348 characters, six tags where v2 needs
//!   eight.
//! * base64url is not case-free, and DigitalOcean keeps the capitalization
//!   of a tag's *first* creation. It is safe here because a chunk's name
//!   holds fresh ciphertext and signature bytes: no tag of that name can
//!   exist before the server creates it (nobody can know the bytes), and
//!   the server checks that the API reports back exactly the name it sent
//!   and fails the publication otherwise. Everything outside the data (prefix, hex,
//!   base-36, answers, requests) is lowercase and read case-insensitively.
//! * **No ready notice**: the server deletes the answer tag once the helper
//!   took the answer, and a puzzle's chunk tags once it is no longer
//!   waiting for an answer; the agent may log in when both its answer and
//!   its puzzle's chunks are gone ([`Space3::accepted`]). (v2 spent three
//!   calls on `codext2:<d>:r:<user>` and a pass after the login to remove
//!   it.)
//!
//! As in v2, every tag names its droplet (`<d>`, decimal), so a tag in the
//! namespace `codext3:<d>:` is provably that droplet's, and the decoders
//! read only their droplet's tags and ignore anything malformed (a droplet's
//! tags are written by whoever holds a token: untrusted input).

use super::{has_prefix, join_chunks, Chunk, MAX_TAG_LEN};
use codext_core::encoding::{b32_decode, b32_encode, hex, hex_decode};
use codext_core::puzzle::TEXT_PREFIX;
use codext_core::{Answer, Fingerprint, ProfileName};
use data_encoding::BASE64URL_NOPAD;

/// Prefix of every v3 codext tag.
pub const TAG_PREFIX: &str = super::V3_PREFIX;
/// Most chunks one puzzle can have (the count is one base-36 digit).
pub const MAX_PUZZLE_CHUNKS: usize = 35;
/// `p` + 8 hex + index + count + `:`, after the namespace.
const PUZZLE_HEADER_LEN: usize = 1 + 8 + 1 + 1 + 1;

fn base36(n: usize) -> Option<char> {
    char::from_digit(u32::try_from(n).ok()?, 36)
}

fn from_base36(c: char) -> Option<u8> {
    c.to_digit(36).and_then(|d| u8::try_from(d).ok())
}

fn is_data_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The v3 tag namespace of one droplet: `codext3:<droplet id>:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space3 {
    prefix: String,
}

impl Space3 {
    /// The namespace of droplet `droplet`.
    pub fn new(droplet: u64) -> Space3 {
        Space3 {
            prefix: format!("{TAG_PREFIX}{droplet}:"),
        }
    }

    /// `codext3:<droplet>:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// True when `tag` is in this droplet's v3 namespace (any
    /// capitalization).
    pub fn owns(&self, tag: &str) -> bool {
        has_prefix(tag, &self.prefix)
    }

    /// The part after the namespace, as written (not lowercased).
    fn rest<'a>(&self, tag: &'a str) -> Option<&'a str> {
        if self.owns(tag) {
            tag.get(self.prefix.len()..)
        } else {
            None
        }
    }

    /// The lowercased payload after `<namespace><kind>:`.
    fn payload(&self, tag: &str, kind: char) -> Option<String> {
        let rest = self.rest(tag)?;
        let mut chars = rest.chars();
        if chars.next()?.to_ascii_lowercase() != kind || chars.next()? != ':' {
            return None;
        }
        Some(rest.get(2..)?.to_ascii_lowercase())
    }

    /// Data characters one chunk tag of this droplet carries.
    pub fn chunk_len(&self) -> usize {
        MAX_TAG_LEN.saturating_sub(self.prefix.len() + PUZZLE_HEADER_LEN)
    }

    /// Splits a puzzle's text form (`cdx1…`, [`codext_core::Puzzle::to_text`])
    /// into v3 chunk tags labelled with the first four bytes of
    /// `puzzle_id`. A text that is not a `cdx1` base32 envelope, or would
    /// need more than [`MAX_PUZZLE_CHUNKS`] tags, gives no tags at all.
    pub fn puzzle_tags(&self, puzzle_text: &str, puzzle_id: &[u8; 16]) -> Vec<String> {
        let text = puzzle_text.trim().to_ascii_lowercase();
        let Some(bytes) = text
            .strip_prefix(TEXT_PREFIX)
            .filter(|b| !b.is_empty())
            .and_then(b32_decode)
        else {
            return Vec::new();
        };
        let data = BASE64URL_NOPAD.encode(&bytes);
        let chunk = self.chunk_len();
        if chunk == 0 {
            return Vec::new();
        }
        let count = data.len().div_ceil(chunk);
        let Some(n) = base36(count).filter(|_| count <= MAX_PUZZLE_CHUNKS) else {
            return Vec::new();
        };
        let id = hex(&puzzle_id[..4]);
        data.as_bytes()
            .chunks(chunk)
            .enumerate()
            .filter_map(|(i, part)| {
                Some(format!(
                    "{}p{id}{}{n}:{}",
                    self.prefix,
                    base36(i)?,
                    String::from_utf8_lossy(part)
                ))
            })
            .collect()
    }

    fn parse_chunk(&self, tag: &str) -> Option<Chunk> {
        let rest = self.rest(tag)?;
        let (head, data) = rest.split_once(':')?;
        let head = head.to_ascii_lowercase();
        let mut chars = head.chars();
        if chars.next()? != 'p' || head.len() != PUZZLE_HEADER_LEN - 1 {
            return None;
        }
        let id: [u8; 4] = hex_decode(head.get(1..9)?)?.try_into().ok()?;
        let mut tail = head.get(9..)?.chars();
        let index = from_base36(tail.next()?)?;
        let count = from_base36(tail.next()?)?;
        Chunk::checked(id, index, count, data, is_data_char)
    }

    /// The 4-byte puzzle id of a well-formed chunk tag of this droplet.
    pub fn puzzle_tag_id(&self, tag: &str) -> Option<[u8; 4]> {
        self.parse_chunk(tag).map(|c| c.id)
    }

    /// Reassembles every complete puzzle of this droplet among `tags`, in
    /// any order, and returns each in the v1 text form (`cdx1…`, which
    /// [`codext_core::Puzzle::from_text`] parses and the agent then verifies). A
    /// group with a missing chunk, two counts, two different texts for one
    /// index, or data that is not base64url is left out.
    pub fn collect_puzzles(&self, tags: &[String]) -> Vec<String> {
        join_chunks(tags.iter().filter_map(|t| self.parse_chunk(t)))
            .into_iter()
            .filter_map(|data| {
                let bytes = BASE64URL_NOPAD.decode(data.as_bytes()).ok()?;
                Some(format!("{TEXT_PREFIX}{}", b32_encode(&bytes)))
            })
            .collect()
    }

    /// `codext3:<d>:a:<answer>`.
    pub fn answer_tag(&self, answer: &Answer) -> String {
        format!("{}a:{answer}", self.prefix)
    }

    /// The answer in one tag of this droplet, if it is a well-formed one.
    pub fn answer_in(&self, tag: &str) -> Option<Answer> {
        Answer::parse(&self.payload(tag, 'a')?).ok()
    }

    /// `codext3:<d>:q:<32 hex>`: a puzzle, please, for the key whose
    /// SHA-256 fingerprint starts with these 16 bytes; for a
    /// grant of another profile than `shell`, `codext3:<d>:q:<32 hex>:<profile>`
    /// (a request of an earlier agent names none: `shell`).
    pub fn request_tag(&self, fp: &Fingerprint, profile: &ProfileName) -> String {
        if profile.is_shell() {
            format!("{}q:{}", self.prefix, hex(&fp.0[..16]))
        } else {
            format!("{}q:{}:{profile}", self.prefix, hex(&fp.0[..16]))
        }
    }

    /// The fingerprint prefix and the profile asked for of a well-formed
    /// request tag of this droplet.
    pub fn request_in(&self, tag: &str) -> Option<([u8; 16], ProfileName)> {
        let p = self.payload(tag, 'q')?;
        let (fp, profile) = match p.split_once(':') {
            None => (p.as_str(), ProfileName::shell()),
            // `…:shell` is not how a shell request is written: one request,
            // one tag name.
            Some((fp, name)) => (fp, ProfileName::parse(name).ok().filter(|n| !n.is_shell())?),
        };
        if fp.len() != 32 {
            return None;
        }
        Some((<[u8; 16]>::try_from(hex_decode(fp)?).ok()?, profile))
    }

    /// True when the server has taken `answer` to the puzzle `puzzle_id`:
    /// neither the answer's tag nor any chunk of that puzzle is among
    /// `tags` (the agent posted the answer before reading them, so its
    /// absence means the server removed it).
    pub fn accepted(&self, tags: &[String], answer: &Answer, puzzle_id: &[u8; 16]) -> bool {
        let id = &puzzle_id[..4];
        !tags.iter().any(|t| {
            self.answer_in(t).is_some_and(|a| a == *answer)
                || self.puzzle_tag_id(t).is_some_and(|c| c == id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::is_valid_tag;
    use codext_wire::UserName;

    const D: u64 = 412000001;

    fn sp() -> Space3 {
        Space3::new(D)
    }

    fn text(bytes: usize, seed: u8) -> String {
        let data: Vec<u8> = (0..bytes)
            .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
            .collect();
        format!("cdx1{}", b32_encode(&data))
    }

    fn id(n: u8) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[0] = 0xb0 | n;
        id[3] = n;
        id
    }

    fn answer(n: u8) -> Answer {
        Answer {
            user: UserName::from_random([n, 2, 3, 4, 5, n]),
            proof: [n; 16],
        }
    }

    #[test]
    fn given_a_3072_4096_bit_sized_puzzle_then_six_valid_tags_that_round_trip_in_any_order() {
        // 1,011 bytes: the envelope of a 3072-bit agent key's ciphertext
        // and a 4096-bit server key's signature.
        let t = text(1011, 1);
        let tags = sp().puzzle_tags(&t, &id(1));
        assert_eq!(tags.len(), 6, "{tags:?}");
        for tag in &tags {
            assert!(is_valid_tag(tag) && tag.len() <= MAX_TAG_LEN, "{tag}");
        }
        assert!(tags[0].starts_with("codext3:412000001:pb100000106:"));
        let mut shuffled = tags.clone();
        shuffled.reverse();
        shuffled.swap(1, 4);
        assert_eq!(sp().collect_puzzles(&shuffled), vec![t]);
        // v2 needs eight for the same puzzle.
        assert_eq!(
            crate::tags::v2::Space::new(D)
                .puzzle_tags(&text(1011, 1), &id(1))
                .len(),
            8
        );
    }

    #[test]
    fn given_missing_conflicting_or_foreign_chunks_then_no_puzzle_and_no_panic() {
        let t = text(1011, 2);
        let tags = sp().puzzle_tags(&t, &id(2));
        for i in 0..tags.len() {
            let mut partial = tags.clone();
            partial.remove(i);
            assert!(sp().collect_puzzles(&partial).is_empty());
        }
        let mut conflict = tags.clone();
        let last = conflict[1].pop().unwrap();
        conflict.push(format!(
            "{}{}",
            &tags[1][..tags[1].len() - 1],
            if last == 'A' { 'B' } else { 'A' }
        ));
        assert!(sp().collect_puzzles(&conflict).is_empty());
        // Another droplet's space, v2 tags and garbage read as nothing.
        assert!(Space3::new(41200000).collect_puzzles(&tags).is_empty());
        for junk in [
            "codext3:412000001:p",
            "codext3:412000001:pzz00000101:abc",
            "codext3:412000001:p0000000010:abc",
            "codext3:412000001:p0000000001:a=b",
            "codext3:412000001:p00000000001:abc",
            "web",
        ] {
            assert!(
                sp().collect_puzzles(&[junk.to_string()]).is_empty(),
                "{junk}"
            );
            assert!(sp().puzzle_tag_id(junk).is_none(), "{junk}");
        }
        assert!(sp().puzzle_tags("cdx1", &id(1)).is_empty());
        assert!(sp().puzzle_tags("hello", &id(1)).is_empty());
    }

    #[test]
    fn given_the_data_case_changed_then_the_puzzle_does_not_come_back_the_same() {
        // base64url is not case-free: the server refuses a tag whose
        // canonical name differs from what it sent, and a reader meeting
        // one gets a different envelope (whose signature then fails).
        let t = text(1011, 3);
        let upper: Vec<String> = sp()
            .puzzle_tags(&t, &id(3))
            .iter()
            .map(|s| s.to_ascii_uppercase())
            .collect();
        assert_ne!(sp().collect_puzzles(&upper), vec![t]);
    }

    #[test]
    fn given_answers_and_requests_then_they_round_trip_in_any_case() {
        let a = answer(1);
        assert_eq!(
            sp().answer_in(&sp().answer_tag(&a).to_ascii_uppercase()),
            Some(a.clone())
        );
        let fp = Fingerprint([0xcd; 32]);
        let shell = ProfileName::shell();
        assert_eq!(
            sp().request_in(&sp().request_tag(&fp, &shell)),
            Some(([0xcd; 16], shell.clone()))
        );
        // A profile rides in the request tag; an earlier
        // agent's tag (none) means shell; `:shell` and bad names are not
        // requests.
        let gpu = ProfileName::parse("gpu-1").unwrap();
        let tag = sp().request_tag(&fp, &gpu);
        assert!(tag.ends_with(":gpu-1") && is_valid_tag(&tag), "{tag}");
        assert_eq!(
            sp().request_in(&tag.to_ascii_uppercase()),
            Some(([0xcd; 16], gpu))
        );
        let base = sp().request_tag(&fp, &shell);
        for bad in [":shell", ":", ":Bad!", ":a:b", ":1x"] {
            assert_eq!(sp().request_in(&format!("{base}{bad}")), None, "{bad}");
        }
        assert!(Space3::new(1).answer_in(&sp().answer_tag(&a)).is_none());
        assert!(crate::tags::v2::Space::new(D)
            .answer_in(&sp().answer_tag(&a))
            .is_none());
    }

    #[test]
    fn given_the_answer_or_a_chunk_still_there_then_not_accepted() {
        let t = text(1011, 4);
        let chunks = sp().puzzle_tags(&t, &id(4));
        let a = answer(4);
        let mut tags = chunks.clone();
        tags.push(sp().answer_tag(&a));
        assert!(!sp().accepted(&tags, &a, &id(4)));
        assert!(!sp().accepted(&chunks[..1], &a, &id(4)));
        assert!(!sp().accepted(&[sp().answer_tag(&a)], &a, &id(4)));
        // Another puzzle's chunks and another answer do not hold it back.
        let mut others = sp().puzzle_tags(&text(1011, 5), &id(5));
        others.push(sp().answer_tag(&answer(5)));
        assert!(sp().accepted(&others, &a, &id(4)));
    }
}
