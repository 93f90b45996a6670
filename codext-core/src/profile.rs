//! A grant's **profile**: what the account a puzzle opens may do
//! — a plain shell (`shell`, the default and what every earlier release
//! granted), a fixed set of commands, or a container workspace. The
//! server's configuration defines the profiles; the protocol carries only
//! their names, here.
//!
//! A name is 1 to [`MAX_PROFILE`] characters of `a-z`, `0-9`, `-` and `_`,
//! starting with a letter: it travels in the puzzle (signed), in a
//! DigitalOcean request tag (`[a-zA-Z0-9_:-]`, case folded), on command
//! lines and in the audit trail, and names a group (`codext-p-<name>`, at
//! most 32 characters) without any escaping.

use std::fmt;

/// Longest profile name (`codext-p-` + 23 = 32, the longest group name
/// `groupadd` takes everywhere).
pub const MAX_PROFILE: usize = 23;
/// The profile of every grant that names none: today's plain shell.
pub const SHELL: &str = "shell";

/// The command `codext open` and `codext close` send on a grant
/// of a profile with no shell (`commands`, `container`): the server's gate
/// answers it itself, nothing runs. `codext-grant linger SECONDS` asks for
/// a linger (as `~/.codext-linger` does on a shell grant) and prints the
/// grant key line (its `expiry-time` is the grant's end).
pub const GRANT_COMMAND: &str = "codext-grant";

/// A valid profile name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileName(String);

impl ProfileName {
    /// Checks `text` against the rule in the module docs.
    pub fn parse(text: &str) -> Result<ProfileName, String> {
        let b = text.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= MAX_PROFILE
            && b[0].is_ascii_lowercase()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_');
        if ok {
            Ok(ProfileName(text.to_owned()))
        } else {
            Err(format!(
                "{text:?} is not a profile name (1 to {MAX_PROFILE} of a-z, 0-9, - and _, starting with a letter)"
            ))
        }
    }

    /// `shell`.
    pub fn shell() -> ProfileName {
        ProfileName(SHELL.to_owned())
    }

    /// True for `shell`.
    pub fn is_shell(&self) -> bool {
        self.0 == SHELL
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ProfileName {
    fn default() -> ProfileName {
        ProfileName::shell()
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ProfileName {
    type Err = String;
    fn from_str(s: &str) -> Result<ProfileName, String> {
        ProfileName::parse(s)
    }
}

impl serde::Serialize for ProfileName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ProfileName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ProfileName, D::Error> {
        let text = String::deserialize(d)?;
        ProfileName::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_names_then_only_safe_ones_pass() {
        for ok in [
            "shell",
            "ci",
            "gpu-vllm",
            "a",
            "ops_1",
            "abcdefghijklmnopqrstuvw",
        ] {
            assert!(ProfileName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Shell",
            "1ci",
            "-ci",
            "ci:x",
            "ci x",
            "ci/x",
            "ci.x",
            "abcdefghijklmnopqrstuvwx",
            "é",
        ] {
            assert!(ProfileName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ProfileName::default().is_shell());
    }
}
