//! The one rule for temporary account names: `user-` followed by exactly
//! [`USER_HEX_LEN`] lowercase hexadecimal digits.
//!
//! Every component validates names with [`UserName::parse`]; nothing else
//! decides what a codext name is. The rule is deliberately narrow: it keeps
//! the names inside what `useradd` accepts (Debian's `NAME_REGEX`, at most 32
//! characters), inside hostname and DigitalOcean tag characters, and apart
//! from any name an operator would pick for a real user.

use std::fmt;

/// Fixed prefix of every temporary account name.
pub const USER_PREFIX: &str = "user-";
/// Number of hex digits after the prefix (48 random bits).
pub const USER_HEX_LEN: usize = 12;

/// A validated temporary account name (`user-` + 12 lowercase hex digits).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

/// Why a string is not a codext user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Does not start with `user-`.
    Prefix,
    /// Wrong number of characters after the prefix.
    Length(usize),
    /// A character other than `0-9a-f` after the prefix.
    Character,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Prefix => write!(f, "a codext user name starts with {USER_PREFIX:?}"),
            NameError::Length(n) => write!(
                f,
                "a codext user name has {USER_HEX_LEN} hex digits after {USER_PREFIX:?}, not {n}"
            ),
            NameError::Character => write!(
                f,
                "a codext user name has only lowercase hex digits (0-9, a-f) after {USER_PREFIX:?}"
            ),
        }
    }
}

impl std::error::Error for NameError {}

impl UserName {
    /// Validates `s` as a codext user name.
    pub fn parse(s: &str) -> Result<UserName, NameError> {
        let hex = s.strip_prefix(USER_PREFIX).ok_or(NameError::Prefix)?;
        if hex.len() != USER_HEX_LEN {
            return Err(NameError::Length(hex.len()));
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(NameError::Character);
        }
        Ok(UserName(s.to_owned()))
    }

    /// Builds the name from exactly six random bytes.
    pub fn from_random(bytes: [u8; USER_HEX_LEN / 2]) -> UserName {
        let mut s = String::with_capacity(USER_PREFIX.len() + USER_HEX_LEN);
        s.push_str(USER_PREFIX);
        for b in bytes {
            s.push(hex_digit(b >> 4));
            s.push(hex_digit(b & 0x0f));
        }
        UserName(s)
    }

    /// True when `s` falls under codext's name *pattern* (`user-…`), valid
    /// or not. The PAM module uses this to decide whether a name is codext's
    /// business at all: a `user-…` name that is not valid is still denied,
    /// never handed on to other modules as if it were an ordinary user.
    pub fn in_pattern(s: &str) -> bool {
        s.starts_with(USER_PREFIX)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(n & 0x0f)])
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserName({})", self.0)
    }
}

impl AsRef<str> for UserName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_valid_name_then_parse_accepts() {
        assert_eq!(
            UserName::parse("user-0123456789ab").map(|n| n.0),
            Ok("user-0123456789ab".into())
        );
    }

    #[test]
    fn given_bad_names_then_each_gets_its_reason() {
        assert_eq!(UserName::parse("root"), Err(NameError::Prefix));
        assert_eq!(UserName::parse("User-0123456789ab"), Err(NameError::Prefix));
        assert_eq!(UserName::parse("user-0123"), Err(NameError::Length(4)));
        assert_eq!(
            UserName::parse("user-0123456789abc"),
            Err(NameError::Length(13))
        );
        assert_eq!(
            UserName::parse("user-0123456789AB"),
            Err(NameError::Character)
        );
        assert_eq!(
            UserName::parse("user-0123456789g1"),
            Err(NameError::Character)
        );
        assert_eq!(
            UserName::parse("user-../../etc/pa"),
            Err(NameError::Character)
        );
        assert_eq!(
            UserName::parse("user-0123456789\u{e9}"),
            Err(NameError::Character)
        );
        assert_eq!(UserName::parse(""), Err(NameError::Prefix));
    }

    #[test]
    fn given_random_bytes_then_name_is_valid_hex() {
        let n = UserName::from_random([0x00, 0x9f, 0xa0, 0xff, 0x12, 0x34]);
        assert_eq!(n.as_str(), "user-009fa0ff1234");
        assert!(UserName::parse(n.as_str()).is_ok());
    }

    #[test]
    fn given_pattern_check_then_only_prefix_matters() {
        assert!(UserName::in_pattern("user-zz"));
        assert!(!UserName::in_pattern("alice"));
        assert!(!UserName::in_pattern("xuser-0123456789ab"));
    }
}
