//! `Puzzle::from_bytes` on arbitrary bytes. Parsing is strict, so a puzzle
//! that parses must encode back to exactly the input bytes.
#![no_main]

use codext_core::Puzzle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(puzzle) = Puzzle::from_bytes(data) else {
        return;
    };
    assert_eq!(puzzle.to_bytes(), data, "to_bytes() does not round-trip");
    let text = puzzle.to_text();
    let back = Puzzle::from_text(&text).expect("to_text() of a parsed puzzle must parse");
    assert_eq!(back, puzzle);
});
