//! The agent's answer: `user-<12 hex>-<32 hex>`, the user name and the
//! 128-bit proof. 50 characters, valid as a hostname and as a DigitalOcean
//! tag, and it says nothing about the token.

use crate::encoding::{hex, hex_decode};
use crate::error::{Error, Result};
use crate::token::PROOF_LEN;
use codext_wire::{UserName, USER_HEX_LEN, USER_PREFIX};
use std::fmt;

/// A parsed answer.
#[derive(Clone, PartialEq, Eq)]
pub struct Answer {
    /// Whose puzzle this answers.
    pub user: UserName,
    /// The proof of the token.
    pub proof: [u8; PROOF_LEN],
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Answer({})", self)
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.user, hex(&self.proof))
    }
}

/// Length of an answer's text form.
pub const ANSWER_LEN: usize = USER_PREFIX.len() + USER_HEX_LEN + 1 + 2 * PROOF_LEN;

impl Answer {
    /// Parses `user-<hex>-<proof>`; surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Answer> {
        let text = text.trim();
        // Byte positions below are character positions only for ASCII
        // (a multi-byte character could straddle the split: found by
        // fuzzing, see fuzz/seeds/answer/split-at-char-boundary).
        if !text.is_ascii() {
            return Err(Error::AnswerFormat(
                "only ASCII letters, digits and '-' belong in an answer".into(),
            ));
        }
        if text.len() != ANSWER_LEN {
            return Err(Error::AnswerFormat(format!(
                "expected {ANSWER_LEN} characters (user-<12 hex>-<32 hex>), got {}",
                text.len()
            )));
        }
        let split = USER_PREFIX.len() + USER_HEX_LEN;
        let (user, rest) = text.split_at(split);
        let user = UserName::parse(user).map_err(|e| Error::AnswerFormat(e.to_string()))?;
        let proof_hex = rest.strip_prefix('-').ok_or_else(|| {
            Error::AnswerFormat("a '-' must separate the user name and the proof".into())
        })?;
        let bytes = hex_decode(proof_hex).ok_or_else(|| {
            Error::AnswerFormat("the proof is not 32 lowercase hex digits".into())
        })?;
        let proof: [u8; PROOF_LEN] = bytes
            .try_into()
            .map_err(|_| Error::AnswerFormat("the proof is not 32 lowercase hex digits".into()))?;
        Ok(Answer { user, proof })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "user-0123456789ab-00112233445566778899aabbccddeeff";

    #[test]
    fn given_good_answer_then_round_trips() {
        let a = Answer::parse(GOOD).unwrap();
        assert_eq!(a.to_string(), GOOD);
        assert_eq!(Answer::parse(&format!("  {GOOD}\n")).unwrap(), a);
    }

    #[test]
    fn given_malformed_answers_then_each_refused_with_reason() {
        for bad in [
            "",
            "user-0123456789ab",
            &GOOD[..GOOD.len() - 1],
            &format!("{GOOD}0"),
            &GOOD.replace("user-", "uzer-"),
            &GOOD.to_uppercase(),
            &GOOD.replacen("-0011", "_0011", 1),
            &GOOD.replace("eeff", "eefg"),
            "user-0123456789a\u{e9}00112233445566778899aabbccddeeff",
        ] {
            let err = Answer::parse(bad).unwrap_err();
            assert!(matches!(err, Error::AnswerFormat(_)), "{bad:?} gave {err}");
        }
    }
}
