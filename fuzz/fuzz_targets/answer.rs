//! `Answer::parse` on arbitrary text. An answer that parses must print back
//! to the (trimmed) input and parse again to an equal answer.
#![no_main]

use codext_core::Answer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(answer) = Answer::parse(text) else {
        return;
    };
    let printed = answer.to_string();
    let back = Answer::parse(&printed).expect("to_string() of a parsed answer must parse");
    assert_eq!(back, answer);
    assert_eq!(
        printed,
        text.trim(),
        "to_string() differs from the parsed text"
    );
});
