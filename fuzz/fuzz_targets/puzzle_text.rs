//! `Puzzle::from_text` on arbitrary text. A puzzle that parses must print
//! back to exactly the (trimmed) input, since decoding is strict, and its
//! binary envelope must parse back to the same puzzle.
#![no_main]

use codext_core::Puzzle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(puzzle) = Puzzle::from_text(text) else {
        return;
    };
    let again = puzzle.to_text();
    assert_eq!(again, text.trim(), "to_text() differs from the parsed text");
    let bytes = puzzle.to_bytes();
    let back = Puzzle::from_bytes(&bytes).expect("to_bytes() of a parsed puzzle must parse");
    assert_eq!(back, puzzle);
    assert_eq!(back.to_bytes(), bytes, "to_bytes() does not round-trip");
});
