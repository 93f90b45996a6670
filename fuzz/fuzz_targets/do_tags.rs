//! The DigitalOcean tag codec on arbitrary tag lists: the input is split
//! into lines, one tag per line (a droplet's tags are written by whoever
//! holds an API token, so they are untrusted). Checks that the decoders
//! never panic, that their results do not depend on the order of the tags,
//! and that what they return encodes back to tags that decode to it again.
#![no_main]

use codext_do::tags::v2::MAX_PUZZLE_CHUNKS;
use codext_do::tags::{is_valid_tag, Space};
use codext_do::tags::v3::{self as tags3, Space3};
use codext_core::Fingerprint;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;

fuzz_target!(|data: &[u8]| {
    // Channel format v2: one droplet's namespace (the seeds use 4242).
    let sp = Space::new(4242);
    let text = String::from_utf8_lossy(data);
    let tags: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut reversed = tags.clone();
    reversed.reverse();

    let puzzles = sp.collect_puzzles(&tags);
    assert_eq!(
        sp.collect_puzzles(&reversed),
        puzzles,
        "collect_puzzles depends on the order of the tags"
    );
    for (i, p) in puzzles.iter().enumerate() {
        let id = [i as u8; 16];
        let chunks = sp.puzzle_tags(p, &id);
        if chunks.is_empty() {
            // Only a text too long for 255 chunks may give no tags.
            assert!(
                p.len() > MAX_PUZZLE_CHUNKS * sp.chunk_len(),
                "puzzle_tags refused a collected text"
            );
            continue;
        }
        for t in &chunks {
            assert!(is_valid_tag(t), "puzzle_tags made an invalid tag {t:?}");
        }
        assert_eq!(sp.collect_puzzles(&chunks), vec![p.clone()]);
    }

    let found = sp.answers(&tags);
    let found_set: BTreeSet<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found_set.len(), found.len(), "answers returned a duplicate");
    let again: BTreeSet<String> = sp.answers(&reversed).iter().map(ToString::to_string).collect();
    assert_eq!(again, found_set, "answers depends on the order of the tags");
    for a in &found {
        let t = sp.answer_tag(a);
        assert!(is_valid_tag(&t));
        assert_eq!(sp.answers(&[t]), vec![a.clone()]);
        let _ = sp.is_ready(&tags, &a.user);
        assert!(sp.is_ready(&[sp.ready_tag(&a.user)], &a.user));
    }

    let reqs = sp.requests(&tags);
    let req_set: BTreeSet<[u8; 16]> = reqs.iter().copied().collect();
    assert_eq!(req_set.len(), reqs.len(), "requests returned a duplicate");
    let again: BTreeSet<[u8; 16]> = sp.requests(&reversed).into_iter().collect();
    assert_eq!(again, req_set, "requests depends on the order of the tags");
    for r in &reqs {
        let mut fp = [0u8; 32];
        fp[..16].copy_from_slice(r);
        let t = sp.request_tag(&Fingerprint(fp));
        assert!(is_valid_tag(&t));
        assert_eq!(sp.requests(&[t]), vec![*r]);
    }

    // Channel format v3, same input.
    let sp3 = Space3::new(4242);
    let puzzles = sp3.collect_puzzles(&tags);
    assert_eq!(
        sp3.collect_puzzles(&reversed),
        puzzles,
        "v3 collect_puzzles depends on the order of the tags"
    );
    for (i, p) in puzzles.iter().enumerate() {
        let id = [i as u8; 16];
        let chunks = sp3.puzzle_tags(p, &id);
        if chunks.is_empty() {
            assert!(
                p.len() > tags3::MAX_PUZZLE_CHUNKS * sp3.chunk_len(),
                "v3 puzzle_tags refused a collected text"
            );
            continue;
        }
        for t in &chunks {
            assert!(is_valid_tag(t), "v3 puzzle_tags made an invalid tag {t:?}");
        }
        assert_eq!(sp3.collect_puzzles(&chunks), vec![p.clone()]);
    }
    for t in &tags {
        if let Some(a) = sp3.answer_in(t) {
            let back = sp3.answer_tag(&a);
            assert!(is_valid_tag(&back));
            assert_eq!(sp3.answer_in(&back), Some(a.clone()));
            assert!(!sp3.accepted(&[back], &a, &[0; 16]));
            let _ = sp3.accepted(&tags, &a, &[0; 16]);
        }
        if let Some((r, profile)) = sp3.request_in(t) {
            let mut fp = [0u8; 32];
            fp[..16].copy_from_slice(&r);
            let back = sp3.request_tag(&Fingerprint(fp), &profile);
            assert!(is_valid_tag(&back));
            assert_eq!(sp3.request_in(&back), Some((r, profile)));
        }
    }
});
