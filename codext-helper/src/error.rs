//! The helper's one error type, and how it maps to exit statuses and
//! socket replies. Messages never contain a secret.
//!
//! A failure caused by another error (a system call, a file, an encoding)
//! keeps that error as its [`source`](std::error::Error::source), typed, next
//! to a description of what the helper was doing (`cannot create
//! /var/lib/codext`). `Display` prints both on one line — `what: cause` —
//! because every reader of these messages (the log, the CLI, a socket
//! reply's log) shows one line; code that must branch on the cause (a
//! missing file, a timeout) asks `source()` instead of parsing text.

use std::fmt;
use std::io;
use std::path::Path;

/// Result with [`HelperError`].
pub type Result<T> = std::result::Result<T, HelperError>;

/// What can go wrong in the helper.
#[derive(Debug)]
pub enum HelperError {
    /// Bad configuration (a value, a missing prerequisite).
    Config(String),
    /// The configuration file could not be read.
    ConfigRead {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// The configuration file is not valid TOML or has an unknown key.
    ConfigParse {
        /// Where, and what the parser said (`helper.toml: line 3: …`).
        what: String,
        /// The parser's error.
        source: toml::de::Error,
    },
    /// A protocol or key problem from the core.
    Core(codext_core::Error),
    /// Bad input on the command line (user name, answer, duration…).
    Input(String),
    /// The state folder or file is unusable.
    State(String),
    /// A state file or folder operation failed.
    StateIo {
        /// What the helper was doing (`cannot open /var/lib/codext/…`).
        what: String,
        /// Why.
        source: io::Error,
    },
    /// State (or a record) could not be encoded or decoded.
    StateData {
        /// Which state, and what was being done with it.
        what: String,
        /// The JSON error.
        source: serde_json::Error,
        /// What to do about it (may be empty).
        fix: &'static str,
    },
    /// A named user is not pending / not known.
    UnknownUser(String),
    /// A proof or password was wrong.
    Refused(String),
    /// Creating or removing an account failed.
    Account(String),
    /// An account tool could not be run, or a lookup failed.
    AccountIo {
        /// What the helper was doing (`cannot run /usr/sbin/useradd`).
        what: String,
        /// Why.
        source: io::Error,
    },
    /// No free uid in the configured range.
    NoUid,
    /// The daemon's socket or another OS facility failed.
    System(String),
    /// An OS call failed.
    SystemIo {
        /// What the helper was doing (`cannot listen on /run/codext/…`).
        what: String,
        /// Why.
        source: io::Error,
    },
    /// The audit chain links, but a recovery recorded entries it could not
    /// find (a crash that lost data, or a cut).
    AuditGaps(String),
}

impl fmt::Display for HelperError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelperError::Config(m) => write!(f, "configuration: {m}"),
            HelperError::ConfigRead { path, source } => {
                write!(f, "configuration: cannot read {path}: {source}")
            }
            HelperError::ConfigParse { what, .. } => write!(f, "configuration: {what}"),
            HelperError::Core(e) => write!(f, "{e}"),
            HelperError::Input(m) => write!(f, "{m}"),
            HelperError::State(m) => write!(f, "state: {m}"),
            HelperError::StateIo { what, source } => write!(f, "state: {what}: {source}"),
            HelperError::StateData {
                what,
                source,
                fix: "",
            } => write!(f, "state: {what}: {source}"),
            HelperError::StateData { what, source, fix } => {
                write!(f, "state: {what} ({source}); {fix}")
            }
            HelperError::UnknownUser(u) => write!(f, "{u} is not a pending codext user"),
            HelperError::Refused(m) => write!(f, "refused: {m}"),
            HelperError::Account(m) => write!(f, "account: {m}"),
            HelperError::AccountIo { what, source } => write!(f, "account: {what}: {source}"),
            HelperError::NoUid => write!(f, "no free uid left in the configured range: widen accounts.uid_min..uid_max or wait for removals"),
            HelperError::System(m) => write!(f, "{m}"),
            HelperError::SystemIo { what, source } => write!(f, "{what}: {source}"),
            HelperError::AuditGaps(m) => write!(f, "audit trail: {m}"),
        }
    }
}

impl std::error::Error for HelperError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HelperError::ConfigRead { source, .. }
            | HelperError::StateIo { source, .. }
            | HelperError::AccountIo { source, .. }
            | HelperError::SystemIo { source, .. } => Some(source),
            HelperError::ConfigParse { source, .. } => Some(source),
            HelperError::StateData { source, .. } => Some(source),
            HelperError::Core(e) => Some(e),
            _ => None,
        }
    }
}

impl From<codext_core::Error> for HelperError {
    fn from(e: codext_core::Error) -> HelperError {
        HelperError::Core(e)
    }
}

impl HelperError {
    /// An OS facility failed while doing `what`.
    pub fn system(what: impl Into<String>, source: impl Into<io::Error>) -> HelperError {
        HelperError::SystemIo {
            what: what.into(),
            source: source.into(),
        }
    }

    /// A state file operation failed while doing `what`.
    pub fn state(what: impl Into<String>, source: impl Into<io::Error>) -> HelperError {
        HelperError::StateIo {
            what: what.into(),
            source: source.into(),
        }
    }

    /// State could not be encoded or decoded while doing `what`; `fix`
    /// says what to do ("" when there is nothing to say).
    pub fn state_data(
        what: impl Into<String>,
        source: serde_json::Error,
        fix: &'static str,
    ) -> HelperError {
        HelperError::StateData {
            what: what.into(),
            source,
            fix,
        }
    }

    /// An account tool or lookup failed while doing `what`.
    pub fn account(what: impl Into<String>, source: impl Into<io::Error>) -> HelperError {
        HelperError::AccountIo {
            what: what.into(),
            source: source.into(),
        }
    }

    /// The configuration file at `path` could not be read.
    pub fn config_read(path: &Path, source: io::Error) -> HelperError {
        HelperError::ConfigRead {
            path: path.display().to_string(),
            source,
        }
    }

    /// Exit status for the CLI: 2 bad input or config, 3 refused or
    /// unknown, 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            HelperError::Config(_)
            | HelperError::ConfigRead { .. }
            | HelperError::ConfigParse { .. }
            | HelperError::Input(_) => 2,
            HelperError::Core(codext_core::Error::AnswerFormat(_))
            | HelperError::Core(codext_core::Error::KeyFormat(_))
            | HelperError::Core(codext_core::Error::KeyPolicy(_))
            | HelperError::Core(codext_core::Error::FilePolicy(_)) => 2,
            HelperError::Refused(_) | HelperError::UnknownUser(_) => 3,
            HelperError::AuditGaps(_) => 4,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn given_a_wrapped_io_error_then_the_message_says_both_and_source_keeps_the_kind() {
        let e = HelperError::state(
            "cannot open /var/lib/codext/state.json",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(e
            .to_string()
            .starts_with("state: cannot open /var/lib/codext/state.json: "));
        let cause = e.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(
            cause.map(io::Error::kind),
            Some(io::ErrorKind::PermissionDenied)
        );
    }

    #[test]
    fn given_a_nix_errno_then_it_becomes_the_io_source() {
        let e = HelperError::system("cannot listen on /run/x", nix::errno::Errno::EADDRINUSE);
        let cause = e.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(
            cause.and_then(io::Error::raw_os_error),
            Some(libc::EADDRINUSE)
        );
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn given_bad_json_or_toml_then_the_parser_error_is_the_source() {
        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let e = HelperError::state_data(
            "/var/lib/codext/state.json is corrupt",
            json,
            "move it away to start afresh",
        );
        assert!(e.source().unwrap().is::<serde_json::Error>());
        assert!(e.to_string().ends_with("); move it away to start afresh"));
        let toml = toml::from_str::<toml::Value>("x = ").unwrap_err();
        let e = HelperError::ConfigParse {
            what: "t.toml: line 1: invalid".into(),
            source: toml,
        };
        assert!(e.source().unwrap().is::<toml::de::Error>());
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            HelperError::config_read(Path::new("/etc/x"), io::ErrorKind::NotFound.into())
                .exit_code(),
            2
        );
    }

    #[test]
    fn given_a_message_only_error_then_no_source() {
        assert!(HelperError::Refused("no".into()).source().is_none());
    }
}
